"""An in-memory stand-in for ``modal.Dict`` (no Modal account offline): blocking and ``.aio``.

It follows the documented semantics the receiver relies on: ``put(key, value,
skip_if_exists=True)`` stores only when the key is absent and returns whether it stored;
values are copied on the way in and out, as a serialising remote store would.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any


class _Method:
    """A method callable as ``d.get(k)`` or ``await d.get.aio(k)``, like Modal's."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        """A coroutine, or for ``keys`` an async iterator (Modal's generators are not awaited)."""
        if self.function.__name__ == "keys":
            return _aiter(self.function())
        return _later(self.function, *args, **kwargs)


async def _aiter(items: Iterator[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def _later(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


class MemoryDict:
    def __init__(self) -> None:
        self._data: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self.fail_puts = False
        for name in ("put", "get", "pop", "keys"):
            setattr(self, name, _Method(getattr(self, name)))

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        with self._lock:
            if self.fail_puts:
                raise ConnectionError("modal.Dict unreachable")
            if skip_if_exists and key in self._data:
                return False
            self._data[key] = copy.deepcopy(value)
            return True

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return copy.deepcopy(self._data.get(key, default))

    def pop(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return self._data.pop(key, default)

    def keys(self) -> Iterator[Any]:
        with self._lock:
            return iter(list(self._data))
