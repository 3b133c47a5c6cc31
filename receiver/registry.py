"""Loading the handler modules named in ``WEBHOOK_HANDLERS``, at start-up, with clear errors.

A handler is any importable module with a ``handle(payload, context)`` function or
coroutine function, optionally an ``Options`` class (a
:class:`~receiver.settings.HandlerOptions`) declaring its own variables, and optionally
``SOURCES``, the senders whose events it takes (``("rule",)`` when absent). Loading fails
loudly at start-up, never at the first delivery, when a module cannot be imported, has no
callable ``handle``, or one of its options holds a bad value.

    handlers = load_handlers(["handlers.log_runs", "acme.hooks"])
    handlers[0].name  # 'handlers.log_runs'
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from receiver.settings import HandlerOptions, SettingsError


class HandlerLoadError(RuntimeError):
    """A module named in ``WEBHOOK_HANDLERS`` is not a usable handler."""


@dataclass(frozen=True)
class Handler:
    """A loaded handler: its module path (its name everywhere), ``handle``, its options and
    the sources it takes."""

    name: str
    handle: Callable[[Any, Any], Awaitable[None] | None]
    options: HandlerOptions | None = None
    sources: tuple[str, ...] = ("rule",)

    @property
    def is_async(self) -> bool:
        """True when ``handle`` is a coroutine function (awaited, not run in a thread)."""
        return inspect.iscoroutinefunction(self.handle)


def import_handler_module(module_path: str) -> ModuleType:
    """Import a handler module, or raise :class:`HandlerLoadError` saying how to fix it."""
    try:
        return importlib.import_module(module_path)
    except Exception as exc:
        raise HandlerLoadError(
            f"handler module {module_path!r} (from WEBHOOK_HANDLERS) cannot be imported: "
            f"{type(exc).__name__}: {exc}. Check the module path and that it is on PYTHONPATH"
            " (and, on Modal, added to the image with add_local_python_source)."
        ) from exc


def options_class(module: ModuleType) -> type[HandlerOptions] | None:
    """The module's ``Options`` class, if it declares one."""
    options = getattr(module, "Options", None)
    if options is None:
        return None
    if not (isinstance(options, type) and issubclass(options, HandlerOptions)):
        raise HandlerLoadError(
            f"handler module {module.__name__!r}: `Options` must subclass"
            " receiver.settings.HandlerOptions"
        )
    return options


def load_handler(module_path: str, env: Mapping[str, str] | None = None) -> Handler:
    """Import ``module_path``, read its options (from ``env``, default the process's)."""
    module = import_handler_module(module_path)
    handle = getattr(module, "handle", None)
    if not callable(handle):
        raise HandlerLoadError(
            f"handler module {module_path!r} has no callable `handle(payload, context)`;"
            " see handlers/_template.py for the expected shape."
        )
    declared = options_class(module)
    try:
        options = declared.from_env(env) if declared else None
    except SettingsError as exc:
        raise HandlerLoadError(f"handler {module_path!r}: {exc}") from None
    sources = getattr(module, "SOURCES", ("rule",))
    if isinstance(sources, str) or not all(isinstance(name, str) for name in sources):
        raise HandlerLoadError(
            f"handler module {module_path!r}: SOURCES must be a tuple of source names,"
            ' such as ("rule", "engine")'
        )
    return Handler(module_path, handle, options, tuple(sources))


def load_handlers(
    module_paths: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[Handler, ...]:
    """Load every handler, in order; duplicate names are loaded once."""
    if not module_paths:
        raise HandlerLoadError("no handler module is configured")
    return tuple(load_handler(path, env) for path in dict.fromkeys(module_paths))
