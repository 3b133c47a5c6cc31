"""Fails until the file named by FIX_MARKER exists (a bug fixed by an operator)."""

from pathlib import Path

from pydantic import Field

from handlers_for_tests import recording
from receiver import HandlerContext, RulePayload


class Options(recording.Options):
    fix_marker: Path = Field(Path("/nonexistent"), validation_alias="FIX_MARKER")


def handle(payload: RulePayload, context: HandlerContext) -> None:
    if not context.options.fix_marker.exists():
        recording.record(context, "failed")
        raise RuntimeError("downstream rejected the payload")
    recording.record(context, "ok")
