"""Context Hub: a commit to a repo (an agent, a skill set), in LangSmith's signed envelope.

LangSmith's "Context Hub webhooks" page: ``{id, type: "context_hub.commit.created.v1",
created, data: {commit: {...}}}``, signed with ``X-LangSmith-Signature`` and retried with
the same ``id`` (the delivery id here). Other types are kept as source ``unknown``.

    event = ContextHubEvent.model_validate_json(body)
    [change.path for change in event.data.commit.files_changed]
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

NAME = "context_hub"
MATCH = ("event_type", "repo_handle")
TYPES = ("context_hub.commit.created.v1",)


class FileChange(BaseModel, extra="allow"):
    path: str
    action: str  # "added", "modified", "removed"


class Commit(BaseModel, extra="allow"):
    repo_id: str | None = None
    repo_handle: str | None = None
    repo_type: str | None = None
    commit_hash: str
    parent_commit_hash: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    url: str | None = None
    files_changed: list[FileChange] = []


class CommitData(BaseModel, extra="allow"):
    commit: Commit


class ContextHubEvent(BaseModel, extra="allow"):
    id: str
    type: Literal["context_hub.commit.created.v1"]
    created: int | None = None
    data: CommitData


Envelope = Event = ContextHubEvent


def claims(body: dict[str, Any]) -> bool:
    return body.get("type") in TYPES


def subject(event: ContextHubEvent) -> str:
    commit = event.data.commit
    return f"{commit.repo_handle or commit.repo_id}@{commit.commit_hash[:12]}"


def facts(event: ContextHubEvent) -> dict[str, Any]:
    return {"event_type": event.type, "repo_handle": event.data.commit.repo_handle}


def delivery_key(event: ContextHubEvent) -> str:
    return event.id
