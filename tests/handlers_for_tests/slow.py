"""Takes SLOW_SECONDS (default 10) per delivery, then records it: a slow downstream API."""

import asyncio

from pydantic import Field

from handlers_for_tests import recording
from receiver import HandlerContext, RulePayload


class Options(recording.Options):
    seconds: float = Field(10.0, validation_alias="SLOW_SECONDS")


async def handle(payload: RulePayload, context: HandlerContext) -> None:
    await asyncio.sleep(context.options.seconds)
    recording.record(context, "ok")
