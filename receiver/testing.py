"""A test kit for handlers: each sender's event and a handler's context, without a server.

The events are shaped like LangSmith's documented examples; pass fields to change them.
A handler test is then a few lines:

    from receiver import testing
    import my_handlers.page_on_errors as handler

    def test_pages_only_on_errors():
        payload = testing.rule_payload(testing.run(status="error"), testing.run())
        handler.handle(payload, testing.context(handler, env={"PAGER_URL": "https://..."}))

``context`` reads the handler's ``Options`` from ``env`` exactly as the server would, so a
bad option fails the test the way it would fail the start-up.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from receiver.dispatch import HandlerContext
from receiver.registry import load_handler
from receiver.settings import Settings
from receiver.sources import (
    AgentRunEvent,
    AlertEvent,
    ContextHubEvent,
    EngineEvent,
    PromptCommitEvent,
    RulePayload,
)

_NOW = datetime(2026, 5, 14, 12, 30, tzinfo=UTC)


def run(**fields: Any) -> dict[str, Any]:
    """One run of a rule delivery (a dict: give it to :func:`rule_payload`)."""
    run_id = str(uuid.uuid4())
    return {
        "id": run_id,
        "trace_id": run_id,
        "name": "ChatOpenAI",
        "run_type": "llm",
        "status": "success",
        "is_root": True,
        "start_time": _NOW.isoformat(),
        "end_time": (_NOW + timedelta(seconds=2)).isoformat(),
        "inputs": {"question": "What is LangSmith?"},
        "outputs": {"answer": "A platform for LLM applications."},
        "tags": [],
        "app_path": f"/o/org/projects/p/project/r/{run_id}?trace_id={run_id}",
        **fields,
    }


def rule_payload(*runs: Mapping[str, Any], **fields: Any) -> RulePayload:
    """A rule delivery with ``runs`` (one default :func:`run` when none is given)."""
    body = {
        "rule_id": str(uuid.uuid4()),
        "start_time": _NOW.isoformat(),
        "end_time": (_NOW + timedelta(minutes=5)).isoformat(),
        "runs": [dict(each) for each in runs] or [run()],
        "feedback_stats": {},
        **fields,
    }
    return RulePayload.model_validate(body)


def alert(**fields: Any) -> AlertEvent:
    """An alert over its threshold."""
    body = {
        "project_name": "prod-api",
        "alert_rule_id": str(uuid.uuid4()),
        "alert_rule_name": "errors > 5 in 5 min",
        "alert_rule_type": "threshold",
        "alert_rule_attribute": "error_count",
        "triggered_metric_value": 7,
        "triggered_threshold": 5,
        "timestamp": _NOW.isoformat(),
        **fields,
    }
    return AlertEvent.model_validate(body)


def prompt_commit(**fields: Any) -> PromptCommitEvent:
    """A commit of a prompt."""
    body = {
        "prompt_id": str(uuid.uuid4()),
        "prompt_name": "my-prompt",
        "commit_hash": uuid.uuid4().hex,
        "created_at": _NOW.isoformat(),
        "created_by": "Jane Doe",
        "manifest": {"lc": 1, "type": "constructor", "id": ["langchain", "prompts"]},
        **fields,
    }
    return PromptCommitEvent.model_validate(body)


def engine_event(type: str = "issue.created", **issue: Any) -> EngineEvent:
    """An Engine event about an issue (``issue`` changes the issue's fields)."""
    body = {
        "id": str(uuid.uuid4()),
        "type": type,
        "created": int(_NOW.timestamp()),
        "request_id": str(uuid.uuid4()),
        "data": {
            "object": {
                "id": str(uuid.uuid4()),
                "name": "Tool selection inconsistency",
                "description": "The agent calls the same tool twice with identical arguments.",
                "severity": 2,
                "session_name": "prod-api",
                **issue,
            }
        },
    }
    return EngineEvent.model_validate(body)


def context_hub_commit(**commit: Any) -> ContextHubEvent:
    """A Context Hub commit event (``commit`` changes the commit's fields)."""
    body = {
        "id": str(uuid.uuid4()),
        "type": "context_hub.commit.created.v1",
        "created": int(_NOW.timestamp()),
        "data": {
            "commit": {
                "repo_handle": "my-agent",
                "repo_type": "agent",
                "commit_hash": uuid.uuid4().hex,
                "files_changed": [{"path": "skills/search", "action": "modified"}],
                **commit,
            }
        },
    }
    return ContextHubEvent.model_validate(body)


def agent_run(**fields: Any) -> AgentRunEvent:
    """A finished Agent Server run."""
    body = {
        "run_id": str(uuid.uuid4()),
        "thread_id": str(uuid.uuid4()),
        "assistant_id": str(uuid.uuid4()),
        "status": "success",
        "created_at": _NOW.isoformat(),
        "metadata": {},
        "kwargs": {"input": {"messages": [{"role": "user", "content": "Hello!"}]}},
        **fields,
    }
    return AgentRunEvent.model_validate(body)


def context(
    handler: ModuleType | str,
    env: Mapping[str, str] | None = None,
    *,
    attempt: int = 1,
    delivery_id: str = "test-delivery",
) -> HandlerContext:
    """The context ``handler.handle`` gets from a server running with ``env`` (default:
    no variables at all, not this process's environment)."""
    name = handler if isinstance(handler, str) else handler.__name__
    env = dict(env or {})
    loaded = load_handler(name, env)
    logger = logging.LoggerAdapter(logging.getLogger(name), {"delivery_id": delivery_id})
    return HandlerContext(
        delivery_id, name, attempt, Settings.from_env(env), logger, loaded.options
    )
