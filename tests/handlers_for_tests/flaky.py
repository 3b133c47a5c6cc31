"""Fails on its first FLAKY_FAILURES attempts (default 2), then succeeds."""

from handlers_for_tests.recording import record
from receiver.dispatch import HandlerContext
from receiver.payload import RulePayload


def handle(payload: RulePayload, context: HandlerContext) -> None:
    if context.attempt <= int(context.settings.get("FLAKY_FAILURES", "2")):
        record(context, "failed")
        raise ConnectionError(f"flaky failure on attempt {context.attempt}")
    record(context, "ok")
