"""Engine: issue events from LangSmith's issue detection, in LangSmith's signed envelope.

LangSmith's "Engine webhooks" page: ``{id, type, created, request_id, data: {object,
trace?}}``, signed with ``X-LangSmith-Signature``, retried with the same ``id`` (the
delivery id here). Types not listed in :data:`TYPES` are kept as source ``unknown``.

    event = EngineEvent.model_validate_json(body)
    event.type, event.data.object.severity  # 'issue.created', 1
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

NAME = "engine"
MATCH = ("event_type", "max_severity")
TYPES = ("issue.created", "issue.trace.added", "issue.agent_run.failed")


class EngineObject(BaseModel, extra="allow"):
    """The issue (or run) the event is about; every field optional, as types differ."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    severity: int | None = None  # 1 is the most severe
    session_id: str | None = None
    session_name: str | None = None
    url: str | None = None


class EngineData(BaseModel, extra="allow"):
    object: EngineObject
    trace: dict[str, Any] | None = None


class EngineEvent(BaseModel, extra="allow"):
    """One Engine event; ``request_id`` groups the events of one upstream action."""

    id: str
    type: Literal["issue.created", "issue.trace.added", "issue.agent_run.failed"]
    created: int | None = None
    request_id: str | None = None
    data: EngineData


Envelope = Event = EngineEvent


def claims(body: dict[str, Any]) -> bool:
    return body.get("type") in TYPES


def subject(event: EngineEvent) -> str:
    return f"{event.type} {event.data.object.name or event.data.object.id or ''}".strip()


def facts(event: EngineEvent) -> dict[str, Any]:
    return {"event_type": event.type, "max_severity": event.data.object.severity}


def delivery_key(event: EngineEvent) -> str:
    return event.id
