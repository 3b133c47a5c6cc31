"""Intakes: how an accepted delivery is made durable and handed to the handlers.

The HTTP edge calls ``await intake.accept(record, body)`` and answers ``202`` only once it
returns. Locally, :class:`LocalIntake` commits the delivery to SQLite and wakes the
in-process worker; on Modal, ``receiver.modal_runtime.ModalIntake`` records it in a
``modal.Dict`` and spawns the ``process`` function.

    intake = LocalIntake(store, worker)
    new = await intake.accept(record, body)  # False: a redelivery, handlers not run again
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from receiver.delivery import DeliveryRecord
from receiver.store import DeliveryStore
from receiver.worker import LocalWorker


class Intake(Protocol):
    """Where the HTTP edge puts accepted deliveries and reads their status."""

    async def accept(self, record: DeliveryRecord, body: bytes) -> bool:
        """Make the delivery durable and schedule its handlers; False if already accepted.

        Raises ``receiver.store.StoreError`` when it cannot be recorded.
        """
        ...

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        """The delivery's current record, or None if unknown."""
        ...


class LocalIntake:
    """SQLite store + in-process background worker (the local server and the tests)."""

    def __init__(self, store: DeliveryStore, worker: LocalWorker) -> None:
        self.store = store
        self.worker = worker

    async def accept(self, record: DeliveryRecord, body: bytes) -> bool:
        new = await asyncio.to_thread(self.store.accept, record, body)
        if new:
            self.worker.submit(record.id)
        return new

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        return await asyncio.to_thread(self.store.get, delivery_id)
