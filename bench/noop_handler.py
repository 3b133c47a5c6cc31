"""A handler that does nothing: with it, the benchmark measures the receiver, not a handler."""

from receiver import HandlerContext, RulePayload


async def handle(payload: RulePayload, context: HandlerContext) -> None:
    """Accept the delivery and do nothing with it."""
