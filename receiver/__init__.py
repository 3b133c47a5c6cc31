"""The receiver: plain Python that runs the same on Modal and on a laptop.

What a handler needs is importable from here:

    from receiver import HandlerContext, HandlerOptions, RulePayload, Run

The layout (``docs/architecture.md``): ``edge`` (HTTP), ``sources/`` (one module per
LangSmith sender), ``dispatch`` and ``registry`` (running handlers), ``stores/`` (where
deliveries are kept), ``runtimes/`` (local, Modal), ``cli/`` (what the scripts share).
"""

from receiver.dispatch import HandlerContext
from receiver.settings import HandlerOptions
from receiver.sources import RulePayload, Run

__all__ = ["HandlerContext", "HandlerOptions", "RulePayload", "Run"]
