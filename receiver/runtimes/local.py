"""The local runtime: the receiver's app wired to a SQLite store and a worker process.

This is what ``scripts/serve_local.py`` serves and what the tests exercise; it differs from
the Modal runtime only in where deliveries are recorded and where handlers run (the worker
process of ``runtimes.worker`` here, the ``process`` function there).

    app = create_local_app(Settings.from_env())
    uvicorn.run(app)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from receiver.console.views import add_console
from receiver.delivery import DeliveryRecord
from receiver.dispatch import load_configuration
from receiver.edge import create_app
from receiver.runtimes.worker import QUIT, run_worker_process
from receiver.settings import Settings
from receiver.stores import Body
from receiver.stores.sqlite import SqliteStore


class WorkerProcess:
    """The server's handle on its worker process: start it, wake it, stop it.

    A wake-up is one line (the delivery id) written without blocking; if the pipe is ever
    full, the id is dropped and the worker's periodic sweep finds the delivery instead.
    """

    def __init__(self, settings: Settings, store: SqliteStore) -> None:
        self.settings = settings
        self.store = store
        self._process: multiprocessing.process.BaseProcess | None = None
        self._fd: int | None = None

    def start(self) -> None:
        """Spawn the worker (a fresh interpreter: no state shared but the store)."""
        context = multiprocessing.get_context("spawn")
        reader, writer = context.Pipe(duplex=False)
        self._process = context.Process(
            target=run_worker_process,
            args=(self.settings, reader, logging.getLogger().getEffectiveLevel()),
            name="webhook-worker",
            daemon=True,
        )
        self._process.start()
        reader.close()
        self._writer = writer  # keeps the descriptor open
        self._fd = writer.fileno()
        os.set_blocking(self._fd, False)

    def wake(self, delivery_id: str) -> None:
        """Tell the worker a delivery is waiting (at most PIPE_BUF bytes: written whole)."""
        if self._fd is not None:
            with contextlib.suppress(BlockingIOError):
                os.write(self._fd, delivery_id.encode() + b"\n")

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to stop cleanly (unfinished work stays pending), then wait for it."""
        if self._process is None or self._fd is None:
            return
        os.set_blocking(self._fd, True)
        with contextlib.suppress(OSError):
            os.write(self._fd, QUIT + b"\n")
        self._writer.close()
        self._fd = None
        await asyncio.to_thread(self._process.join, timeout)
        if self._process.is_alive():
            self._process.kill()

    async def drain(self, timeout: float = 60.0) -> None:
        """Wait until the store has nothing pending (tests and benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.store.unfinished():
            if loop.time() > deadline:
                raise TimeoutError("deliveries still pending after the drain timeout")
            await asyncio.sleep(0.01)


class LocalIntake:
    """SQLite store + a worker woken for each new delivery (the local server and the tests).

    Concurrent deliveries are committed together ("group commit"): one writer task takes
    every delivery waiting to be recorded and commits them in one transaction, one fsync,
    then answers each. Under load this turns many fsyncs into a few; alone, a delivery is
    committed at once. The writer, not the request, wakes the worker: a request that gave
    up waiting (the edge's deadline) may still have been recorded, and is then processed.

    Deadlines share one timer, set for the oldest unanswered delivery (deadlines come in
    the order deliveries arrive), instead of a timer per request: under load that was
    3 % of the server's CPU.
    """

    def __init__(self, store: SqliteStore, wake: Callable[[str], None]) -> None:
        self.store = store
        self.wake = wake
        self._waiting: list[tuple[DeliveryRecord, Body, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task | None = None
        self._unanswered: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    async def accept(self, record: DeliveryRecord, body: Body, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((record, body, answer))
        self._unanswered.append((deadline, answer))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        return await answer

    def _expire(self) -> None:
        """Answer every delivery past its deadline with TimeoutError; rearm for the next."""
        loop = asyncio.get_running_loop()
        now, unanswered = loop.time(), self._unanswered
        while unanswered and (unanswered[0][1].done() or unanswered[0][0] <= now):
            _, answer = unanswered.popleft()
            if not answer.done():
                answer.set_exception(TimeoutError())
        self._timer = loop.call_at(unanswered[0][0], self._expire) if unanswered else None

    async def _write_waiting(self) -> None:
        while self._waiting:
            await asyncio.sleep(0)  # let the accepts already under way join this batch
            batch, self._waiting = self._waiting, []
            try:
                results = await self.store.accept_many(
                    [(record, body) for record, body, _ in batch]
                )
            except Exception as exc:  # all or nothing: every delivery of the batch is refused
                for _, _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (record, _, answer), new in zip(batch, results, strict=True):
                if new:
                    self.wake(record.id)
                if not answer.done():
                    answer.set_result(new)

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        return await self.store.get(delivery_id)

    async def check(self) -> None:
        self.store.check_writable()


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
    """The receiver app with a SQLite-backed intake; routes and handlers are checked now.

    The worker process starts with the app (resuming unfinished deliveries) and stops with
    it; ``app.state.worker`` and ``app.state.store`` give tests and tools access to both.
    """
    routes, _ = load_configuration(settings)
    store = SqliteStore(settings.store_path, busy_timeout=settings.store_busy_seconds)
    store.check_integrity()
    worker = WorkerProcess(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await worker.stop()

    app = create_app(settings, routes, LocalIntake(store, worker.wake), lifespan=lifespan)

    async def rerun(delivery_id: str) -> None:
        worker.wake(delivery_id)

    add_console(app, settings, routes, store, rerun)
    app.state.store = store
    app.state.worker = worker
    return app
