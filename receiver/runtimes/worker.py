"""The local server's background worker: runs handlers after the response has gone out.

Deliveries are processed concurrently (up to ``WEBHOOK_WORKER_CONCURRENCY`` at once), each
by the same :class:`~receiver.dispatch.Dispatcher` that Modal's ``process`` function uses.
On start, deliveries left pending by a previous process (crash, SIGKILL, shutdown) are
picked up again.

    worker = LocalWorker(dispatcher)
    await worker.start()      # resumes unfinished deliveries
    worker.submit(delivery_id)
    await worker.stop()
"""

from __future__ import annotations

import asyncio
import logging

from receiver.delivery import DeliveryRecord
from receiver.dispatch import Dispatcher
from receiver.stores import Body

log = logging.getLogger("receiver.worker")


class LocalWorker:
    """Runs :meth:`Dispatcher.process` for submitted delivery ids in background tasks."""

    def __init__(self, dispatcher: Dispatcher, *, sweep_seconds: float = 30.0) -> None:
        self.dispatcher = dispatcher
        self.sweep_seconds = sweep_seconds
        self._sweeper: asyncio.Task | None = None
        self._slots = asyncio.Semaphore(dispatcher.settings.worker_concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._submitted: set[str] = set()

    async def start(self) -> None:
        """Resume every delivery the store still has pending, then keep sweeping for more.

        The periodic sweep picks up deliveries made pending by another process (a replay)
        and any whose processing stopped on an unexpected error.
        """
        await self.sweep()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def sweep(self) -> None:
        """Submit every pending delivery of the store that is not being processed."""
        unfinished = await self.dispatcher.store.unfinished()
        resumed = [delivery_id for delivery_id in unfinished if delivery_id not in self._submitted]
        if resumed:
            log.info("resuming %d unfinished deliveries", len(resumed))
        for delivery_id in resumed:
            self.submit(delivery_id)

    def submit(self, delivery_id: str, fresh: tuple[DeliveryRecord, Body] | None = None) -> None:
        """Process ``delivery_id`` in the background (once, however often it is submitted).

        ``fresh``: its record and body, when it was just accepted by this process.
        """
        if delivery_id in self._submitted:
            return
        self._submitted.add(delivery_id)
        task = asyncio.get_running_loop().create_task(self._process(delivery_id, fresh))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every submitted delivery has been processed (tests, benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

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

    async def _process(self, delivery_id: str, fresh: tuple[DeliveryRecord, Body] | None) -> None:
        try:
            async with self._slots:
                await self.dispatcher.process(delivery_id, fresh=fresh)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery=%s processing stopped by an unexpected error", delivery_id)
        finally:
            self._submitted.discard(delivery_id)
