"""The Modal runtime: deliveries recorded in a ``modal.Dict``, handlers run by ``process``.

``webhook_app.py`` stays a thin shell over this module. The web function's app indexes and
records each accepted delivery and spawns the ``process`` function before answering
``202``; ``process`` runs the same :class:`~receiver.dispatch.Dispatcher` as the local
worker, with per-handler state kept in the Dict; the sweeper (``runtimes.sweeper``)
finishes what neither got to.

Nothing here imports ``modal``: the store and the spawn function are passed in, so this
module is tested offline with objects that have the Dict's and Queue's async methods.

    app = create_modal_app(settings, ModalDictStore(dict_, queue), spawn=process.spawn.aio)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from receiver.console.views import add_console
from receiver.delivery import DeliveryRecord, DeliveryStatus
from receiver.dispatch import Dispatcher, describe_error, load_configuration
from receiver.edge import create_app
from receiver.routes import load_routes
from receiver.settings import Settings
from receiver.sources import SOURCES
from receiver.stores import Body, StoreError
from receiver.stores.modal_dict import ModalDictStore, summary_of

Spawn = Callable[[str], Awaitable[Any]]

log = logging.getLogger("receiver.modal")


class ModalIntake:
    """Indexes, records and spawns a delivery before ``202``, in two round trips.

    1. ``contains`` (is it a redelivery?) alongside the index put: a duplicate is answered
       after this one round trip, before its body is uploaded again.
    2. The delivery's one value (``skip_if_exists``) alongside the spawn of ``process``.

    The index entry comes first, so every recorded delivery is in it and the sweeper
    finishes what a failed spawn, a dying container or a cut-off answer left. A spawn that
    fails is therefore not an error: the delivery is durable, the sweeper spawns it.

    The spawned call's id is noted after the answer, for the sweeper (a call still queued
    is alive); if that note is lost, the call notes itself when it starts.
    """

    def __init__(self, store: ModalDictStore, spawn: Spawn) -> None:
        self.store = store
        self.spawn = spawn
        self._notes: set[asyncio.Task] = set()

    async def accept(self, record: DeliveryRecord, body: Body, deadline: float) -> bool:
        async with asyncio.timeout_at(deadline):
            return await self._accept(record, body)

    async def _accept(self, record: DeliveryRecord, body: Body) -> bool:
        seen, _ = await asyncio.gather(
            self.store.seen(record.id), self.store.index(summary_of(record))
        )
        if seen:
            return False
        new, spawned = await asyncio.gather(
            self.store.record(record, body), self.spawn(record.id), return_exceptions=True
        )
        if isinstance(new, BaseException):
            raise new  # not recorded: 503, and the process call finds nothing to do
        if isinstance(spawned, BaseException):
            log.warning(
                "delivery=%s recorded; spawning process failed (%s): the sweeper will",
                record.id,
                describe_error(spawned),
            )
        else:
            note = asyncio.create_task(self._note_call(record.id, spawned.object_id))
            self._notes.add(note)
            note.add_done_callback(self._notes.discard)
        return new

    async def _note_call(self, delivery_id: str, call_id: str) -> None:
        with contextlib.suppress(StoreError):
            await self.store.record_call(delivery_id, call_id)

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        return await self.store.get(delivery_id)

    async def check(self) -> None:
        await self.store.check()


def create_modal_app(settings: Settings, store: ModalDictStore, spawn: Spawn) -> FastAPI:
    """The receiver app for Modal's web function.

    Handlers are not run here, so they are not loaded: the routes name them, which is
    enough for the record (``webhook_app.py`` loads and checks them when the app is defined).
    The console (when ``WEBHOOK_CONSOLE_TOKEN`` is set) replays by spawning ``process``.
    """
    routes = load_routes(settings, SOURCES)
    app = create_app(settings, routes, ModalIntake(store, spawn))

    async def rerun(delivery_id: str) -> None:
        """A replay from the console: spawn ``process``, noting the call for the sweeper."""
        call = await spawn(delivery_id)
        await store.record_call(delivery_id, call.object_id)

    add_console(app, settings, routes, store, rerun)
    return app


CLAIM_WAITS = 4  # lease periods a `process` call waits for another owner's claim to end
RECORD_WAIT_SECONDS = 10.0  # how long a call waits for the record it was spawned alongside


async def process_delivery(
    settings: Settings, store: ModalDictStore, delivery_id: str, call_id: str | None = None
) -> dict:
    """The body of Modal's ``process`` function: run the delivery's pending handlers.

    The web function spawns this call alongside writing the record, so the record may land
    a moment after the call starts: it is waited for, briefly (if it never lands, the
    sender was answered 503 and will retry). ``call_id`` is noted for the sweeper.

    A handler still pending afterwards is claimed by another owner: a live one (another
    call, a replay), which finishes it, or the container that died mid-handler and made
    Modal retry this call, whose claim expires within a lease. So the call waits and tries
    again, for up to a few leases, rather than end with the handler pending and no call
    left to run it.
    """
    routes, handlers = load_configuration(settings)
    if call_id is not None:
        await store.record_call(delivery_id, call_id)
    waited = 0.0
    while not await store.seen(delivery_id):
        if waited >= RECORD_WAIT_SECONDS:
            log.warning("delivery=%s never recorded (its sender was answered 503)", delivery_id)
            return {"id": delivery_id, "status": "unknown"}
        await asyncio.sleep(0.25)
        waited += 0.25
    dispatcher = Dispatcher(store, handlers, settings, routes)
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
