"""Shared fixtures: settings on a temporary store, an in-process client, a live server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from support.live_server import LiveServer
from support.payloads import SAMPLE_PATH

from receiver.runtimes.local import create_local_app
from receiver.settings import Settings

SECRET = "test-secret-3f9a1c"
HEADER = {"X-Webhook-Secret": SECRET}

# The LangSmith SDK must never find a real key, endpoint or tracing config during tests.
os.environ.update(
    LANGSMITH_TRACING="false",
    LANGSMITH_CONFIG_FILE="/nonexistent/langsmith.yaml",
    NO_PROXY="127.0.0.1,localhost",
)


@pytest.fixture
def sample_body() -> bytes:
    """The body LangSmith sent, byte for byte."""
    return SAMPLE_PATH.read_bytes()


@pytest.fixture
def record_path(tmp_path: Path) -> Path:
    """Where the test handlers write one line per call."""
    return tmp_path / "calls.log"


def read_calls(record_path: Path) -> list[tuple[str, str, int, str]]:
    """The recorded handler calls: (handler, delivery id, attempt, outcome)."""
    if not record_path.exists():
        return []
    calls = []
    for line in record_path.read_text().splitlines():
        handler, delivery, attempt, outcome = line.split()
        calls.append((handler, delivery, int(attempt), outcome))
    return calls


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable the receiver or a handler reads leaks in from the shell running the tests."""
    from receiver.registry import import_handler_module, options_class

    names = set(Settings.variables())
    for module in (
        "handlers.corrections_to_dataset",
        "handlers.notify_slack",
        "handlers._template",
    ):
        names |= set(options_class(import_handler_module(module)).variables())
    for name in names:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_settings(
    tmp_path: Path, record_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings on a fresh store in ``tmp_path``, with the recording handler by default.

    ``env`` sets the handlers' variables (their options are read from the environment).
    """

    def make(env: dict[str, str] | None = None, **overrides: object) -> Settings:
        for name, value in {"TEST_RECORD_PATH": str(record_path), **(env or {})}.items():
            monkeypatch.setenv(name, value)
        values = {
            "secrets": (SECRET,),
            "handlers": ("handlers_for_tests.recording",),
            "store_path": tmp_path / "deliveries.sqlite3",
            "retry_base_seconds": 0.01,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture
def open_client() -> Callable[[Settings], object]:
    """Open a TestClient on the local app (lifespan and worker running)."""

    @contextmanager
    def open_(settings: Settings) -> Iterator[TestClient]:
        with TestClient(create_local_app(settings)) as client:
            yield client

    return open_


def drain(client: TestClient) -> None:
    """Wait until the app's background worker has processed everything submitted."""
    client.portal.call(client.app.state.worker.drain)


@pytest.fixture
def live_server(tmp_path: Path, record_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start real ``serve_local.py`` processes; all are stopped at the end of the test."""
    servers: list[LiveServer] = []

    def start(env: dict[str, str] | None = None, **kwargs: object) -> LiveServer:
        base_env = {
            "LS_WEBHOOK": SECRET,
            "WEBHOOK_HANDLERS": "handlers_for_tests.recording",
            "WEBHOOK_STORE_PATH": str(tmp_path / "live.sqlite3"),
            "WEBHOOK_RETRY_BASE_SECONDS": "0.01",
            "TEST_RECORD_PATH": str(record_path),
        }
        server = LiveServer({**base_env, **(env or {})}, tmp_path / "server.log", **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
