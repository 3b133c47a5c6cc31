"""Prompt commits: what LangSmith POSTs when any prompt of the workspace gets a commit.

LangSmith's "Prompt commit webhooks" page; the manifest is the prompt as committed.

    commit = PromptCommitEvent.model_validate_json(body)
    commit.prompt_name, commit.commit_hash  # 'My Prompt', 'commit_hash_1234567890'
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

NAME = "prompt_commit"
MATCH = ("prompt_name",)


class PromptCommitEvent(BaseModel, extra="allow", defer_build=True):
    """One commit of one prompt."""

    prompt_id: str
    commit_hash: str
    prompt_name: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    manifest: dict[str, Any] | None = None


class PromptCommitEnvelope(BaseModel):
    """The commit without its manifest (which can be large): what the edge needs."""

    prompt_id: str
    commit_hash: str
    prompt_name: str | None = None


Envelope = PromptCommitEnvelope
Event = PromptCommitEvent


def claims(body: dict[str, Any]) -> bool:
    return "prompt_id" in body and "commit_hash" in body


def subject(commit: PromptCommitEnvelope) -> str:
    return f"{commit.prompt_name or commit.prompt_id}@{commit.commit_hash[:12]}"


def facts(commit: PromptCommitEnvelope) -> dict[str, Any]:
    return {"prompt_name": commit.prompt_name}
