"""The watcher under a second name, for routes that need two distinct handlers."""

from handlers_for_tests.watcher import SOURCES, Options, handle

__all__ = ["SOURCES", "Options", "handle"]
