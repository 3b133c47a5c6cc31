"""The automation-rule sender: the body a LangSmith rule POSTs to a webhook action.

Follows LangSmith's "Webhook notifications for rules" documentation (see
``docs/senders.md``).

Only what the receiver relies on is required (the rule id, the time window and, for each
run, its id). Every other documented field is optional because LangSmith sends many of them
as ``null``, and unknown fields are kept (``extra="allow"``) because LangSmith adds fields
over time.

    envelope = RuleEnvelope.model_validate_json(body)  # the edge: cheap, before 202
    payload = RulePayload.model_validate_json(body)    # the worker: every field
    for run in payload.runs:
        print(run.id, run.name, run.status)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    """A model that keeps fields it does not declare."""

    model_config = ConfigDict(extra="allow")


class FeedbackStat(_Open):
    """Aggregated feedback for one key: ``{"n": 2, "avg": 0.5, "values": {...}}``."""

    n: int = 0
    avg: float | None = None
    show_feedback_arrow: bool | None = None
    values: dict[str, Any] = Field(default_factory=dict)


class Run(_Open):
    """One run that matched the rule. ``inputs``/``outputs`` may be null with the data behind
    presigned URLs in ``inputs_s3_urls``/``outputs_s3_urls``."""

    id: UUID
    name: str | None = None
    run_type: str | None = None
    status: str | None = None
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
    feedback_stats: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    app_path: str | None = None


class RulePayload(_Open):
    """The whole body: which rule fired, for which time window, on which runs."""

    rule_id: UUID
    start_time: datetime
    end_time: datetime
    runs: list[Run]
    feedback_stats: dict[str, FeedbackStat] | None = None


class RunRef(BaseModel):
    """A run as the edge sees it: an object with a UUID ``id``; the rest waits for the worker."""

    id: UUID


class RuleEnvelope(BaseModel):
    """What the edge validates before answering: the rule, its window and the runs' ids.

    Everything the ``202`` and the delivery record need, at a third of the cost of
    :class:`RulePayload` on a 500-run body (unknown fields are skipped, not copied); the
    worker validates the whole body before any handler sees it.
    """

    rule_id: UUID
    start_time: datetime
    end_time: datetime
    runs: list[RunRef]
