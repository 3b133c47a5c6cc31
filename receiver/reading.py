"""What the edge reads of a body before answering, and where large bodies are read.

:class:`Reader` turns a body into a :class:`Delivery`: its id, its sender, LangSmith's
delivery key, a subject, how many runs, the routes it matches. Nothing else of the parse
is kept.

A large body is read in a process of its own (:class:`ParserProcess`): parsing 25 MiB of
tiny runs builds a tree of about six times that and holds the GIL for half a second or
more (jiter is Rust and never yields it), which in a thread of the server would still
stop its event loop, ``/healthz`` included, for that long. The parser process reads one
body at a time, so its memory is bounded by the largest body, not by how many arrive.

    reader = Reader(routes)
    delivery = reader.read("/", body)          # small bodies: on the event loop
    delivery = await parser.read("/", body)    # large ones: in the parser process
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from receiver.delivery import derive_delivery_id
from receiver.routes import RouteTable, load_routes
from receiver.settings import Settings
from receiver.sources import SOURCES, Source, recognise

log = logging.getLogger("receiver.http")
MAX_SUBJECT_CHARS = 300  # a subject is a line in a listing


@dataclass(frozen=True)
class Delivery:
    """What the edge read of a body: all the answer and the record need."""

    id: str
    source: str
    key: str | None  # LangSmith's own id of the delivery, if its sender has one
    subject: str
    runs: int
    routes: tuple[str, ...]
    handlers: tuple[str, ...]


class Reader:
    """Reads bodies for the routes of a :class:`RouteTable`, per path."""

    def __init__(self, routes: RouteTable) -> None:
        self.routes = routes
        self._preferred: dict[str, Sequence[Source]] = {}
        self._run_keys: dict[str, dict[str, frozenset[str]]] = {}
        for path in routes.paths:
            self._preferred[path] = [SOURCES[name] for name in routes.sources_at(path)]
            keys = routes.condition_keys(path)
            self._run_keys[path] = {name: keys & s.run_keys for name, s in SOURCES.items()}

    def read(self, path: str, body: bytes | bytearray) -> Delivery:
        """Raises :class:`~receiver.sources.BodyError` for a body to refuse (422)."""
        found = recognise(body, self._preferred[path])
        source, envelope = found.source, found.envelope
        if found.problem:
            log.warning("kept as an unknown delivery: %s", found.problem)
        keys = self._run_keys[path][source.name]
        runs = source.run_facts(envelope, keys) if keys else None
        matched = self.routes.matching(path, source.name, source.facts(envelope), runs)
        key = source.delivery_key(envelope)
        return Delivery(
            id=derive_delivery_id(body, path, key),  # hashing 25 MiB takes ~50 ms: here too
            source=source.name,
            key=key,
            subject=found.problem[:MAX_SUBJECT_CHARS] or source.subject(envelope),
            runs=source.run_count(envelope),
            routes=tuple(route.name for route in matched),
            handlers=self.routes.handlers_of(matched),
        )


_reader: Reader | None = None  # the parser process's
_malloc_trim: Any = None  # glibc's, found once at the parser's start (None elsewhere)


def _start_parser(settings: Settings, server: int) -> None:
    """The parser process's set-up: the same routes, the same logging rules, and a watch
    on the server: killed, it cannot stop its pool, and the parser must not outlive it."""
    import ctypes
    import ctypes.util
    import threading

    from receiver.logs import configure_logging

    global _reader, _malloc_trim
    configure_logging(settings.redacted_values)
    _reader = Reader(load_routes(settings, SOURCES))
    # find_library runs `ldconfig -p` in a subprocess: once here, not once per body.
    libc = ctypes.util.find_library("c")
    _malloc_trim = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None

    def exit_with_the_server() -> None:
        while os.getppid() == server:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=exit_with_the_server, name="parent-watch", daemon=True).start()


def _read_in_parser(path: str, spooled: str) -> Delivery:
    assert _reader is not None, "the parser process was not started"
    try:
        with open(spooled, "rb") as file:
            return _reader.read(path, file.read())
    finally:
        _give_back_memory()


def _give_back_memory() -> None:
    """Return the freed tree to the system (glibc keeps freed heap for reuse otherwise), so
    that an idle parser holds its baseline, not the largest body it has read."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _spool(body: bytes | bytearray) -> str:
    """The body in a temporary file: how it reaches the parser, without a pickled copy of
    it in each process's memory (the page cache holds it instead)."""
    with tempfile.NamedTemporaryFile(prefix="webhook-body-", delete=False) as file:
        file.write(body)
    return file.name


class ParserProcess:
    """One process that reads large bodies, one at a time (started by the app at start-up,
    or else by the first large body)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._executor: Executor | None = None

    async def read(self, path: str, body: bytes | bytearray) -> Delivery:
        """Like :meth:`Reader.read`, in the parser process. A parser that died (killed,
        out of memory) is replaced for the next body; this one raises ``RuntimeError``."""
        from concurrent.futures.process import BrokenProcessPool

        executor = self._executor or self.start()
        loop = asyncio.get_running_loop()
        spooled = await asyncio.to_thread(_spool, body)
        try:
            return await loop.run_in_executor(executor, _read_in_parser, path, spooled)
        except BrokenProcessPool as exc:
            self._executor = None
            raise RuntimeError(f"the parser process died: {exc}") from exc
        finally:
            os.unlink(spooled)

    def start(self) -> Executor:
        """Start the process now, without waiting for it (idempotent)."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_parser,
                initargs=(self.settings, os.getpid()),
            )
            self._executor.submit(int)  # spawns the process and runs its set-up
        return self._executor
