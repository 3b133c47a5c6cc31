"""The Modal sweeper: every acknowledged delivery reaches ``done`` or ``dead``.

On Modal nothing else looks back: a web container can die between recording a delivery and
spawning ``process``, a spawn can fail, a ``process`` call can die after its retries. The
web function puts every delivery into the index before recording it, so the sweeper, run by
a schedule, finds each one there once the grace period is over, and:

- adds it to the listing (once), so that listings read a page, not every delivery;
- leaves it if done; keeps it as a dead letter if dead (and drops it from the dead letters
  once a replay succeeds);
- if pending, checks the ``process`` call in charge (``FunctionCall.from_id``) and spawns a
  new one if there is none or it has ended; then looks again a few minutes later.

Once a day it reads the dead letters' keys (Modal drops a Dict entry 7 days after its last
use) and removes those older than the retention.

Buckets are cleared only after everything in them was handled, and the cursor moves after
the clear: a sweeper that dies midway does them again (each step is idempotent).

    report = await sweep(store, spawn=process.spawn.aio, call_alive=alive, retention_days=30)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from receiver.delivery import DeliveryStatus
from receiver.stores.modal_dict import (
    RECHECK_SECONDS,
    ModalDictStore,
    bucket_of,
    gather_bounded,
)

log = logging.getLogger("receiver.sweeper")

GRACE_SECONDS = 30.0  # younger deliveries are still being recorded and spawned by the web path
FIRST_LOOK_BACK_SECONDS = 3600.0  # the first run starts an hour back (the app's first hour)
MAX_BUCKETS_PER_RUN = 360  # an hour: a sweeper that was down catches up over several runs
TOUCH_EVERY_SECONDS = 24 * 3600.0

Spawn = Callable[[str], Awaitable[Any]]
CallAlive = Callable[[str], Awaitable[bool]]


@dataclass
class SweepReport:
    """What one run did, for its log line and for tests."""

    buckets: int = 0
    seen: int = 0
    listed: int = 0
    resumed: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    revived: list[str] = field(default_factory=list)  # dead letters that a replay finished
    purged: int = 0


async def sweep(
    store: ModalDictStore,
    *,
    spawn: Spawn,
    call_alive: CallAlive,
    retention_days: float,
    now: float | None = None,
) -> SweepReport:
    """Drain the index buckets past the grace period; return what was done."""
    now = time.time() if now is None else now
    report = SweepReport()
    due = bucket_of(now - GRACE_SECONDS)
    cursor = await store.cursor()
    start = bucket_of(now - FIRST_LOOK_BACK_SECONDS) if cursor is None else cursor
    buckets = range(start, min(due, start + MAX_BUCKETS_PER_RUN))
    summaries: dict[str, dict] = {}
    for found in await gather_bounded(store.bucket(bucket) for bucket in buckets):
        summaries.update((summary["id"], summary) for summary in found)
    letters = await store.dead_letters()
    before = dict(letters)
    visits = (
        _visit(store, summary, spawn, call_alive, letters, report, now)
        for summary in summaries.values()
    )
    fresh = [summary for summary in await gather_bounded(visits) if summary is not None]
    # The listing, then the marks that say so: a sweeper dying in between lists a delivery
    # twice (listings show an id once), never not at all.
    await store.add_to_listing(fresh)
    await gather_bounded(store.mark_listed(summary["id"]) for summary in fresh)
    report.listed = len(fresh)
    if letters != before:
        await store.set_dead_letters(letters)
    await gather_bounded(store.clear_bucket(bucket) for bucket in buckets)
    if buckets:
        await store.set_cursor(buckets[-1] + 1)
    report.buckets, report.seen = len(buckets), len(summaries)
    if now - await store.touched() >= TOUCH_EVERY_SECONDS:
        report.purged = await _keep_dead_letters(store, letters, retention_days, now)
        await store.set_touched(now)
    if report.resumed or report.dead or report.purged:
        log.warning(
            "sweep: %d deliveries in %d buckets; resumed %s; dead %s; purged %d",
            report.seen,
            report.buckets,
            report.resumed,
            report.dead,
            report.purged,
        )
    return report


async def _visit(
    store: ModalDictStore,
    summary: dict,
    spawn: Spawn,
    call_alive: CallAlive,
    letters: dict[str, dict],
    report: SweepReport,
    now: float,
) -> dict | None:
    """Handle one indexed delivery; return its summary if it is new to the listing."""
    delivery_id = summary["id"]
    if not await store.seen(delivery_id):
        return None  # indexed, then never recorded: the sender was answered 503 and retries
    record = await store.with_states(summary)
    fresh = None if await store.is_listed(delivery_id) else summary
    status = record.status
    if status is DeliveryStatus.DEAD and delivery_id not in letters:
        letters[delivery_id] = {**summary, "died_at": now}
        report.dead.append(delivery_id)
    elif status is DeliveryStatus.DONE and letters.pop(delivery_id, None):
        report.revived.append(delivery_id)
    elif status is DeliveryStatus.PENDING:
        call_id = await store.call_of(delivery_id)
        if call_id is None or not await call_alive(call_id):
            call = await spawn(delivery_id)
            await store.record_call(delivery_id, call.object_id)
            report.resumed.append(delivery_id)
        await store.index(summary, now + RECHECK_SECONDS)
    return fresh


async def _keep_dead_letters(
    store: ModalDictStore, letters: dict[str, dict], retention_days: float, now: float
) -> int:
    """Refresh the dead letters within the retention; remove the older ones. Returns how
    many were removed."""
    expired = [s for s in letters.values() if now - s["died_at"] > retention_days * 86400]
    for summary in expired:
        await store.purge(summary)
        del letters[summary["id"]]
    for summary in letters.values():
        await store.touch(summary)
    if expired:
        await store.set_dead_letters(letters)
    return len(expired)
