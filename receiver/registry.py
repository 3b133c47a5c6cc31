"""Loading handler modules named in ``WEBHOOK_HANDLERS``, at start-up, with clear errors.

A handler is any importable module with a ``handle(payload, context)`` function or
coroutine function. Loading fails loudly at start-up (never at the first delivery) when a
module cannot be imported or has no callable ``handle``.

    handlers = load_handlers(["handlers.log_runs", "acme.hooks"])
    handlers[0].name  # 'handlers.log_runs'
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any


class HandlerLoadError(RuntimeError):
    """A module named in ``WEBHOOK_HANDLERS`` is not a usable handler."""


@dataclass(frozen=True)
class Handler:
    """A loaded handler: its module path (its name everywhere) and its ``handle`` callable."""

    name: str
    handle: Callable[[Any, Any], Awaitable[None] | None]

    @property
    def is_async(self) -> bool:
        """True when ``handle`` is a coroutine function (awaited, not run in a thread)."""
        return inspect.iscoroutinefunction(self.handle)


def load_handler(module_path: str) -> Handler:
    """Import ``module_path`` and return its ``handle`` as a :class:`Handler`."""
    try:
        module = importlib.import_module(module_path)
    except Exception as exc:
        raise HandlerLoadError(
            f"handler module {module_path!r} (from WEBHOOK_HANDLERS) cannot be imported: "
            f"{type(exc).__name__}: {exc}. Check the module path and that it is on PYTHONPATH"
            " (and, on Modal, added to the image with add_local_python_source)."
        ) from exc
    handle = getattr(module, "handle", None)
    if not callable(handle):
        raise HandlerLoadError(
            f"handler module {module_path!r} has no callable `handle(payload, context)`;"
            " see handlers/_template.py for the expected shape."
        )
    return Handler(module_path, handle)


def load_handlers(module_paths: Sequence[str]) -> tuple[Handler, ...]:
    """Load every handler, in order; duplicate names are loaded once."""
    if not module_paths:
        raise HandlerLoadError("WEBHOOK_HANDLERS names no handler module")
    return tuple(load_handler(path) for path in dict.fromkeys(module_paths))
