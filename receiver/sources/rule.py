"""Automation rules: the body a LangSmith rule's webhook action POSTs.

Follows LangSmith's "Webhook notifications for rules" (see ``docs/senders.md``). Only what
the receiver relies on is required (the rule id and its time window; each run's id). Every
other documented field is optional because LangSmith sends many as ``null``, and unknown
fields are kept (``extra="allow"``) because LangSmith adds fields over time. A rule over
threads (2026) sends its items under another key: ``runs`` is then empty and the items are
in ``payload.model_extra``.

    envelope = RuleEnvelope.model_validate(parsed)     # the edge: cheap, before 202
    payload = RulePayload.model_validate_json(body)    # the worker: every field
    for run in payload.runs:
        print(run.id, run.name, run.status)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

NAME = "rule"
MATCH = ("rule_id",)


class FeedbackStat(BaseModel, extra="allow", defer_build=True):
    """Aggregated feedback for one key: ``{"n": 2, "avg": 0.5, "values": {...}}``."""

    n: int = 0
    avg: float | None = None
    show_feedback_arrow: bool | None = None
    values: dict[str, Any] = {}  # copied per instance: see RuleEnvelope.runs


class Run(BaseModel, extra="allow", defer_build=True):
    """One run that matched the rule. ``inputs``/``outputs`` may be null with the data behind
    presigned URLs in ``inputs_s3_urls``/``outputs_s3_urls``."""

    id: UUID
    name: str | None = None
    run_type: str | None = None
    status: str | None = None
    tags: list[str] | None = None
    feedback_stats: dict[str, Any] | None = None
    error: str | None = None
    trace_id: UUID | None = None
    session_id: UUID | None = None
    is_root: bool | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    inputs_s3_urls: dict[str, Any] | None = None
    outputs_s3_urls: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    app_path: str | None = None


class RuleEnvelope(BaseModel):
    """What the edge validates before answering: the rule and its window. The runs stay the
    parsed JSON (a list of whatever it holds): counting them and reading what routes filter
    on needs no model per run, which a body of 500,000 runs cannot afford before its 202
    (seconds, and hundreds of MB); the worker validates each as a :class:`Run`."""

    rule_id: UUID
    start_time: datetime
    end_time: datetime
    runs: list[Any] = []  # copied per instance (a default_factory costs 45 ms at import)


class RulePayload(RuleEnvelope):
    """The whole body: which rule fired, for which time window, on which runs."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    runs: list[Run] = []
    feedback_stats: dict[str, FeedbackStat] | None = None


Envelope = RuleEnvelope
Event = RulePayload


def claims(body: dict[str, Any]) -> bool:
    """A rule body is the one with a ``rule_id``."""
    return "rule_id" in body


def subject(envelope: RuleEnvelope) -> str:
    return str(envelope.rule_id)


def facts(envelope: RuleEnvelope) -> dict[str, Any]:
    return {"rule_id": str(envelope.rule_id)}


def runs(envelope: RuleEnvelope) -> list[Any]:
    return envelope.runs


RUN_FIELDS = {
    "run_status": "status",
    "run_type": "run_type",
    "run_name": "name",
    "tags": "tags",
    "feedback_key": "feedback_stats",  # a run with feedback under any of the keys
}
"""The field of a run each run match key reads."""


def narrow(payload: RulePayload, keep: Callable[[Run], bool]) -> RulePayload:
    """The payload with only the runs ``keep`` selects (a copy; the original is shared)."""
    kept = [run for run in payload.runs if keep(run)]
    return payload if len(kept) == len(payload.runs) else payload.model_copy(update={"runs": kept})
