"""Settings are declared once, read from the environment, and a bad value stops the start."""

from pathlib import Path

import pytest

from receiver.settings import DEFAULT_HANDLERS, Settings, SettingsError, forwarded_environment

# One unusable value for every variable that can hold one (secrets, keys and paths are
# free-form text; a store path that cannot be opened is refused when the store opens).
BAD_VALUES = {
    "WEBHOOK_HANDLERS": "handlers.log_runs,not a module",
    "WEBHOOK_MAX_BODY_BYTES": "25MB",
    "WEBHOOK_ACK_DEADLINE_SECONDS": "5",
    "WEBHOOK_MAX_ATTEMPTS": "0",
    "WEBHOOK_RETRY_BASE_SECONDS": "-1",
    "WEBHOOK_RETRY_MAX_SECONDS": "soon",
    "WEBHOOK_WORKER_CONCURRENCY": "0",
    "WEBHOOK_STORE_BUSY_SECONDS": "two",
    "WEBHOOK_LEASE_SECONDS": "0.5",
    "WEBHOOK_READ_TIMEOUT_SECONDS": "0",
    "WEBHOOK_MAX_CONNECTIONS": "8",
    "LANGSMITH_ENDPOINT": "api.smith.langchain.com",
    "LANGSMITH_WEB_URL": "smith.langchain.com",
    "WEBHOOK_APP_NAME": "my app",
    "WEBHOOK_SECRET_NAME": "ls/webhook",
    "LANGSMITH_SECRET_NAME": "x" * 65,
    "WEBHOOK_EXTRA_SECRETS": "slack, bad name",
    "WEBHOOK_DICT_NAME": "d" * 53,  # the Queue's name made from it would pass Modal's 64
    "WEBHOOK_DEAD_RETENTION_DAYS": "0",
    "LANGSMITH_WORKSPACE_ID": "my-workspace",
    "WEBHOOK_MIN_CONTAINERS": "11",
    "WEBHOOK_PROXY_AUTH": "maybe",
    "MODAL_PROXY_KEY": "ak-not-a-proxy-token",
    "LANGSMITH_BLOB_HOSTS": "minio.internal, https://minio.internal:9000",
    "LANGSMITH_BLOB_TIMEOUT_SECONDS": "0",
    "LANGSMITH_MAX_BLOB_BYTES": "-1",
    "WEBHOOK_CONSOLE_TOKEN": "short",
    "WEBHOOK_SWEEP_SECONDS": "0",
    "WEBHOOK_CONSOLE_SESSION_HOURS": "0",
    "WEBHOOK_PUBLIC_URL": "hooks.example.com",
    "SLACK_ALERTS_WEBHOOK_URL": "hooks.slack.com/services/T/B/x",
}
# (a routes file is checked when it is loaded: tests/test_routes.py)
FREE_FORM = {
    "LS_WEBHOOK",
    "LS_SIGNING_SECRETS",
    "LANGSMITH_API_KEY",
    "WEBHOOK_STORE_PATH",
    "WEBHOOK_ROUTES",
    "MODAL_PROXY_SECRET",
}


def test_every_declared_variable_has_a_bad_value_under_test_or_is_free_form():
    assert set(Settings.variables()) == set(BAD_VALUES) | FREE_FORM


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LS_WEBHOOK", "pässwort-1234"),
        ("LS_WEBHOOK", "ok-secret,a&b"),
        ("LS_SIGNING_SECRETS", "a b"),
    ],
)
def test_a_secret_that_is_not_url_safe_ascii_stops_the_start_without_showing_it(name, value):
    """One rule for the header, the query and the logs (a non-ASCII secret never matched in
    a header; one with '&' leaked its tail past the log redaction)."""
    with pytest.raises(SettingsError, match=name) as error:
        Settings.from_env({name: value})
    assert value not in str(error.value) and "a&b" not in str(error.value)


@pytest.mark.parametrize(("name", "value"), BAD_VALUES.items())
def test_a_bad_value_stops_the_start_with_a_message_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(("name", "value"), list(BAD_VALUES.items())[:3])
def test_the_process_environment_is_read_the_same_way(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        Settings.from_env()


def test_the_store_busy_timeout_is_read():
    assert Settings.from_env({"WEBHOOK_STORE_BUSY_SECONDS": "0.5"}).store_busy_seconds == 0.5


def test_defaults_when_the_environment_is_empty_or_blank():
    for env in ({}, {"WEBHOOK_HANDLERS": "", "WEBHOOK_MAX_BODY_BYTES": ""}):
        settings = Settings.from_env(env)
        assert settings.secrets == ()
        assert settings.handlers == DEFAULT_HANDLERS
        assert settings.max_body_bytes == 25 * 1024 * 1024
        assert settings.store_path == Path("data/deliveries.sqlite3")


def test_comma_separated_secrets_and_handlers_are_split_and_trimmed():
    settings = Settings.from_env(
        {"LS_WEBHOOK": " old , new ,", "WEBHOOK_HANDLERS": "handlers.log_runs, acme.hooks"}
    )
    assert settings.secret_values == ("old", "new")
    assert settings.handlers == ("handlers.log_runs", "acme.hooks")


def test_secrets_appear_neither_in_the_repr_nor_in_an_error():
    settings = Settings.from_env({"LS_WEBHOOK": "hunter2", "LANGSMITH_API_KEY": "lsv2_key"})
    assert "hunter2" not in repr(settings)
    assert "lsv2_key" not in repr(settings)
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"LS_WEBHOOK": "hunter2", "WEBHOOK_MAX_ATTEMPTS": "x"})
    assert "hunter2" not in str(error.value)


def test_retry_delay_doubles_up_to_the_maximum():
    settings = Settings(retry_base_seconds=1.0, retry_max_seconds=5.0)
    assert [settings.retry_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_only_declared_non_secret_variables_are_forwarded():
    environ = {
        "WEBHOOK_MAX_ATTEMPTS": "3",
        "LS_WEBHOOK": "secret",
        "LANGSMITH_API_KEY": "lsv2",
        "HOME": "/root",
        "WEBHOOK_DICT_NAME": "",
    }
    assert forwarded_environment([Settings], environ) == {"WEBHOOK_MAX_ATTEMPTS": "3"}
