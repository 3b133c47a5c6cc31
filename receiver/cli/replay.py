"""Replaying dead deliveries: make their failed handlers pending again and run them.

Used by ``scripts/replay.py``; it runs the handlers in the calling process, with the same
:class:`~receiver.dispatch.Dispatcher` (and retries) as the worker.

    records = asyncio.run(replay(dispatcher, ["3f1c..."]))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from receiver.delivery import DeliveryRecord
from receiver.dispatch import Dispatcher

log = logging.getLogger("receiver.replay")


class ReplayError(LookupError):
    """A delivery asked for is unknown to the store."""


async def replay(dispatcher: Dispatcher, delivery_ids: Sequence[str]) -> list[DeliveryRecord]:
    """Reset the failed handlers of each delivery, run them, and return the new records."""
    store = dispatcher.store
    records = []
    for delivery_id in delivery_ids:
        if await store.get(delivery_id) is None:
            raise ReplayError(f"no delivery {delivery_id} in the store")
        reset = await store.reset(delivery_id)
        log.info(
            "delivery=%s replaying %s",
            delivery_id,
            ", ".join(reset) or "nothing (no failed handler)",
        )
        records.append(await dispatcher.process(delivery_id))
    return records
