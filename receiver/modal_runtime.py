"""The Modal runtime: deliveries recorded in a ``modal.Dict``, handlers run by ``process``.

``webhook_app.py`` stays a thin shell over this module. The web function's app records each
accepted delivery in the Dict (``put(..., skip_if_exists=True)``: the first writer wins, so
a redelivery is recognised) and spawns the ``process`` function before answering ``202``.
``process`` runs the same :class:`~receiver.dispatch.Dispatcher` as the local worker, with
per-handler state kept in the Dict.

Nothing here imports ``modal``: the Dict and the spawn function are passed in, so this
module is tested offline with any object that has the Dict's ``get``/``put``/``pop``/``keys``.

    app = create_modal_app(settings, deliveries_dict, spawn=process.spawn.aio)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from starlette.applications import Starlette

from receiver.delivery import DeliveryRecord, HandlerState, HandlerStatus
from receiver.dispatch import Dispatcher
from receiver.http_app import create_app
from receiver.payload import RulePayload
from receiver.registry import load_handlers
from receiver.settings import Settings
from receiver.store import Body, StoreError

# A recorded delivery whose spawn is not confirmed after this long is spawned again by its
# next redelivery (the first spawn failed and the record could not be removed).
SPAWN_GRACE_SECONDS = 30.0


class DictLike(Protocol):
    """The part of ``modal.Dict``'s blocking API the store uses."""

    def get(self, key: Any, default: Any = None) -> Any: ...
    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool: ...
    def pop(self, key: Any, default: Any = None) -> Any: ...
    def keys(self) -> Iterator[Any]: ...


class ModalDictStore:
    """A :class:`~receiver.store.DeliveryStore` over a ``modal.Dict``.

    Keys: ``delivery:{id}`` (metadata, written once with ``skip_if_exists``), ``body:{id}``
    (raw body) and ``handler:{id}:{name}`` (one handler's state; absent means pending).
    Modal drops Dict entries after 7 days without reads or writes.
    """

    def __init__(self, entries: DictLike) -> None:
        self.entries = entries

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:  # the Modal client raises several unrelated error types
            raise StoreError(f"modal.Dict: {type(exc).__name__}: {exc}") from exc

    def accept(self, record: DeliveryRecord, body: Body) -> bool:
        self._call(self.entries.put, f"body:{record.id}", body)
        meta = {
            "received_at": record.received_at,
            "rule_id": record.rule_id,
            "runs": record.runs,
            "handlers": list(record.handlers),
            "call_id": None,
        }
        return self._call(self.entries.put, f"delivery:{record.id}", meta, skip_if_exists=True)

    def forget(self, delivery_id: str) -> None:
        """Remove a delivery whose spawn failed, so that LangSmith's retry is accepted afresh."""
        self._call(self.entries.pop, f"delivery:{delivery_id}", None)

    def mark_spawned(self, delivery_id: str, call_id: str) -> None:
        """Record the ``process`` call that owns the delivery."""
        meta = self._meta(delivery_id)
        self._call(self.entries.put, f"delivery:{delivery_id}", {**meta, "call_id": call_id})

    def spawn_state(self, delivery_id: str) -> str:
        """``"spawned"``, ``"in_flight"`` (being recorded right now) or ``"orphaned"``."""
        meta = self._meta(delivery_id)
        if meta.get("call_id"):
            return "spawned"
        age = time.time() - meta["received_at"]
        return "in_flight" if age < SPAWN_GRACE_SECONDS else "orphaned"

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        meta = self._call(self.entries.get, f"delivery:{delivery_id}")
        if meta is None:
            return None
        record = DeliveryRecord(delivery_id, meta["received_at"], meta["rule_id"], meta["runs"])
        for name in meta["handlers"]:
            record.handlers[name] = self._state(delivery_id, name)
        return record

    def body(self, delivery_id: str) -> bytes:
        return self._require(f"body:{delivery_id}")

    def start_attempt(self, delivery_id: str, handler: str) -> int:
        state = self._state(delivery_id, handler)
        state.attempts += 1
        self._put_state(delivery_id, handler, state)
        return state.attempts

    def finish_attempt(
        self, delivery_id: str, handler: str, error: str | None, *, final: bool
    ) -> None:
        state = self._state(delivery_id, handler)
        if error is None:
            state.status = HandlerStatus.DONE
        else:
            state.status = HandlerStatus.FAILED if final else HandlerStatus.PENDING
        state.last_error = error
        self._put_state(delivery_id, handler, state)

    def recent(self, limit: int = 20) -> list[DeliveryRecord]:
        records = [self.get(delivery_id) for delivery_id in self._ids()]
        records = [record for record in records if record is not None]
        records.sort(key=lambda record: record.received_at, reverse=True)
        return records[:limit]

    def unfinished(self) -> list[str]:
        return self._ids_by_status("pending")

    def dead(self) -> list[str]:
        return self._ids_by_status("dead")

    def reset_failed(self, delivery_id: str) -> list[str]:
        record = self.get(delivery_id)
        failed = [
            name
            for name, state in (record.handlers.items() if record else ())
            if state.status is HandlerStatus.FAILED
        ]
        for name in failed:
            self._put_state(delivery_id, name, HandlerState())
        return failed

    def _meta(self, delivery_id: str) -> dict:
        return self._require(f"delivery:{delivery_id}")

    def _require(self, key: str) -> Any:
        value = self._call(self.entries.get, key)
        if value is None:
            raise StoreError(f"no {key} in the modal.Dict")
        return value

    def _ids(self) -> list[str]:
        keys = self._call(lambda: list(self.entries.keys()))
        return [key.removeprefix("delivery:") for key in keys if key.startswith("delivery:")]

    def _ids_by_status(self, status: str) -> list[str]:
        records = [self.get(delivery_id) for delivery_id in self._ids()]
        chosen = [r for r in records if r is not None and r.status.value == status]
        return [r.id for r in sorted(chosen, key=lambda r: r.received_at)]

    def _state(self, delivery_id: str, handler: str) -> HandlerState:
        state = self._call(self.entries.get, f"handler:{delivery_id}:{handler}")
        if not state:
            return HandlerState()
        return HandlerState(HandlerStatus(state["status"]), state["attempts"], state["last_error"])

    def _put_state(self, delivery_id: str, handler: str, state: HandlerState) -> None:
        value = {
            "status": state.status.value,
            "attempts": state.attempts,
            "last_error": state.last_error,
        }
        self._call(self.entries.put, f"handler:{delivery_id}:{handler}", value)


