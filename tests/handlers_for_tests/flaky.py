"""Fails on its first FLAKY_FAILURES attempts (default 2), then succeeds."""

from pydantic import Field

from handlers_for_tests import recording
from receiver import HandlerContext, RulePayload


class Options(recording.Options):
    failures: int = Field(2, validation_alias="FLAKY_FAILURES")


def handle(payload: RulePayload, context: HandlerContext) -> None:
    if context.attempt <= context.options.failures:
        recording.record(context, "failed")
        raise ConnectionError(f"flaky failure on attempt {context.attempt}")
    recording.record(context, "ok")
