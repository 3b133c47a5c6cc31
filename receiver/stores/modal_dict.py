"""The Modal delivery store: deliveries in a ``modal.Dict``, an index of them in a ``modal.Queue``.

Dict keys:

- ``delivery:{id}``: the whole delivery in one value (what the listing shows, the handler
  names and the raw body), written once with ``skip_if_exists``: the first writer wins, so
  a redelivery is recognised across containers by one ``contains``.
- ``handler:{id}:{name}``: one handler's state (absent means pending);
  ``claim:{id}:{name}:{attempt}``: who runs that attempt, until when;
  ``call:{id}``: the ``process`` call in charge of the delivery.
- ``listed:{id}``, ``list:hours`` and ``list:{hour}:{chunk}``: the listing, newest first,
  written by the sweeper alone; ``dead``: the dead letters, kept until the retention ends;
  ``sweep:cursor``, ``sweep:touched``: how far the sweeper got.

The index is the list of deliveries the sweeper still has to look at: each accepted
delivery is put into the partition of its 10-second bucket *before* its record is written,
so no recorded delivery is missing from it. The sweeper (``receiver.runtimes.sweeper``)
drains the buckets past a grace period, lists what it finds, resumes what is stuck, and
puts what is still pending into a later bucket.

The Dict has no transactions; its one atomic step is ``put(..., skip_if_exists=True)``. So
an attempt is claimed by creating its claim key: of two processes claiming attempt 3, one
creates ``claim:...:3`` and runs it, the other finds it taken. A claim whose owner died
expires, and the next process claims the attempt after it.

Nothing here imports ``modal``: the Dict and the Queue are passed in, and any objects with
their async (``.aio``) methods will do, which is how it is tested offline.

    store = ModalDictStore(modal.Dict.from_name(name), modal.Queue.from_name(name + "-index"))
    new = await store.accept(record, body)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Collection, Iterable
from typing import Any, Protocol, TypeVar

from receiver.delivery import (
    DeliveryRecord,
    DeliveryStatus,
    HandlerState,
    HandlerStatus,
    with_failure,
)
from receiver.stores import Body, StoreError, TooLarge, reset_choice

T = TypeVar("T")

MAX_CLAIM_TRIES = 16  # expired claims skipped in a row before giving up (a crash loop)
BUCKET_SECONDS = 10  # one index partition per 10 s: at most 5,000 items each (Modal's cap)
UNSWEPT_BUCKETS = 60  # how far back a listing looks into buckets the sweeper has not drained
RECHECK_SECONDS = 120.0  # the sweeper looks at a pending delivery again after this long
AHEAD_BUCKETS = int(RECHECK_SECONDS // BUCKET_SECONDS) + 1  # where re-queued ones may be
LISTING_CHUNK = 1_000  # listing entries per Dict value
PARALLEL_CALLS = 32  # Modal calls in flight at once for many deliveries


def bucket_of(moment: float) -> int:
    """The index bucket of a moment (epoch seconds)."""
    return int(moment // BUCKET_SECONDS)


def _partition(bucket: int) -> str:
    return f"b{bucket}"


def _claim_key(delivery_id: str, handler: str, attempt: int) -> str:
    return f"claim:{delivery_id}:{handler}:{attempt}"


class AioMethod(Protocol):
    """A Modal object's method: ``method.aio(...)`` is its async form."""

    def aio(self, *args: Any, **kwargs: Any) -> Any: ...


class DictLike(Protocol):
    """The part of ``modal.Dict``'s API the store uses (through ``.aio``)."""

    get: AioMethod
    put: AioMethod
    pop: AioMethod
    contains: AioMethod


class QueueLike(Protocol):
    """The part of ``modal.Queue``'s API the store uses (through ``.aio``)."""

    put: AioMethod
    iterate: AioMethod
    clear: AioMethod


def summary_of(record: DeliveryRecord) -> dict:
    """What the index and the listing keep of a delivery: everything but the body and the
    handler states (those change; they are read from their own keys)."""
    return {
        "id": record.id,
        "received_at": record.received_at,
        "source": record.source,
        "subject": record.subject,
        "runs": record.runs,
        "routes": list(record.routes),
        "handlers": list(record.handlers),
    }


