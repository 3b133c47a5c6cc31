"""Handler modules are loaded at start-up; a bad one stops the start with a clear message."""

import pytest

from receiver.local import create_local_app
from receiver.registry import HandlerLoadError, load_handlers


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
    sync, slow = load_handlers(["handlers_for_tests.recording", "handlers_for_tests.slow"])
    assert not sync.is_async
    assert slow.is_async
