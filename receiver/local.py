"""The local runtime: the receiver's app wired to a SQLite store and an in-process worker.

This is what ``scripts/serve_local.py`` serves and what the tests exercise; it differs from
the Modal runtime only in where deliveries are recorded and where handlers run.

    app = create_local_app(Settings.from_env())
    uvicorn.run(app)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from receiver.dispatch import Dispatcher
from receiver.http_app import create_app
from receiver.intake import LocalIntake
from receiver.registry import load_handlers
from receiver.settings import Settings
from receiver.store import SqliteStore, call_inline
from receiver.worker import LocalWorker


def create_local_app(settings: Settings) -> Starlette:
    """The receiver app with a SQLite-backed intake; handlers are loaded (and checked) now.

    The worker starts with the app (resuming unfinished deliveries) and stops with it;
    ``app.state.worker`` and ``app.state.store`` give tests and tools access to both.
    """
    handlers = load_handlers(settings.handlers)
    store = SqliteStore(settings.store_path, busy_timeout=settings.store_busy_seconds)
    worker = LocalWorker(Dispatcher(store, handlers, settings, store_call=call_inline))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()
            worker.dispatcher.close()

    app = create_app(settings, handlers, LocalIntake(store, worker), lifespan=lifespan)
    app.state.store = store
    app.state.worker = worker
    return app
