"""The Modal runtime: deliveries recorded in a ``modal.Dict``, handlers run by ``process``.

``webhook_app.py`` stays a thin shell over this module. The web function's app records each
accepted delivery in the Dict and spawns the ``process`` function before answering ``202``;
``process`` runs the same :class:`~receiver.dispatch.Dispatcher` as the local worker, with
per-handler state kept in the Dict.

Nothing here imports ``modal``: the Dict and the spawn function are passed in, so this
module is tested offline with any object that has the Dict's async (``.aio``) methods.

    app = create_modal_app(settings, deliveries_dict, spawn=process.spawn.aio)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from receiver.delivery import DeliveryRecord, DeliveryStatus
from receiver.dispatch import Dispatcher, load_configuration
from receiver.edge import create_app
from receiver.routes import load_routes
from receiver.settings import Settings
from receiver.sources import SOURCES
from receiver.stores import Body, StoreError
from receiver.stores.modal_dict import DictLike, ModalDictStore

Spawn = Callable[[str], Awaitable[Any]]


class ModalIntake:
    """Records a delivery in the Dict, then spawns ``process`` for it; both before ``202``."""

    def __init__(self, store: ModalDictStore, spawn: Spawn) -> None:
        self.store = store
        self.spawn = spawn

    async def accept(self, record: DeliveryRecord, body: Body, deadline: float) -> bool:
        async with asyncio.timeout_at(deadline):
            return await self._accept(record, body)

    async def _accept(self, record: DeliveryRecord, body: Body) -> bool:
        new = await self.store.accept(record, body)
        if not new:
            state = await self.store.spawn_state(record.id)
            if state == "in_flight":
                # The first copy is being recorded right now; if its spawn fails, this retry
                # (answered 503) is what brings the body back.
                raise StoreError(f"delivery {record.id} is still being recorded")
            if state == "spawned":
                return False
        try:
            call = await self.spawn(record.id)
        except Exception as exc:
            with contextlib.suppress(StoreError):
                await self.store.forget(record.id)
            raise StoreError(f"spawning process failed: {type(exc).__name__}: {exc}") from exc
        await self.store.mark_spawned(record.id, call.object_id)
        return new

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        return await self.store.get(delivery_id)

    async def check(self) -> None:
        await self.store.check()


def create_modal_app(settings: Settings, entries: DictLike, spawn: Spawn) -> FastAPI:
    """The receiver app for Modal's web function.

    Handlers are not run here, so they are not loaded: the routes name them, which is
    enough for the record (``webhook_app.py`` loads and checks them when the app is defined).
    """
    routes = load_routes(settings, SOURCES)
    return create_app(settings, routes, ModalIntake(ModalDictStore(entries), spawn))


CLAIM_WAITS = 4  # lease periods a `process` call waits for another owner's claim to end


async def process_delivery(settings: Settings, entries: DictLike, delivery_id: str) -> dict:
    """The body of Modal's ``process`` function: run the delivery's pending handlers.

    A handler still pending afterwards is claimed by another owner: a live one (another
    call, a replay), which finishes it, or the container that died mid-handler and made
    Modal retry this call, whose claim expires within a lease. So the call waits and tries
    again, for up to a few leases, rather than end with the handler pending and no call
    left to run it.
    """
    routes, handlers = load_configuration(settings)
    dispatcher = Dispatcher(ModalDictStore(entries), handlers, settings, routes)
    try:
        record = await dispatcher.process(delivery_id)
        for _ in range(CLAIM_WAITS * 3):
            if record is None or record.status is not DeliveryStatus.PENDING:
                break
            await asyncio.sleep(settings.lease_seconds / 3)
            record = await dispatcher.process(delivery_id)
    finally:
        dispatcher.close()
    return record.to_json() if record else {"id": delivery_id, "status": "unknown"}
