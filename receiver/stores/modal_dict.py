"""The Modal delivery store: deliveries and handler states in a ``modal.Dict``.

Keys: ``delivery:{id}`` (metadata, written once with ``skip_if_exists``: the first writer
wins, so a redelivery is recognised across containers), ``body:{id}`` (raw body) and
``handler:{id}:{name}`` (one handler's state; absent means pending) and
``claim:{id}:{name}:{attempt}`` (who runs that attempt, until when). Modal drops Dict
entries after 7 days without reads or writes.

The Dict has no transactions; its one atomic step is ``put(..., skip_if_exists=True)``. So
an attempt is claimed by creating its claim key: of two processes claiming attempt 3, one
creates ``claim:...:3`` and runs it, the other finds it taken. A claim whose owner died
expires, and the next process claims the attempt after it.

Nothing here imports ``modal``: the Dict is passed in, and any object with the Dict's async
``get``/``put``/``pop``/``keys`` (``.aio``) methods will do, which is how it is tested offline.

    store = ModalDictStore(modal.Dict.from_name("langsmith-webhook-deliveries"))
    new = await store.accept(record, body)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

from receiver.delivery import DeliveryRecord, HandlerState, HandlerStatus
from receiver.stores import Body, StoreError

# A recorded delivery whose spawn is not confirmed after this long is spawned again by its
# next redelivery (the first spawn failed and the record could not be removed).
SPAWN_GRACE_SECONDS = 30.0
MAX_CLAIM_TRIES = 16  # expired claims skipped in a row before giving up (a crash loop)


def _claim_key(delivery_id: str, handler: str, attempt: int) -> str:
    return f"claim:{delivery_id}:{handler}:{attempt}"


class AioMethod(Protocol):
    """A ``modal.Dict`` method: ``method.aio(...)`` is its async form."""

    def aio(self, *args: Any, **kwargs: Any) -> Any: ...


class DictLike(Protocol):
    """The part of ``modal.Dict``'s API the store uses (through ``.aio``)."""

    get: AioMethod
    put: AioMethod
    pop: AioMethod
    keys: AioMethod


