"""The local runtime: the receiver's app wired to a SQLite store and an in-process worker.

This is what ``scripts/serve_local.py`` serves and what the tests exercise; it differs from
the Modal runtime only in where deliveries are recorded and where handlers run.

    app = create_local_app(Settings.from_env())
    uvicorn.run(app)
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from receiver.delivery import DeliveryRecord
from receiver.dispatch import Dispatcher
from receiver.edge import create_app
from receiver.registry import load_handlers
from receiver.runtimes.worker import LocalWorker
from receiver.settings import Settings
from receiver.stores import Body
from receiver.stores.sqlite import SqliteStore


class LocalIntake:
    """SQLite store + in-process background worker (the local server and the tests).

    Concurrent deliveries are committed together ("group commit"): one writer task takes
    every delivery waiting to be recorded and commits them in one transaction, one fsync,
    then answers each. Under load this turns many fsyncs into a few; alone, a delivery is
    committed at once.
    """

    def __init__(self, store: SqliteStore, worker: LocalWorker) -> None:
        self.store = store
        self.worker = worker
        self._waiting: list[tuple[DeliveryRecord, Body, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task | None = None

    async def accept(self, record: DeliveryRecord, body: Body) -> bool:
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((record, body, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        new = await answer
        if new:
            self.worker.submit(record.id, fresh=(record, body))
        return new

    async def _write_waiting(self) -> None:
        while self._waiting:
            await asyncio.sleep(0)  # let the accepts already under way join this batch
            batch, self._waiting = self._waiting, []
            try:  # on the event loop, without a thread: see stores.sqlite
                results = await self.store.accept_many(
                    [(record, body) for record, body, _ in batch]
                )
            except Exception as exc:  # all or nothing: every delivery of the batch is refused
                for _, _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, _, answer), new in zip(batch, results, strict=True):
                if not answer.done():
                    answer.set_result(new)

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        return await self.store.get(delivery_id)


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


def create_local_app(settings: Settings) -> FastAPI:
    """The receiver app with a SQLite-backed intake; handlers are loaded (and checked) now.

    The worker starts with the app (resuming unfinished deliveries) and stops with it;
    ``app.state.worker`` and ``app.state.store`` give tests and tools access to both.
    """
    handlers = load_handlers(settings.handlers)
    store = SqliteStore(settings.store_path, busy_timeout=settings.store_busy_seconds)
    worker = LocalWorker(Dispatcher(store, handlers, settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()
            worker.dispatcher.close()

    names = [handler.name for handler in handlers]
    app = create_app(settings, names, LocalIntake(store, worker), lifespan=lifespan)
    app.state.store = store
    app.state.worker = worker
    return app
