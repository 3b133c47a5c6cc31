"""Anything else: an authentic JSON object no sender module recognises, kept as it came.

LangSmith adds senders and event types (its docs say so); refusing one with a 4xx would
lose it for good, since LangSmith never retries a 4xx. So it is recorded, listed and
replayable; a route with ``sources = ["unknown"]`` can hand it to a handler. An object in
LangSmith's event envelope (a new Engine or Context Hub type) keeps its ``id`` as delivery
id and must be signed like the others.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

NAME = "unknown"
MATCH = ("event_type",)


class UnknownEvent(BaseModel, extra="allow"):
    """The object as sent; ``id`` and ``type`` are read when it is a LangSmith envelope."""

    id: Any = None
    type: Any = None
    created: Any = None
    data: Any = None


Envelope = Event = UnknownEvent


def claims(body: dict[str, Any]) -> bool:
    return True


def _is_envelope(event: UnknownEvent) -> bool:
    fields = (event.id, event.type)
    return all(isinstance(field, str) for field in fields) and isinstance(event.data, dict)


def subject(event: UnknownEvent) -> str:
    return event.type if _is_envelope(event) else ""


def facts(event: UnknownEvent) -> dict[str, Any]:
    return {"event_type": event.type if _is_envelope(event) else None}


def delivery_key(event: UnknownEvent) -> str | None:
    return event.id if _is_envelope(event) else None
