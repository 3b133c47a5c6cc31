"""Appends one line per call to the file named by TEST_RECORD_PATH."""

from pathlib import Path

from pydantic import Field

from receiver import HandlerContext, HandlerOptions, RulePayload


class Options(HandlerOptions):
    record_path: Path = Field(validation_alias="TEST_RECORD_PATH")


def record(context: HandlerContext, outcome: str) -> None:
    """Append ``handler delivery attempt outcome`` to the record file (one write, atomic)."""
    line = f"{context.handler} {context.delivery_id} {context.attempt} {outcome}\n"
    with open(context.options.record_path, "a") as out:
        out.write(line)


def handle(payload: RulePayload, context: HandlerContext) -> None:
    record(context, "ok")
