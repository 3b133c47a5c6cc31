"""Automation rules: the body a LangSmith rule's webhook action POSTs.

Follows LangSmith's "Webhook notifications for rules" (see ``docs/senders.md``). Only what
the receiver relies on is required (the rule id and its time window; each run's id). Every
other documented field is optional because LangSmith sends many as ``null``, and unknown
fields are kept (``extra="allow"``) because LangSmith adds fields over time. A rule over
threads (2026) sends its items under another key: ``runs`` is then empty and the items are
in ``payload.model_extra``.

    envelope = RuleEnvelope.model_validate_json(body)  # the edge: cheap, before 202
    payload = RulePayload.model_validate_json(body)    # the worker: every field
    for run in payload.runs:
        print(run.id, run.name, run.status)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

NAME = "rule"
MATCH = ("rule_id",)


class FeedbackStat(BaseModel, extra="allow"):
    """Aggregated feedback for one key: ``{"n": 2, "avg": 0.5, "values": {...}}``."""

    n: int = 0
    avg: float | None = None
    show_feedback_arrow: bool | None = None
    values: dict[str, Any] = {}  # copied per instance: see RuleEnvelope.runs


class RunRef(BaseModel):
    """A run as the edge sees it: what routes filter on; the rest waits for the worker."""

    id: UUID
    name: str | None = None
    run_type: str | None = None
    status: str | None = None
    tags: list[str] | None = None
    feedback_stats: dict[str, Any] | None = None


class Run(RunRef, extra="allow"):
    """One run that matched the rule. ``inputs``/``outputs`` may be null with the data behind
    presigned URLs in ``inputs_s3_urls``/``outputs_s3_urls``."""

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
    """What the edge validates before answering: the rule, its window and what routes need
    of each run, at a fraction of :class:`RulePayload`'s cost on a 500-run body (unknown
    fields are skipped, not copied)."""

    rule_id: UUID
    start_time: datetime
    end_time: datetime
    runs: list[RunRef] = []  # copied per instance (a default_factory costs 45 ms at import)


class RulePayload(RuleEnvelope):
    """The whole body: which rule fired, for which time window, on which runs."""

    model_config = ConfigDict(extra="allow")

    runs: list[Run] = []  # type: ignore[assignment]
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


def runs(envelope: RuleEnvelope) -> list[RunRef]:
    return envelope.runs


RUN_FACTS: dict[str, Callable[[RunRef], Any]] = {
    "run_status": attrgetter("status"),
    "run_type": attrgetter("run_type"),
    "run_name": attrgetter("name"),
    "tags": lambda run: run.tags or (),
    "feedback_key": lambda run: tuple(run.feedback_stats or ()),
}
"""What the run filters of a route look at, by match key: read only for the keys some
route sets (500 runs by 5 facts each is a fifth of the edge's time otherwise)."""


def narrow(payload: RulePayload, keep: Callable[[RunRef], bool]) -> RulePayload:
    """The payload with only the runs ``keep`` selects (a copy; the original is shared)."""
    kept = [run for run in payload.runs if keep(run)]
    return payload if len(kept) == len(payload.runs) else payload.model_copy(update={"runs": kept})
