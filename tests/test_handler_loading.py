"""Handler modules are loaded at start-up; a bad one stops the start with a clear message."""

import pytest

from receiver.registry import HandlerLoadError, load_handlers
from receiver.runtimes.local import create_local_app


def test_configured_modules_load_in_order_once_each():
    handlers = load_handlers(["handlers.log_runs", "handlers._template", "handlers.log_runs"])
    assert [h.name for h in handlers] == ["handlers.log_runs", "handlers._template"]
    assert all(callable(h.handle) for h in handlers)


def test_a_module_that_cannot_be_imported_names_itself_and_the_cause():
    with pytest.raises(HandlerLoadError) as error:
        load_handlers(["handlers.log_runs", "handlers_for_tests.import_error"])
    message = str(error.value)
    assert "handlers_for_tests.import_error" in message
    assert "a_dependency_that_is_not_installed" in message


def test_a_missing_module_is_reported():
    with pytest.raises(HandlerLoadError, match=r"acme\.nothing_here"):
        load_handlers(["acme.nothing_here"])


def test_a_module_without_handle_is_refused():
    with pytest.raises(HandlerLoadError, match=r"no callable `handle"):
        load_handlers(["handlers_for_tests.no_handle"])


def test_the_app_refuses_to_start_with_a_bad_handler(make_settings):
    with pytest.raises(HandlerLoadError):
        create_local_app(make_settings(handlers=("handlers_for_tests.no_handle",)))


def test_async_and_sync_handlers_are_told_apart():
    env = {"TEST_RECORD_PATH": "/tmp/calls.log"}
    sync, slow = load_handlers(["handlers_for_tests.recording", "handlers_for_tests.slow"], env)
    assert not sync.is_async
    assert slow.is_async


def test_a_handler_option_with_a_bad_value_stops_the_start_naming_handler_and_variable():
    with pytest.raises(HandlerLoadError) as error:
        load_handlers(["handlers.notify_slack"], {"SLACK_NOTIFY_MAX_ATTEMPTS": "often"})
    message = str(error.value)
    assert "handlers.notify_slack" in message
    assert "SLACK_NOTIFY_MAX_ATTEMPTS='often'" in message


def test_a_required_handler_option_that_is_missing_is_named():
    with pytest.raises(HandlerLoadError, match="TEST_RECORD_PATH: Field required"):
        load_handlers(["handlers_for_tests.recording"], {})


def test_a_secret_handler_option_is_never_shown_in_the_error():
    from handlers import corrections_to_dataset

    with pytest.raises(HandlerLoadError) as error:
        load_handlers(
            ["handlers.notify_slack"],
            {
                "SLACK_WEBHOOK_URL": "https://hooks.slack.test/T0/B0/s3cr3t",
                "SLACK_NOTIFY_ONLY_ERRORS": "maybe",
            },
        )
    assert "s3cr3t" not in str(error.value)
    assert corrections_to_dataset.Options.from_env({}).dataset_name == "webhook-corrections"


def test_options_are_read_once_at_load_and_handed_to_the_handler():
    [handler] = load_handlers(
        ["handlers.corrections_to_dataset"],
        {"CORRECTIONS_FEEDBACK_KEYS": "correctness, style", "CORRECTIONS_SCORE_THRESHOLD": "0.5"},
    )
    assert handler.options.feedback_keys == ("correctness", "style")
    assert handler.options.score_threshold == 0.5


def test_an_options_attribute_that_is_not_handler_options_is_refused(tmp_path, monkeypatch):
    (tmp_path / "odd_options.py").write_text("Options = dict\ndef handle(payload, context): ...\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(HandlerLoadError, match="must subclass"):
        load_handlers(["odd_options"])
