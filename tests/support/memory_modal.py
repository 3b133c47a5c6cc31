"""In-memory stand-ins for ``modal.Dict``, ``modal.Queue`` and spawned calls (no Modal account
offline), with the faults a real control plane has: latency, failures before or after a
call takes effect, and calls that never answer.

They follow the documented semantics the receiver relies on: ``Dict.put(key, value,
skip_if_exists=True)`` stores only when the key is absent and returns whether it stored;
``Queue.iterate`` reads a partition without removing anything and ``clear`` empties it;
values are copied on the way in and out, as a serialising remote store would.

    faults = Faults(latency=0.02)
    faults.fail("put", when="after", key="delivery:")  # the write lands, the answer is lost
    entries, index = MemoryDict(faults), MemoryQueue(faults)
"""

from __future__ import annotations

import asyncio
import copy
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

PARTITION_ITEMS = 5_000  # Modal's cap per Queue partition


@dataclass
class Fault:
    method: str  # "put", "get", "contains", "queue.put", "spawn", ...
    when: str  # "before" (nothing happens), "after" (it happens, the caller gets an error), "hang"
    key: str = ""  # only calls whose first argument starts with this
    times: int = 1
    error: type[Exception] = ConnectionError


@dataclass
class Faults:
    """Shared by the fakes of one test: added latency, injected faults, and a call log."""

    latency: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def fail(
        self,
        method: str,
        *,
        when: str = "before",
        key: str = "",
        times: int = 1,
        error: type[Exception] = ConnectionError,
    ) -> None:
        self.faults.append(Fault(method, when, key, times, error))

    def _take(self, method: str, key: str) -> Fault | None:
        for fault in self.faults:
            if fault.times and fault.method == method and key.startswith(fault.key):
                fault.times -= 1
                return fault
        return None

    async def run(self, method: str, key: Any, action: Callable[[], Any]) -> Any:
        key = str(key)
        self.calls.append((method, key))
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._take(method, key)
        when = fault.when if fault else None
        if when == "hang":
            await asyncio.Event().wait()
        if fault and when == "before":
            raise fault.error(f"injected: {method} {key} failed")
        result = action()
        if fault and when == "after":
            raise fault.error(f"injected: {method} {key} answered with an error")
        return result


class _Method:
    """A method callable as ``d.get(k)`` or ``await d.get.aio(k)``, like Modal's."""

    def __init__(self, owner: _Fake, name: str) -> None:
        self.owner, self.name = owner, name
        self.function = getattr(owner, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        """A coroutine, or for ``iterate`` an async iterator (as Modal's generators)."""
        key = kwargs.get("partition", args[0] if args else "")
        method = f"{self.owner.prefix}{self.name}"
        if self.name == "iterate":
            return self._aiter(method, key, *args, **kwargs)
        return self.owner.faults.run(method, key, lambda: self.function(*args, **kwargs))

    async def _aiter(self, method: str, key: Any, *args: Any, **kwargs: Any) -> AsyncIterator:
        for item in await self.owner.faults.run(method, key, lambda: self.function(**kwargs)):
            yield item


class _Fake:
    prefix = ""
    methods: tuple[str, ...] = ()

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._lock = threading.Lock()
        for name in self.methods:
            setattr(self, name, _Method(self, name))


class MemoryDict(_Fake):
    methods = ("put", "get", "pop", "contains")

    def __init__(self, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self._data: dict[Any, Any] = {}

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        with self._lock:
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

    def contains(self, key: Any) -> bool:
        with self._lock:
            return key in self._data


class MemoryQueue(_Fake):
    prefix = "queue."
    methods = ("put", "iterate", "clear")

    def __init__(self, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.partitions: dict[str, list[Any]] = {}

    def put(self, value: Any, *, partition: str, partition_ttl: int = 86400) -> None:
        with self._lock:
            items = self.partitions.setdefault(partition, [])
            if len(items) >= PARTITION_ITEMS:
                raise queue.Full(f"partition {partition} holds {PARTITION_ITEMS} items")
            items.append(copy.deepcopy(value))

    def iterate(self, *, partition: str) -> list[Any]:
        with self._lock:
            return copy.deepcopy(self.partitions.get(partition, []))

    def clear(self, *, partition: str) -> None:
        with self._lock:
            self.partitions.pop(partition, None)


class Spawner:
    """Stands in for ``process.spawn.aio``: records the ids, returns calls with ids; faults
    named ``"spawn"`` apply ("after": the call starts, the caller gets an error)."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.spawned: list[str] = []

    async def __call__(self, delivery_id: str) -> Any:
        def start() -> Any:
            self.spawned.append(delivery_id)
            return type("Call", (), {"object_id": f"fc-{len(self.spawned)}"})()

        return await self.faults.run("spawn", delivery_id, start)


def offline_process(spawner: Spawner | None = None) -> Any:
    """Stands in for ``webhook_app.process`` (``web`` calls ``process.spawn.aio``)."""
    return SimpleNamespace(spawn=SimpleNamespace(aio=spawner or Spawner()))


def memory_store(faults: Faults | None = None):
    """A ModalDictStore over fresh fakes sharing ``faults``."""
    from receiver.stores.modal_dict import ModalDictStore

    faults = faults or Faults()
    return ModalDictStore(MemoryDict(faults), MemoryQueue(faults))
