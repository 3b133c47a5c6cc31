"""Building rule payloads for tests from the sample body LangSmith sent."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

SAMPLE_PATH = Path(__file__).resolve().parent.parent / "data" / "langsmith_rule_payload.json"


def sample_payload() -> dict:
    """The sample body as a dict (a fresh copy each call)."""
    return json.loads(SAMPLE_PATH.read_text())


def payload_with_runs(count: int, **run_fields: object) -> dict:
    """The sample body with ``count`` runs cloned from its run, each with a fresh id."""
    payload = sample_payload()
    template = payload["runs"][0]
    payload["runs"] = []
    for _ in range(count):
        run = copy.deepcopy(template)
        run["id"] = run["trace_id"] = str(uuid.uuid4())
        run.update(run_fields)
        payload["runs"].append(run)
    return payload


def unique_body(runs: int = 1) -> bytes:
    """A valid body no other call returns (so its delivery id is new)."""
    return json.dumps(payload_with_runs(runs)).encode()
