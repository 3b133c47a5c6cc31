"""Takes every source; appends one JSON line per call to TEST_EVENTS_PATH: what it saw."""

import json
from pathlib import Path

from pydantic import BaseModel, Field

from receiver import HandlerContext, HandlerOptions, RulePayload

SOURCES = ("rule", "alert", "prompt_commit", "engine", "context_hub", "agent_run", "unknown")


class Options(HandlerOptions):
    events_path: Path = Field(validation_alias="TEST_EVENTS_PATH")


def handle(event: BaseModel, context: HandlerContext) -> None:
    seen = {
        "handler": context.handler,
        "delivery": context.delivery_id,
        "event": type(event).__name__,
        "runs": [run.status for run in event.runs] if isinstance(event, RulePayload) else None,
    }
    with open(context.options.events_path, "a") as out:
        out.write(json.dumps(seen) + "\n")
