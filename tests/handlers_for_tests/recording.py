"""Appends one line per call to the file named by the TEST_RECORD_PATH setting."""

from receiver.dispatch import HandlerContext
from receiver.payload import RulePayload


def record(context: HandlerContext, outcome: str) -> None:
    """Append ``handler delivery attempt outcome`` to the record file (one write, atomic)."""
    line = f"{context.handler} {context.delivery_id} {context.attempt} {outcome}\n"
    with open(context.settings.get("TEST_RECORD_PATH"), "a") as out:
        out.write(line)


def handle(payload: RulePayload, context: HandlerContext) -> None:
    record(context, "ok")
