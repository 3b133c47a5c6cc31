"""Typed models of the body a LangSmith automation rule POSTs to a webhook.

Only what the receiver relies on is required (the rule id, the time window and, for each
run, its id). Every other documented field is optional because LangSmith sends many of them
as ``null``, and unknown fields are kept (``extra="allow"``) because LangSmith adds fields
over time.

    payload = RulePayload.model_validate_json(body)
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
