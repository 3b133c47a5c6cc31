"""Choosing deliveries the way an operator asks: by status, sender, route, rule, run and time.

The console, its JSON API and ``scripts/replay.py`` share it. It works over any store: the
newest deliveries (``recent``, at most ``SCAN_LIMIT``) are read and filtered here, and a run
id is looked for in the bodies of those that pass the other filters (at most
``RUN_SEARCH_LIMIT`` bodies). What was left unread is said (``Found.truncated``).

    selection = Selection.parse(status="dead", route="prod", since="2h")
    found = await select(store, selection)
    found.records, found.counts, found.truncated
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from receiver.delivery import DeliveryRecord, DeliveryStatus
from receiver.settings import parse_duration
from receiver.stores import DeliveryStore

SCAN_LIMIT = 5_000  # the newest deliveries a selection looks at
RUN_SEARCH_LIMIT = 2_000  # bodies read to find a run id
BODY_READS = 16  # at once


def parse_moment(value: str, now: float | None = None) -> float:
    """An ISO-8601 time (``2026-11-29T10:00``, UTC unless it says) or a duration ago (``2h``),
    as epoch seconds."""
    now = time.time() if now is None else now
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO-8601 time (2026-11-29T10:00Z) nor a duration (2h)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class Selection:
    """Which deliveries: every field set must hold (``None``: any)."""

    status: DeliveryStatus | None = None
    source: str | None = None
    route: str | None = None
    rule: str | None = None  # the delivery's subject: a rule delivery's rule id
    run: str | None = None  # a run id the body mentions
    since: float | None = None
    until: float | None = None

    @classmethod
    def parse(cls, now: float | None = None, **raw: str | None) -> Selection:
        """From text (a query string, a command line); empty means unset. ``ValueError``
        names the field that is wrong."""
        given = {name: value.strip() for name, value in raw.items() if value and value.strip()}
        unknown = set(given) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown filter {sorted(unknown)[0]!r}")
        try:
            status = DeliveryStatus(given["status"]) if "status" in given else None
        except ValueError:
            choices = ", ".join(s.value for s in DeliveryStatus)
            raise ValueError(f"status must be one of {choices}") from None
        moments = {}
        for name in ("since", "until"):
            if name in given:
                try:
                    moments[name] = parse_moment(given[name], now)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        texts = {k: given[k][:200] for k in ("source", "route", "rule", "run") if k in given}
        return cls(status=status, **texts, **moments)

    def as_query(self) -> dict[str, str]:
        """The selection as query parameters (times as ISO-8601), for links and forms."""
        query = {
            name: str(value)
            for name in ("source", "route", "rule", "run")
            if (value := getattr(self, name)) is not None
        }
        if self.status is not None:
            query["status"] = self.status.value
        for name in ("since", "until"):
            if (moment := getattr(self, name)) is not None:
                query[name] = datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
        return query

    def admits(self, record: DeliveryRecord) -> bool:
        """Whether ``record`` passes every filter but the run id (which needs the body)."""
        return (
            (self.status is None or record.status is self.status)
            and (self.source is None or record.source == self.source)
            and (self.route is None or self.route in record.routes)
            and (self.rule is None or record.subject.lower() == self.rule.lower())
            and (self.since is None or record.received_at >= self.since)
            and (self.until is None or record.received_at < self.until)
        )


FILTERS = tuple(Selection.__dataclass_fields__)  # status, source, route, rule, run, ...


@dataclass
class Found:
    """The deliveries a selection found, newest first, and what it did not look at."""

    records: list[DeliveryRecord]
    scanned: int  # deliveries read
    truncated: bool  # older deliveries (or bodies) were left unread
    counts: Counter[str] = field(default_factory=Counter)  # by status, ignoring `status`


async def select(store: DeliveryStore, selection: Selection, *, limit: int = SCAN_LIMIT) -> Found:
    """The deliveries ``selection`` picks among the newest ``limit``, with per-status counts
    of those matching everything but the status (what the status filter chooses from)."""
    [found] = await select_each(store, [selection], limit=limit)
    return found


async def select_each(
    store: DeliveryStore, selections: list[Selection], *, limit: int = SCAN_LIMIT
) -> list[Found]:
    """:func:`select` for several selections of one source and route (a page's list and its
    chart), reading the newest deliveries once."""
    source, route = selections[0].source, selections[0].route
    assert all((s.source, s.route) == (source, route) for s in selections)
    recent = await store.recent(limit, source=source, route=route)
    found = []
    for selection in selections:
        truncated = len(recent) >= limit
        any_status = replace(selection, status=None)
        candidates = [record for record in recent if any_status.admits(record)]
        if selection.run is not None:
            if len(candidates) > RUN_SEARCH_LIMIT:
                candidates, truncated = candidates[:RUN_SEARCH_LIMIT], True
            candidates = await _mentioning(store, candidates, selection.run)
        counts = Counter(record.status.value for record in candidates)
        chosen = [r for r in candidates if selection.status in (None, r.status)]
        found.append(Found(chosen, len(recent), truncated, counts))
    return found


async def _mentioning(
    store: DeliveryStore, records: list[DeliveryRecord], run_id: str
) -> list[DeliveryRecord]:
    """The records whose body holds ``run_id`` (as JSON writes it: lower-case UUIDs)."""
    needle = run_id.strip().lower().encode()
    gate = asyncio.Semaphore(BODY_READS)

    async def holds(record: DeliveryRecord) -> bool:
        async with gate:
            return needle in await store.body(record.id)

    found = await asyncio.gather(*(holds(record) for record in records))
    return [record for record, hit in zip(records, found, strict=True) if hit]


def hourly(
    records: list[DeliveryRecord], hours: int, now: float | None = None
) -> list[tuple[float, Counter[str]]]:
    """Deliveries per hour by status over the last ``hours`` hours, oldest hour first."""
    now = time.time() if now is None else now
    last = int(now // 3600)
    buckets = {hour: Counter() for hour in range(last - hours + 1, last + 1)}
    for record in records:
        hour = int(record.received_at // 3600)
        if hour in buckets:
            buckets[hour][record.status.value] += 1
    return [(hour * 3600.0, counts) for hour, counts in buckets.items()]
