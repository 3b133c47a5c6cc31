"""A handler that does nothing: with it, the benchmark measures the receiver, not a handler."""

from pydantic import BaseModel

from receiver import HandlerContext

SOURCES = ("rule", "engine")  # what bench/routes.toml sends it


async def handle(event: BaseModel, context: HandlerContext) -> None:
    """Accept the delivery and do nothing with it."""
