"""Fails until the file named by the FIX_MARKER setting exists (a bug fixed by an operator)."""

import os

from handlers_for_tests.recording import record
from receiver.dispatch import HandlerContext
from receiver.payload import RulePayload


def handle(payload: RulePayload, context: HandlerContext) -> None:
    if not os.path.exists(context.settings.get("FIX_MARKER", "/nonexistent")):
        record(context, "failed")
        raise RuntimeError("downstream rejected the payload")
    record(context, "ok")