class ModalDictStore:
    """A :class:`~receiver.stores.DeliveryStore` over a ``modal.Dict``."""

    def __init__(self, entries: DictLike) -> None:
        self.entries = entries

    async def _call(self, pending: Awaitable[Any]) -> Any:
        try:
            return await pending
        except Exception as exc:  # the Modal client raises several unrelated error types
            raise StoreError(f"modal.Dict: {type(exc).__name__}: {exc}") from exc

    async def accept(self, record: DeliveryRecord, body: Body) -> bool:
        await self._call(self.entries.put.aio(f"body:{record.id}", bytes(body)))
        meta = {
            "received_at": record.received_at,
            "source": record.source,
            "subject": record.subject,
            "runs": record.runs,
            "routes": list(record.routes),
            "handlers": list(record.handlers),
            "call_id": None,
        }
        return await self._call(
            self.entries.put.aio(f"delivery:{record.id}", meta, skip_if_exists=True)
        )

    async def check(self) -> None:
        """Raise :class:`StoreError` unless the Dict takes a write (``/healthz``)."""
        await self._call(self.entries.put.aio("healthz", time.time()))

    async def forget(self, delivery_id: str) -> None:
        """Remove a delivery whose spawn failed, so that LangSmith's retry is accepted afresh."""
        await self._call(self.entries.pop.aio(f"delivery:{delivery_id}", None))

    async def mark_spawned(self, delivery_id: str, call_id: str) -> None:
        """Record the ``process`` call that owns the delivery."""
        meta = await self._meta(delivery_id)
        await self._call(
            self.entries.put.aio(f"delivery:{delivery_id}", {**meta, "call_id": call_id})
        )

    async def spawn_state(self, delivery_id: str) -> str:
        """``"spawned"``, ``"in_flight"`` (being recorded right now) or ``"orphaned"``."""
        meta = await self._meta(delivery_id)
        if meta.get("call_id"):
            return "spawned"
        age = time.time() - meta["received_at"]
        return "in_flight" if age < SPAWN_GRACE_SECONDS else "orphaned"

    async def get(self, delivery_id: str) -> DeliveryRecord | None:
        meta = await self._call(self.entries.get.aio(f"delivery:{delivery_id}"))
        if meta is None:
            return None
        record = DeliveryRecord(
            delivery_id,
            meta["received_at"],
            meta.get("source", "rule"),
            meta.get("subject", meta.get("rule_id", "")),  # written before sources existed
            meta["runs"],
            tuple(meta.get("routes", ())),
        )
        for name in meta["handlers"]:
            record.handlers[name] = await self._state(delivery_id, name)
        return record

    async def body(self, delivery_id: str) -> bytes:
        return await self._require(f"body:{delivery_id}")

    async def start_attempt(
        self, delivery_id: str, handler: str, owner: str, until: float
    ) -> int | None:
        state = await self._state(delivery_id, handler)
        if state.status is not HandlerStatus.PENDING:
            return None
        last = state.attempts
        previous = await self._claim(delivery_id, handler, last) if last else None
        if self._held_by_other(previous, owner):
            return None  # the last attempt's claim is live: running, or its retry is waiting
        for attempt in range(last + 1, last + 1 + MAX_CLAIM_TRIES):
            key = _claim_key(delivery_id, handler, attempt)
            claim = {"owner": owner, "until": until}
            if await self._call(self.entries.put.aio(key, claim, skip_if_exists=True)):
                state.attempts = attempt
                await self._put_state(delivery_id, handler, state)
                if previous:  # held through a backoff (ours) or expired: no longer needed
                    await self._call(self.entries.pop.aio(_claim_key(delivery_id, handler, last)))
                return attempt
            if self._held_by_other(await self._claim(delivery_id, handler, attempt), owner):
                return None
            # that attempt's owner died before counting it: claim the next one
        raise StoreError(f"delivery {delivery_id}: {MAX_CLAIM_TRIES} expired claims of {handler}")

    async def renew(self, delivery_id: str, handler: str, owner: str, until: float) -> bool:
        attempt = await self._own_attempt(delivery_id, handler, owner)
        if attempt is None:
            return False
        claim = {"owner": owner, "until": until}
        await self._call(self.entries.put.aio(_claim_key(delivery_id, handler, attempt), claim))
        return True

    async def finish_attempt(
        self,
        delivery_id: str,
        handler: str,
        owner: str,
        error: str | None,
        *,
        final: bool,
        hold_until: float | None = None,
    ) -> bool:
        attempt = await self._own_attempt(delivery_id, handler, owner)
        if attempt is None:
            return False
        if error is None:
            status = HandlerStatus.DONE
        else:
            status = HandlerStatus.FAILED if final else HandlerStatus.PENDING
        await self._put_state(delivery_id, handler, HandlerState(status, attempt, error))
        key = _claim_key(delivery_id, handler, attempt)
        if hold_until is None:
            await self._call(self.entries.pop.aio(key, None))
        else:
            await self._call(self.entries.put.aio(key, {"owner": owner, "until": hold_until}))
        return True

    async def _claim(self, delivery_id: str, handler: str, attempt: int) -> dict | None:
        return await self._call(self.entries.get.aio(_claim_key(delivery_id, handler, attempt)))

    @staticmethod
    def _held_by_other(claim: dict | None, owner: str) -> bool:
        return bool(claim) and claim["owner"] != owner and claim["until"] > time.time()

    async def _own_attempt(self, delivery_id: str, handler: str, owner: str) -> int | None:
        """The attempt ``owner`` holds the claim of, or None if it has lost it (its claim
        expired and another process claimed the next attempt)."""
        attempt = (await self._state(delivery_id, handler)).attempts
        claim = await self._claim(delivery_id, handler, attempt)
        if not claim or claim["owner"] != owner:
            return None
        if await self._claim(delivery_id, handler, attempt + 1):
            return None  # claimed after ours expired; its owner has not counted it yet
        return attempt

    async def recent(
        self, limit: int = 20, *, source: str | None = None, route: str | None = None
    ) -> list[DeliveryRecord]:
        records = [
            record
            for record in await self._records()
            if source in (None, record.source) and (route is None or route in record.routes)
        ]
        records.sort(key=lambda record: record.received_at, reverse=True)
        return records[:limit]

    async def unfinished(self) -> list[str]:
        return await self._ids_by_status("pending")

    async def dead(self) -> list[str]:
        return await self._ids_by_status("dead")

    async def reset_failed(self, delivery_id: str) -> list[str]:
        record = await self.get(delivery_id)
        failed = [
            name
            for name, state in (record.handlers.items() if record else ())
            if state.status is HandlerStatus.FAILED
        ]
        for name in failed:
            await self._put_state(delivery_id, name, HandlerState())
        return failed

    async def _meta(self, delivery_id: str) -> dict:
        return await self._require(f"delivery:{delivery_id}")

    async def _require(self, key: str) -> Any:
        value = await self._call(self.entries.get.aio(key))
        if value is None:
            raise StoreError(f"no {key} in the modal.Dict")
        return value

    async def _records(self) -> list[DeliveryRecord]:
        async def all_keys() -> list[Any]:
            keys: AsyncIterator[Any] = self.entries.keys.aio()
            return [key async for key in keys]

        keys = await self._call(all_keys())
        ids = [key.removeprefix("delivery:") for key in keys if key.startswith("delivery:")]
        records = [await self.get(delivery_id) for delivery_id in ids]
        return [record for record in records if record is not None]

    async def _ids_by_status(self, status: str) -> list[str]:
        chosen = [r for r in await self._records() if r.status.value == status]
        return [r.id for r in sorted(chosen, key=lambda r: r.received_at)]

    async def _state(self, delivery_id: str, handler: str) -> HandlerState:
        state = await self._call(self.entries.get.aio(f"handler:{delivery_id}:{handler}"))
        if not state:
            return HandlerState()
        return HandlerState(HandlerStatus(state["status"]), state["attempts"], state["last_error"])

    async def _put_state(self, delivery_id: str, handler: str, state: HandlerState) -> None:
        value = {
            "status": state.status.value,
            "attempts": state.attempts,
            "last_error": state.last_error,
        }
        await self._call(self.entries.put.aio(f"handler:{delivery_id}:{handler}", value))
