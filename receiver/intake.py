"""Intakes: how an accepted delivery is made durable and handed to the handlers.

The HTTP edge calls ``await intake.accept(record, body, payload)`` and answers ``202`` only once it
returns. Locally, :class:`LocalIntake` commits the delivery to SQLite and wakes the
in-process worker; on Modal, ``receiver.modal_runtime.ModalIntake`` records it in a
``modal.Dict`` and spawns the ``process`` function.

    intake = LocalIntake(store, worker)
    new = await intake.accept(record, body, payload)  # False: a redelivery, not run again
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from receiver.delivery import DeliveryRecord
from receiver.payload import RulePayload
from receiver.store import Body, SqliteStore
from receiver.worker import LocalWorker


class Intake(Protocol):
    """Where the HTTP edge puts accepted deliveries and reads their status."""

    async def accept(self, record: DeliveryRecord, body: Body, payload: RulePayload) -> bool:
        """Make the delivery durable and schedule its handlers; False if already accepted.

        Raises ``receiver.store.StoreError`` when it cannot be recorded.
        """
        ...

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        """The delivery's current record, or None if unknown."""
        ...


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

    async def accept(self, record: DeliveryRecord, body: Body, payload: RulePayload) -> bool:
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((record, body, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        new = await answer
        if new:
            self.worker.submit(record.id, fresh=(record, payload))
        return new

    async def _write_waiting(self) -> None:
        while self._waiting:
            await asyncio.sleep(0)  # let the accepts already under way join this batch
            batch, self._waiting = self._waiting, []
            try:  # on the event loop: see store.call_inline
                results = self.store.accept_many([(record, body) for record, body, _ in batch])
            except Exception as exc:  # all or nothing: every delivery of the batch is refused
                for _, _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, _, answer), new in zip(batch, results, strict=True):
                if not answer.done():
                    answer.set_result(new)

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        return self.store.get(delivery_id)
