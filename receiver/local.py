"""The local runtime: the receiver's app wired to a SQLite store and an in-process worker.

This is what ``scripts/serve_local.py`` serves and what the tests exercise; it differs from
the Modal runtime only in where deliveries are recorded and where handlers run.

    app = create_local_app(Settings.from_env())
    uvicorn.run(app)
"""

from __future__ import annotations

import gc
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


def tune_garbage_collector() -> None:
    """Make the cyclic garbage collector run less often in the server process.

    Every delivery allocates many small objects (its parsed runs); with CPython's default
    threshold (700 allocations) the collector ran a full young-generation pass every few
    requests and cost 10-15 % of the CPU under load. Call once, after start-up: objects that
    exist then are moved out of the collector's way for good (``gc.freeze``).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


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
