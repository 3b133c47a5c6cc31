"""Alerts to Slack: a delivery that went dead, a dead one that succeeded on replay, a route
that has gone quiet.

:func:`check_alerts` runs from the local worker's sweep and, on Modal, from the scheduled
``sweep`` function (each minute). It compares what the store holds with what it alerted
about before (kept in the store: ``get_meta("alerts")``), so each event is posted once,
whichever container looks. An alert that Slack refuses is tried again at the next check.

- **dead**: names the route(s), each failed handler with its last error, and links to the
  delivery's console page (absolute from ``WEBHOOK_PUBLIC_URL``, else relative);
- **recovered**: a delivery alerted as dead is done now (a replay succeeded);
- **quiet**: a route with ``expect_every`` received nothing for that long: alerted once per
  silence (the common failure where a rule was disabled or its URL changed).

Deliveries already dead when alerts are first turned on are not posted (nor counted as
quiet before that moment). At most ``MAX_DEAD_PER_CHECK`` dead deliveries are posted one by
one per check; more are summed up in one message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from receiver.delivery import DeliveryRecord, DeliveryStatus, HandlerStatus
from receiver.routes import RouteTable
from receiver.settings import Settings
from receiver.slack import MAX_SECTION_CHARS, cut, escape, post_with_retries
from receiver.stores import DeliveryStore

log = logging.getLogger("receiver.alerts")

META_KEY = "alerts"
MAX_DEAD_PER_CHECK = 10
SLACK_ATTEMPTS = 3
Post = Callable[[dict[str, Any]], None]


def delivery_link(settings: Settings, delivery_id: str) -> str:
    """The delivery's console page: absolute from ``WEBHOOK_PUBLIC_URL`` when it is set."""
    return f"{settings.public_url or ''}/console/deliveries/{delivery_id}"


def _message(title: str, lines: list[str], link: str | None = None) -> dict[str, Any]:
    text = "\n".join(lines)
    if link is not None:
        text += f"\n<{link}|Open the delivery>" if link.startswith("http") else f"\n{link}"
    return {
        "text": title,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": cut(title, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, MAX_SECTION_CHARS)}},
        ],
    }


def dead_message(settings: Settings, record: DeliveryRecord) -> dict[str, Any]:
    failed = [(n, s) for n, s in record.handlers.items() if s.status is HandlerStatus.FAILED]
    lines = [
        f"*Route*: {escape(', '.join(record.routes) or '-')} · *source*: {escape(record.source)}"
        f" · `{escape(record.subject)}`",
        *(
            f"• `{escape(name)}` after {state.attempts} attempts:"
            f" {escape(cut(state.last_error or 'no error message', 300))}"
            for name, state in failed
        ),
    ]
    title = f"Delivery dead: {', '.join(name for name, _ in failed)}"
    return _message(title, lines, delivery_link(settings, record.id))


def recovered_message(settings: Settings, record: DeliveryRecord) -> dict[str, Any]:
    title = f"Delivery recovered: {', '.join(record.routes) or record.source}"
    lines = [f"Delivery `{record.id}` is done after a replay."]
    return _message(title, lines, delivery_link(settings, record.id))


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def quiet_message(route: str, since: float, window: float) -> dict[str, Any]:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
    title = f"No delivery from route {route} since {when}"
    lines = [
        f"Route `{escape(route)}` expects a delivery every {_duration(window)}"
        " (`expect_every`). Is its rule disabled, or its webhook URL changed?"
    ]
    return _message(title, lines)


async def check_alerts(
    settings: Settings,
    routes: RouteTable,
    store: DeliveryStore,
    *,
    now: float | None = None,
    post: Post | None = None,
) -> list[dict[str, Any]]:
    """Post what changed since the last check; return the messages posted."""
    if settings.slack_alerts_webhook_url is None:
        return []
    now = time.time() if now is None else now
    if post is None:
        url = settings.slack_alerts_webhook_url.get_secret_value()

        def post(message: dict[str, Any]) -> None:
            post_with_retries(url, message, attempts=SLACK_ATTEMPTS)

    state = await store.get_meta(META_KEY)
    dead_now = set(await store.dead())
    if state is None:  # alerts just turned on: what is already dead is not news
        await store.set_meta(META_KEY, {"since": now, "dead": sorted(dead_now), "quiet": {}})
        return []
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> bool:
        try:
            await asyncio.to_thread(post, message)
        except Exception as exc:
            log.error("alert not posted (tried again at the next check): %s", exc)
            return False
        sent.append(message)
        return True

    known = set(state["dead"])
    new = sorted(dead_now - known)
    for delivery_id in new[:MAX_DEAD_PER_CHECK]:
        record = await store.get(delivery_id)
        if record is not None and await send(dead_message(settings, record)):
            known.add(delivery_id)
    if len(new) > MAX_DEAD_PER_CHECK:
        more = new[MAX_DEAD_PER_CHECK:]
        title = f"{len(more)} more deliveries dead"
        link = f"{settings.public_url or ''}/console?status=dead"
        if await send(_message(title, ["Too many to post one by one."], link)):
            known.update(more)
    for delivery_id in sorted(known - dead_now):
        record = await store.get(delivery_id)
        if record is None:
            known.discard(delivery_id)  # removed (retention)
        elif record.status is DeliveryStatus.DONE and await send(
            recovered_message(settings, record)
        ):
            known.discard(delivery_id)
    quiet = state["quiet"]
    for route in routes.routes:
        if route.expect_every is None:
            continue
        latest = await store.recent(1, route=route.name)
        last = max(latest[0].received_at if latest else 0.0, state["since"])
        silent = now - last > route.expect_every and quiet.get(route.name) != last
        if silent and await send(quiet_message(route.name, last, route.expect_every)):
            quiet[route.name] = last
    await store.set_meta(META_KEY, {**state, "dead": sorted(known), "quiet": quiet})
    return sent
