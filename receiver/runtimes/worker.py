"""The local worker: runs handlers in a process of its own, after the response has gone out.

Like Modal's ``process`` function beside the web function, the worker never takes the
server's turn on the CPU: a slow or CPU-heavy handler cannot delay a ``202`` past
LangSmith's 5 s deadline. It runs at the lowest priority (``nice`` 19: under load it gets
what the server leaves, and catches up after), reads the same SQLite store, and is told of
each new delivery through a pipe (one line per delivery id). Deliveries are processed
concurrently (up to ``WEBHOOK_WORKER_CONCURRENCY``), each by the same
:class:`~receiver.dispatch.Dispatcher` that Modal's ``process`` uses. On start, and every
``sweep_seconds`` (``WEBHOOK_SWEEP_SECONDS``), it picks up whatever the store still has
pending (left by a crash, made pending by a replay, or a wake-up lost to a full pipe) and
posts the alerts due.

The pipe's end is also how the worker knows the server is gone: ``q`` asks for a clean
stop; end-of-file without it means the server died, and the worker dies too, as an
in-process worker would (every attempt is counted before it starts: nothing is lost).

    worker = LocalWorker(dispatcher, store)
    await worker.start()      # resumes unfinished deliveries
    worker.submit(delivery_id)
    await worker.stop()
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from multiprocessing.connection import Connection
from pathlib import Path

from receiver.alerts import check_alerts
from receiver.dispatch import Dispatcher, load_configuration
from receiver.logs import configure_logging
from receiver.settings import Settings
from receiver.stores.sqlite import SqliteStore

log = logging.getLogger("receiver.worker")

NICENESS = 19  # the lowest: acknowledgements first, handlers with the CPU left over
QUIT = b"q"


class LocalWorker:
    """Runs :meth:`Dispatcher.process` for submitted delivery ids in background tasks."""

    def __init__(
        self, dispatcher: Dispatcher, store: SqliteStore, *, sweep_seconds: float = 30.0
    ) -> None:
        self.dispatcher = dispatcher
        self.store = store
        self.sweep_seconds = sweep_seconds
        self._sweeper: asyncio.Task | None = None
        self._slots = asyncio.Semaphore(dispatcher.settings.worker_concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._submitted: set[str] = set()

    async def start(self) -> None:
        """Resume every delivery the store still has pending, then keep sweeping for more."""
        await self.sweep()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def sweep(self) -> None:
        """Submit every pending delivery of the store that is not being processed, then
        post the alerts due (``SLACK_ALERTS_WEBHOOK_URL``)."""
        released = self.store.release_dead_claims(owner_alive)
        if released:
            log.info("released %d handler claims of processes that are gone", released)
        unfinished = await self.store.unfinished()
        resumed = [delivery_id for delivery_id in unfinished if delivery_id not in self._submitted]
        if resumed:
            log.info("resuming %d unfinished deliveries", len(resumed))
        for delivery_id in resumed:
            self.submit(delivery_id)
        try:
            await check_alerts(self.dispatcher.settings, self.dispatcher.routes, self.store)
        except Exception:
            log.exception("checking for alerts failed; trying again at the next sweep")

    def submit(self, delivery_id: str) -> None:
        """Process ``delivery_id`` in the background (once, however often it is submitted)."""
        if delivery_id in self._submitted:
            return
        self._submitted.add(delivery_id)
        task = asyncio.get_running_loop().create_task(self._process(delivery_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel work in progress; what was not finished stays pending in the store."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep of the delivery store failed; trying again later")

    async def _process(self, delivery_id: str) -> None:
        try:
            async with self._slots:
                await self.dispatcher.process(delivery_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery=%s processing stopped by an unexpected error", delivery_id)
        finally:
            self._submitted.discard(delivery_id)


def owner_alive(owner: str) -> bool:
    """False only for a claim owner known to be gone: a process of this host that has
    exited (see :func:`receiver.dispatch.new_owner`). Other hosts' owners wait for expiry."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:  # a worker orphaned by a killed server can stay a zombie: exited all the same
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:  # no /proc (macOS): the signal check is all there is
        return True


def run_worker_process(settings: Settings, wakeups: Connection, log_level: int) -> None:
    """The worker process's entry point: serve ``wakeups`` until the server stops or dies.

    ``log_level`` is the server's, so that both processes log alike.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us
    os.nice(NICENESS)
    configure_logging(settings.redacted_values, log_level)
    asyncio.run(_serve(settings, wakeups.fileno()))


async def _serve(settings: Settings, fd: int) -> None:
    store = SqliteStore(settings.store_path, busy_timeout=settings.store_busy_seconds)
    routes, handlers = load_configuration(settings)
    dispatcher = Dispatcher(store, handlers, settings, routes)
    worker = LocalWorker(dispatcher, store, sweep_seconds=settings.sweep_seconds)
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    pending = bytearray()

    def on_readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:  # the server died without asking us to stop: die too, at once
            log.error("the server is gone; the worker stops with it")
            os._exit(70)
        pending.extend(data)
        *lines, rest = pending.split(b"\n")
        pending[:] = rest
        for line in lines:
            if line == QUIT:
                loop.remove_reader(fd)  # what follows is the end of the pipe: expected
                stopped.set_result(None)
                return
            if line:
                worker.submit(line.decode())

    os.set_blocking(fd, False)
    loop.add_reader(fd, on_readable)
    await worker.start()
    try:
        await stopped
    finally:
        await worker.stop()
        dispatcher.close()
        store.close()
