"""Delivery stores: what was accepted, and how far each handler got with it.

:class:`DeliveryStore` is the one async interface the edge's intakes, the dispatcher and the
operator scripts use. ``stores.sqlite`` implements it locally, ``stores.modal_dict`` on
Modal; a new store (Postgres, Redis, ...) is a new module here implementing the protocol.

    store = SqliteStore("data/deliveries.sqlite3")
    if await store.accept(record, body):  # False: already accepted (a redelivery)
        ...
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from receiver.delivery import DeliveryRecord, HandlerStatus

Body = bytes | bytearray  # a request body as read (the edge reads into a bytearray)


class StoreError(RuntimeError):
    """The store could not record or read a delivery (the edge answers 503 so LangSmith retries)."""


class TooLarge(StoreError):
    """The store refuses a value this large: retrying cannot help (the edge answers 413)."""


class DeliveryStore(Protocol):
    """What any delivery store offers."""

    async def accept(self, record: DeliveryRecord, body: Body) -> bool:
        """Record a new delivery with its handlers pending; False if the id is already known."""
        ...

    async def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery's record, or None."""
        ...

    async def body(self, delivery_id: str) -> bytes:
        """The raw body of an accepted delivery."""
        ...

    async def start_attempt(
        self, delivery_id: str, handler: str, owner: str, until: float
    ) -> int | None:
        """Claim the next attempt of ``handler`` for ``owner`` until ``until`` (epoch
        seconds) and return its number; None when the handler is not pending or another
        owner's claim has not expired. Counting the attempt and claiming it are one step:
        two processes never run one handler of one delivery at the same time."""
        ...

    async def renew(self, delivery_id: str, handler: str, owner: str, until: float) -> bool:
        """Extend ``owner``'s claim; False if it no longer holds it."""
        ...

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
        """Record an attempt's outcome: done, pending again (``error``), or failed (``final``);
        the claim ends, or is kept until ``hold_until`` (a retry's backoff). False, and
        nothing written, if ``owner`` no longer holds the claim."""
        ...

    async def recent(
        self, limit: int = 20, *, source: str | None = None, route: str | None = None
    ) -> list[DeliveryRecord]:
        """The latest deliveries, newest first; only those of ``source``/``route`` if given."""
        ...

    async def unfinished(self) -> list[str]:
        """Ids of deliveries with a pending handler, oldest first (crash recovery)."""
        ...

    async def dead(self) -> list[str]:
        """Ids of deliveries with a handler that failed for good."""
        ...

    async def reset(
        self,
        delivery_id: str,
        handlers: Collection[str] | None = None,
        *,
        include_done: bool = False,
    ) -> list[str]:
        """Make handlers of a delivery pending again with fresh attempts, and return those
        reset: ``handlers`` if named, else the failed ones (and, with ``include_done``, the
        done ones too: their handlers are idempotent by contract). A pending handler is
        left as it is: it is running, or about to."""
        ...

    async def get_meta(self, key: str) -> Any:
        """A small JSON value kept under ``key`` (the alerts' state), or None."""
        ...

    async def set_meta(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON-ready) under ``key``."""
        ...


def reset_choice(
    record: DeliveryRecord | None, handlers: Collection[str] | None, include_done: bool
) -> list[str]:
    """The handlers :meth:`DeliveryStore.reset` resets: those named, else those that failed
    (or are done, if asked); of ``record``'s, and never a pending one, when ``record`` is
    given (a store without it checks that as it writes)."""
    if record is None:
        return list(handlers or ())
    wanted = {HandlerStatus.FAILED, *([HandlerStatus.DONE] if include_done else [])}
    return [
        name
        for name, state in record.handlers.items()
        if state.status is not HandlerStatus.PENDING
        and (name in handlers if handlers is not None else state.status in wanted)
    ]
