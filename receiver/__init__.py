"""The receiver: plain Python that runs the same on Modal and on a laptop.

What a handler needs is importable from here:

    from receiver import HandlerContext, HandlerOptions, RulePayload, Run
    from receiver import EngineEvent  # and the other senders' events, for SOURCES = (...)

The layout (``docs/architecture.md``): ``edge`` (HTTP), ``sources/`` (one module per
LangSmith sender), ``dispatch`` and ``registry`` (running handlers), ``stores/`` (where
deliveries are kept), ``runtimes/`` (local, Modal), ``cli/`` (what the scripts share).
"""

from receiver.dispatch import HandlerContext
from receiver.settings import HandlerOptions
from receiver.sources import (
    AgentRunEvent,
    AlertEvent,
    ContextHubEvent,
    EngineEvent,
    PromptCommitEvent,
    RulePayload,
    Run,
    UnknownEvent,
)

__all__ = [
    "AgentRunEvent",
    "AlertEvent",
    "ContextHubEvent",
    "EngineEvent",
    "HandlerContext",
    "HandlerOptions",
    "PromptCommitEvent",
    "RulePayload",
    "Run",
    "UnknownEvent",
]
