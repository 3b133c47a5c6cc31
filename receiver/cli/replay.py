"""Replaying deliveries from the command line: choose them, plan, then run them here.

Used by ``scripts/replay.py``; locally the handlers run in the calling process, with the
same :class:`~receiver.dispatch.Dispatcher` (and retries) as the worker. The choice and the
plan are the console's (``receiver.selection``, ``receiver.replays``).

    plan = await plan_for(store, ids=["3f1c..."])                 # or a Selection
    records = await run_here(dispatcher, plan)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from receiver.delivery import DeliveryRecord
from receiver.dispatch import Dispatcher
from receiver.replays import Plan, carry_out, plan_replay
from receiver.selection import Selection, select
from receiver.stores import DeliveryStore

log = logging.getLogger("receiver.replay")


class ReplayError(LookupError):
    """A delivery asked for is unknown to the store."""


async def plan_for(
    store: DeliveryStore,
    *,
    ids: Sequence[str] = (),
    selection: Selection | None = None,
    include_done: bool = False,
) -> Plan:
    """The plan for the deliveries named by ``ids``, or chosen by ``selection``."""
    if ids:
        records = []
        for delivery_id in ids:
            record = await store.get(delivery_id)
            if record is None:
                raise ReplayError(f"no delivery {delivery_id} in the store")
            records.append(record)
    else:
        records = (await select(store, selection or Selection())).records
    return plan_replay(records, include_done=include_done)


async def run_here(dispatcher: Dispatcher, plan: Plan) -> list[DeliveryRecord]:
    """Reset the planned handlers, run each delivery in this process, return the records."""

    async def process(delivery_id: str) -> None:
        log.info("delivery=%s replaying", delivery_id)
        await dispatcher.process(delivery_id)

    await carry_out(dispatcher.store, plan, process)
    return [
        record
        for delivery_id, _ in plan.items
        if (record := await dispatcher.store.get(delivery_id)) is not None
    ]
