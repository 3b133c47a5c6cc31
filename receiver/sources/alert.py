"""Alerts: what a project's alert rule POSTs when a threshold is crossed.

LangSmith's "Alerts webhook" page: the user's own *Request Body Template* merged with the
alert's fields. Only ``alert_rule_id`` is required; the user's own fields are kept.

    alert = AlertEvent.model_validate_json(body)
    alert.alert_rule_attribute, alert.triggered_metric_value  # 'error_count', 7
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

NAME = "alert"
MATCH = ("alert_rule_id", "project_name")


class AlertEvent(BaseModel, extra="allow"):
    """An alert: which rule fired, on which project, with which value against which threshold."""

    alert_rule_id: str
    alert_rule_name: str | None = None
    alert_rule_type: str | None = None  # "threshold"
    alert_rule_attribute: str | None = None  # "error_count", "feedback_score", "latency"
    project_name: str | None = None
    triggered_metric_value: float | None = None
    triggered_threshold: float | None = None
    timestamp: str | None = None


Envelope = Event = AlertEvent


def claims(body: dict[str, Any]) -> bool:
    return "alert_rule_id" in body


def subject(alert: AlertEvent) -> str:
    return alert.alert_rule_name or alert.alert_rule_id


def facts(alert: AlertEvent) -> dict[str, Any]:
    return {"alert_rule_id": alert.alert_rule_id, "project_name": alert.project_name}