Spawn = Callable[[str], Awaitable[Any]]


class ModalIntake:
    """Records a delivery in the Dict, then spawns ``process`` for it; both before ``202``."""

    def __init__(self, store: ModalDictStore, spawn: Spawn) -> None:
        self.store = store
        self.spawn = spawn

    async def accept(self, record: DeliveryRecord, body: Body, payload: RulePayload) -> bool:
        new = await asyncio.to_thread(self.store.accept, record, body)
        if not new:
            state = await asyncio.to_thread(self.store.spawn_state, record.id)
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
                await asyncio.to_thread(self.store.forget, record.id)
            raise StoreError(f"spawning process failed: {type(exc).__name__}: {exc}") from exc
        await asyncio.to_thread(self.store.mark_spawned, record.id, call.object_id)
        return new

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        return await asyncio.to_thread(self.store.get, delivery_id)


def create_modal_app(settings: Settings, entries: DictLike, spawn: Spawn) -> Starlette:
    """The receiver app for Modal's web function (handlers loaded, and checked, now)."""
    handlers = load_handlers(settings.handlers)
    return create_app(settings, handlers, ModalIntake(ModalDictStore(entries), spawn))


async def process_delivery(settings: Settings, entries: DictLike, delivery_id: str) -> dict:
    """The body of Modal's ``process`` function: run the delivery's pending handlers."""
    dispatcher = Dispatcher(ModalDictStore(entries), load_handlers(settings.handlers), settings)
    try:
        record = await dispatcher.process(delivery_id)
    finally:
        dispatcher.close()
    return record.to_json() if record else {"id": delivery_id, "status": "unknown"}
