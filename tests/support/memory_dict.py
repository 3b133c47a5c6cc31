"""An in-memory stand-in for ``modal.Dict``'s blocking API (no Modal account offline).

It follows the documented semantics the receiver relies on: ``put(key, value,
skip_if_exists=True)`` stores only when the key is absent and returns whether it stored;
values are copied on the way in and out, as a serialising remote store would.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any


class MemoryDict:
    def __init__(self) -> None:
        self._data: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self.fail_puts = False

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
