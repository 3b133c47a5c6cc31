"""Agent Server (LangGraph) run completions: the Run object, POSTed to a run's ``webhook``.

LangSmith's "Use webhooks" page (Agent Server): the run as the API returns it. The docs
print no webhook example, so only the ids are required. Agent Server authenticates with
``?token=`` in the URL or static headers from ``langgraph.json``.

    run = AgentRunEvent.model_validate_json(body)
    run.status, run.thread_id  # 'success', '9dde5490-...'
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

NAME = "agent_run"
MATCH = ("run_status", "assistant_id")


class AgentRunEvent(BaseModel, extra="allow", defer_build=True):
    """A finished Agent Server run: ``status`` is ``success``, ``error``, ``timeout``, ..."""

    run_id: str
    assistant_id: str
    thread_id: str | None = None
    status: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    metadata: dict[str, Any] | None = None
    kwargs: dict[str, Any] | None = None


class AgentRunEnvelope(BaseModel):
    """The run's ids and status, without its inputs: what the edge needs."""

    run_id: str
    assistant_id: str
    status: str | None = None


Envelope = AgentRunEnvelope
Event = AgentRunEvent


def claims(body: dict[str, Any]) -> bool:
    return "run_id" in body and "assistant_id" in body


def subject(run: AgentRunEnvelope) -> str:
    return f"{run.run_id} {run.status or ''}".strip()


def facts(run: AgentRunEnvelope) -> dict[str, Any]:
    return {"run_status": run.status, "assistant_id": run.assistant_id}
