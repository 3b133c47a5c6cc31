"""Replaying deliveries: which handlers run again, and making them run.

The console, its JSON API and ``scripts/replay.py`` plan the same way: by default a
delivery's failed handlers; with ``include_done`` its done ones too (handlers are
idempotent by contract, so a delivery that succeeded may be run again); or one named
handler. A handler still pending is left alone: it is running, or about to.

    plan = plan_replay(found.records, include_done=True)
    plan.deliveries, plan.handlers          # what a confirmation shows
    await carry_out(store, plan, rerun)      # reset, then hand each to the runtime
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from receiver.delivery import DeliveryRecord
from receiver.stores import DeliveryStore, reset_choice

Rerun = Callable[[str], Awaitable[None]]  # the runtime's "process this delivery" (wake, spawn)


@dataclass(frozen=True)
class Plan:
    """Per delivery id, the handlers a replay runs again (deliveries with none left out)."""

    items: tuple[tuple[str, tuple[str, ...]], ...]
    include_done: bool = False
    handler: str | None = None

    @property
    def deliveries(self) -> int:
        return len(self.items)

    @property
    def handlers(self) -> int:
        return sum(len(names) for _, names in self.items)


def plan_replay(
    records: Iterable[DeliveryRecord], *, include_done: bool = False, handler: str | None = None
) -> Plan:
    """What replaying ``records`` would run: their failed handlers (done ones too with
    ``include_done``), or only ``handler``; never a pending one."""
    items = []
    for record in records:
        names = tuple(reset_choice(record, None if handler is None else [handler], include_done))
        if names:
            items.append((record.id, names))
    return Plan(tuple(items), include_done, handler)


async def carry_out(store: DeliveryStore, plan: Plan, rerun: Rerun) -> list[str]:
    """Reset each planned delivery's handlers and hand it to the runtime; the ids that had
    something to run (a handler may have changed state since the plan was made)."""
    started = []
    for delivery_id, names in plan.items:
        if await store.reset(delivery_id, names):
            await rerun(delivery_id)
            started.append(delivery_id)
    return started
