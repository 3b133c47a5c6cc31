"""A handler's context built from a plain mapping of variables, as the server would build it."""

import logging
from types import ModuleType

from receiver import HandlerContext
from receiver.registry import load_handler
from receiver.settings import Settings


def context_for(module: ModuleType, env: dict[str, str], attempt: int = 1) -> HandlerContext:
    """The context ``module.handle`` gets when the server runs with ``env``."""
    handler = load_handler(module.__name__, env)
    logger = logging.LoggerAdapter(logging.getLogger(module.__name__), {})
    return HandlerContext(
        "delivery-1", module.__name__, attempt, Settings.from_env(env), logger, handler.options
    )
