"""Takes SLOW_SECONDS (default 10) per delivery, then records it: a slow downstream API."""

import asyncio

from handlers_for_tests.recording import record
from receiver.dispatch import HandlerContext
from receiver.payload import RulePayload


async def handle(payload: RulePayload, context: HandlerContext) -> None:
    await asyncio.sleep(float(context.settings.get("SLOW_SECONDS", "10")))
    record(context, "ok")