class ModalDictStore:
    """A :class:`~receiver.stores.DeliveryStore` over a ``modal.Dict`` and a ``modal.Queue``."""

    def __init__(self, entries: DictLike, index: QueueLike) -> None:
        self.entries = entries
        self.index_queue = index

    async def _call(self, pending: Awaitable[Any]) -> Any:
        try:
            return await pending
        except Exception as exc:  # the Modal client raises several unrelated error types
            # modal.exception.RequestSizeError: the control plane answered 413 to the write
            error = TooLarge if type(exc).__name__ == "RequestSizeError" else StoreError
            raise error(f"modal: {type(exc).__name__}: {exc}") from exc

    # -- the acknowledgement: index, then record ------------------------------------------

    async def accept(self, record: DeliveryRecord, body: Body) -> bool:
        """Index the delivery, then record it; False if it was recorded before. (The web
        function does the same in two round trips: see ``ModalIntake``.)"""
        await self.index(summary_of(record))
        return await self.record(record, body)

    async def seen(self, delivery_id: str) -> bool:
        """Whether a delivery with this id is recorded (one ``contains``, no download)."""
        return await self._call(self.entries.contains.aio(f"delivery:{delivery_id}"))

    async def index(self, summary: dict, moment: float | None = None) -> None:
        """Put a delivery in the index bucket of ``moment`` (default: now) for the sweeper."""
        bucket = bucket_of(time.time() if moment is None else moment)
        await self._call(self.index_queue.put.aio(summary, partition=_partition(bucket)))

    async def record(self, record: DeliveryRecord, body: Body) -> bool:
        """Write the delivery's one value; False if the id was recorded before."""
        value = {**summary_of(record), "body": bytes(body)}
        key = f"delivery:{record.id}"
        return await self._call(self.entries.put.aio(key, value, skip_if_exists=True))

    async def check(self) -> None:
        """Raise :class:`StoreError` unless the Dict takes a write (``/healthz``)."""
        await self._call(self.entries.put.aio("healthz", time.time()))

    # -- one delivery -----------------------------------------------------------------------

    async def get(self, delivery_id: str) -> DeliveryRecord | None:
        value = await self._call(self.entries.get.aio(f"delivery:{delivery_id}"))
        return None if value is None else await self.with_states(value)

    async def body(self, delivery_id: str) -> bytes:
        value = await self._call(self.entries.get.aio(f"delivery:{delivery_id}"))
        if value is None:
            raise StoreError(f"no delivery {delivery_id} in the modal.Dict")
        return value["body"]

    async def with_states(self, summary: dict) -> DeliveryRecord:
        """The record of a summary, with its handlers' current states (read in parallel)."""
        delivery_id = summary["id"]
        names = summary["handlers"]
        states = await asyncio.gather(*(self._state(delivery_id, name) for name in names))
        return DeliveryRecord(
            delivery_id,
            summary["received_at"],
            summary["source"],
            summary["subject"],
            summary["runs"],
            tuple(summary["routes"]),
            dict(zip(names, states, strict=True)),
        )

    async def record_call(self, delivery_id: str, call_id: str) -> None:
        """Note the ``process`` call now in charge of the delivery (for the sweeper)."""
        await self._call(self.entries.put.aio(f"call:{delivery_id}", call_id))

    async def call_of(self, delivery_id: str) -> str | None:
        return await self._call(self.entries.get.aio(f"call:{delivery_id}"))

    # -- claims -----------------------------------------------------------------------------

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
        owned = await self._own_attempt(delivery_id, handler, owner)
        if owned is None:
            return False
        claim = {"owner": owner, "until": until}
        key = _claim_key(delivery_id, handler, owned.attempts)
        await self._call(self.entries.put.aio(key, claim))
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
        owned = await self._own_attempt(delivery_id, handler, owner)
        if owned is None:
            return False
        attempt, failures = owned.attempts, owned.failures
        now = time.time()
        if error is None:
            status = HandlerStatus.DONE
        else:
            status = HandlerStatus.FAILED if final else HandlerStatus.PENDING
            failures = with_failure(failures, attempt, now, error)
        await self._put_state(
            delivery_id, handler, HandlerState(status, attempt, error, now, failures)
        )
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

    async def _own_attempt(self, delivery_id: str, handler: str, owner: str) -> HandlerState | None:
        """The state whose attempt ``owner`` holds the claim of, or None if it has lost it
        (its claim expired and another process claimed the next attempt)."""
        state = await self._state(delivery_id, handler)
        claim = await self._claim(delivery_id, handler, state.attempts)
        if not claim or claim["owner"] != owner:
            return None
        if await self._claim(delivery_id, handler, state.attempts + 1):
            return None  # claimed after ours expired; its owner has not counted it yet
        return state

    # -- listings: O(page) Dict calls ----------------------------------------------------------

    async def recent(
        self, limit: int = 20, *, source: str | None = None, route: str | None = None
    ) -> list[DeliveryRecord]:
        """Newest first: the buckets the sweeper has not drained yet, then the listing's
        hours, newest first, read only as far as the page needs."""
        chosen: dict[str, dict] = {}

        def take(summaries: Iterable[dict]) -> bool:
            """Add the newest wanted ones, up to the page; whether the page is full."""
            for summary in sorted(summaries, key=lambda each: each["received_at"], reverse=True):
                if len(chosen) >= limit:
                    break
                if source in (None, summary["source"]) and route in (None, *summary["routes"]):
                    chosen.setdefault(summary["id"], summary)
            return len(chosen) >= limit

        if not take(await self.unswept(ahead=False)):
            hours = await self._call(self.entries.get.aio("list:hours")) or {}
            chunks = (
                (hour, n)
                for hour in sorted(hours, reverse=True)
                for n in range(hours[hour] - 1, -1, -1)
            )
            for hour, n in chunks:
                if take(await self._call(self.entries.get.aio(f"list:{hour}:{n}")) or ()):
                    break
        records = await self.with_states_all(chosen.values())
        return sorted(records, key=lambda record: record.received_at, reverse=True)

    async def unfinished(self) -> list[str]:
        """Pending deliveries: every one is in a bucket the sweeper has not drained (new, or
        re-queued ahead because it was pending when last seen)."""
        records = await self.with_states_all(await self.unswept(ahead=True))
        return _ids_with(records, DeliveryStatus.PENDING)

    async def dead(self) -> list[str]:
        """Dead letters: those the sweeper keeps, and those it has not seen yet."""
        kept = await self.dead_letters()
        summaries = [*kept.values(), *await self.unswept(ahead=True)]
        return _ids_with(await self.with_states_all(summaries), DeliveryStatus.DEAD)

    async def reset(
        self,
        delivery_id: str,
        handlers: Collection[str] | None = None,
        *,
        include_done: bool = False,
    ) -> list[str]:
        """Make handlers pending again (see :meth:`DeliveryStore.reset`), and index the
        delivery again so that the sweeper follows it to its end (and takes it off the dead
        letters if it succeeds)."""
        record = await self.get(delivery_id)
        if record is None:
            return []
        reset = reset_choice(record, handlers, include_done)
        for name in reset:  # fresh attempts; the failures stay on record
            fresh = HandlerState(failures=record.handlers[name].failures)
            await self._put_state(delivery_id, name, fresh)
        if reset:  # into a bucket the sweeper has yet to drain, whatever this clock says
            cursor = await self.cursor() or 0
            await self.index(summary_of(record), max(time.time(), cursor * BUCKET_SECONDS))
        return reset

    async def get_meta(self, key: str) -> Any:
        return await self._call(self.entries.get.aio(f"meta:{key}"))

    async def set_meta(self, key: str, value: Any) -> None:
        await self._call(self.entries.put.aio(f"meta:{key}", value))

    async def with_states_all(self, summaries: Iterable[dict]) -> list[DeliveryRecord]:
        """Records of many summaries (one per id), read in parallel."""
        unique = {summary["id"]: summary for summary in summaries}
        return await gather_bounded(self.with_states(summary) for summary in unique.values())

    async def unswept(self, *, ahead: bool) -> list[dict]:
        """The summaries in buckets the sweeper has not drained: from its cursor (at most
        ``UNSWEPT_BUCKETS`` back) to now, or with ``ahead`` to the furthest re-queue bucket."""
        now = bucket_of(time.time())
        cursor = await self.cursor()
        first = max(now - UNSWEPT_BUCKETS, cursor if cursor is not None else 0)
        last = now + AHEAD_BUCKETS if ahead else now
        buckets = await gather_bounded(self.bucket(b) for b in range(first, last + 1))
        return [summary for bucket in buckets for summary in bucket]

    # -- what the sweeper reads and writes --------------------------------------------------

    async def bucket(self, bucket: int) -> list[dict]:
        """The summaries in one index bucket, without removing them."""

        async def read() -> list[dict]:
            items: AsyncIterator[dict] = self.index_queue.iterate.aio(partition=_partition(bucket))
            return [item async for item in items]

        return await self._call(read())

    async def clear_bucket(self, bucket: int) -> None:
        await self._call(self.index_queue.clear.aio(partition=_partition(bucket)))

    async def cursor(self) -> int | None:
        """The first bucket the sweeper has not drained (None before its first run)."""
        return await self._call(self.entries.get.aio("sweep:cursor"))

    async def set_cursor(self, bucket: int) -> None:
        await self._call(self.entries.put.aio("sweep:cursor", bucket))

    async def is_listed(self, delivery_id: str) -> bool:
        return await self._call(self.entries.contains.aio(f"listed:{delivery_id}"))

    async def mark_listed(self, delivery_id: str) -> None:
        await self._call(self.entries.put.aio(f"listed:{delivery_id}", True))

    async def add_to_listing(self, summaries: list[dict]) -> None:
        """Append to the listing, in chunks per hour of arrival (the sweeper is the only
        writer: a Dict value has no atomic append)."""
        if not summaries:
            return
        hours = await self._call(self.entries.get.aio("list:hours")) or {}
        by_hour: dict[int, list[dict]] = {}
        for summary in summaries:
            by_hour.setdefault(int(summary["received_at"] // 3600), []).append(summary)
        for hour, added in by_hour.items():
            chunk = max(hours.get(hour, 1) - 1, 0)
            entries = await self._call(self.entries.get.aio(f"list:{hour}:{chunk}")) or []
            for summary in added:
                if len(entries) >= LISTING_CHUNK:
                    await self._call(self.entries.put.aio(f"list:{hour}:{chunk}", entries))
                    chunk, entries = chunk + 1, []
                entries.append(summary)
            await self._call(self.entries.put.aio(f"list:{hour}:{chunk}", entries))
            hours[hour] = chunk + 1
        await self._call(self.entries.put.aio("list:hours", hours))

    async def dead_letters(self) -> dict[str, dict]:
        """The dead letters the sweeper keeps: id → summary with ``died_at``."""
        return await self._call(self.entries.get.aio("dead")) or {}

    async def set_dead_letters(self, letters: dict[str, dict]) -> None:
        await self._call(self.entries.put.aio("dead", letters))

    async def touched(self) -> float:
        return await self._call(self.entries.get.aio("sweep:touched")) or 0.0

    async def set_touched(self, moment: float) -> None:
        await self._call(self.entries.put.aio("sweep:touched", moment))

    async def touch(self, summary: dict) -> None:
        """Read every key of a delivery: Modal keeps a Dict entry 7 days after its last use."""
        await gather_bounded(self._call(self.entries.get.aio(key)) for key in _keys(summary))

    async def purge(self, summary: dict) -> None:
        """Remove a delivery whose retention ended."""
        await gather_bounded(self._call(self.entries.pop.aio(k, None)) for k in _keys(summary))

    async def _state(self, delivery_id: str, handler: str) -> HandlerState:
        state = await self._call(self.entries.get.aio(f"handler:{delivery_id}:{handler}"))
        if not state:
            return HandlerState()
        return HandlerState(
            HandlerStatus(state["status"]),
            state["attempts"],
            state["last_error"],
            state.get("finished_at"),
            tuple(state.get("failures", ())),
        )

    async def _put_state(self, delivery_id: str, handler: str, state: HandlerState) -> None:
        value = {
            "status": state.status.value,
            "attempts": state.attempts,
            "last_error": state.last_error,
            "finished_at": state.finished_at,
            "failures": list(state.failures),
        }
        await self._call(self.entries.put.aio(f"handler:{delivery_id}:{handler}", value))


async def gather_bounded(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await ``calls`` with at most ``PARALLEL_CALLS`` in flight; results in order."""
    gate = asyncio.Semaphore(PARALLEL_CALLS)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*map(one, calls)))


def _keys(summary: dict) -> list[str]:
    """A delivery's own keys (claims expire on their own; ``listed:`` is tiny)."""
    delivery_id = summary["id"]
    handlers = (f"handler:{delivery_id}:{name}" for name in summary["handlers"])
    return [f"delivery:{delivery_id}", f"call:{delivery_id}", *handlers]


def _ids_with(records: list[DeliveryRecord], status: DeliveryStatus) -> list[str]:
    chosen = sorted((r for r in records if r.status is status), key=lambda r: r.received_at)
    return [record.id for record in chosen]
