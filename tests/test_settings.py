"""Settings come from the environment, parsed once, with clear errors."""

from pathlib import Path

import pytest

from receiver.settings import DEFAULT_HANDLERS, Settings, SettingsError


def test_defaults_when_the_environment_is_empty():
    settings = Settings.from_env({})
    assert settings.secrets == ()
    assert settings.handlers == DEFAULT_HANDLERS
    assert settings.max_body_bytes == 25 * 1024 * 1024
    assert settings.store_path == Path("data/deliveries.sqlite3")


def test_comma_separated_secrets_and_handlers_are_split_and_trimmed():
    settings = Settings.from_env(
        {"LS_WEBHOOK": " old , new ,", "WEBHOOK_HANDLERS": "handlers.log_runs, acme.hooks"}
    )
    assert settings.secrets == ("old", "new")
    assert settings.handlers == ("handlers.log_runs", "acme.hooks")


def test_secrets_do_not_appear_in_the_settings_repr():
    settings = Settings.from_env({"LS_WEBHOOK": "hunter2", "LANGSMITH_API_KEY": "lsv2_key"})
    assert "hunter2" not in repr(settings)
    assert "lsv2_key" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"), [("WEBHOOK_MAX_BODY_BYTES", "lots"), ("WEBHOOK_MAX_ATTEMPTS", "-1")]
)
def test_invalid_numbers_are_refused_with_the_variable_name(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_retry_delay_doubles_up_to_the_maximum():
    settings = Settings(retry_base_seconds=1.0, retry_max_seconds=5.0)
    assert [settings.retry_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_handler_options_are_read_through_get():
    settings = Settings.from_env({"SLACK_WEBHOOK_URL": "https://hooks.example/x", "EMPTY": ""})
    assert settings.get("SLACK_WEBHOOK_URL") == "https://hooks.example/x"
    assert settings.get("EMPTY", "fallback") == "fallback"
