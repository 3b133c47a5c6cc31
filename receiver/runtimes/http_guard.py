"""The local server's defences against slow and idle connections (uvicorn has none of its own).

uvicorn closes a keep-alive connection 5 s after its last response, but a connection that
never sends a byte, or sends its headers one byte at a time, is kept for ever, and every
one of them holds a file descriptor: about a thousand exhaust the process, and then real
deliveries cannot connect. :class:`GuardedH11Protocol` adds, per connection:

- a read deadline: each request, headers and body, must arrive within
  ``WEBHOOK_READ_TIMEOUT_SECONDS`` of its first byte (and the first byte within as long of
  connecting), or the connection is closed;
- a connection cap (``WEBHOOK_MAX_CONNECTIONS``, by default the descriptor limit less a
  reserve): a connection over the cap closes the oldest connection that has sent nothing
  yet, or, when every one is busy, is closed itself. One warning a minute says so. The
  cap stays far enough below the descriptor limit that ``accept()`` never fails: asyncio
  answers that failure with a traceback per pending connection, many per second.
  A connection counts from the moment asyncio creates its protocol, in the turn after
  ``accept()``: ``connection_made`` comes a turn later still, and counting from there
  would leave two turns of accepted sockets (256) out of the count.

On Modal none of this runs: Modal's proxy holds the client connections, and the web
function sees whole requests (``docs/operations.md``).

    config = uvicorn.Config(app, http=guarded_protocol(settings), backlog=ACCEPT_BACKLOG)
"""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from receiver.settings import Settings

log = logging.getLogger("receiver.http")

ACCEPT_BACKLOG = 128  # uvicorn's `backlog`: also how many connections asyncio accepts per turn
# Descriptors kept out of the cap: one turn's accepts (counted from the next turn, when
# asyncio creates their protocols), one turn's connections closed to make room for them
# (let go the turn after), and the store, body files, pipes, logs. 1,100 idle connections
# on 1,024 descriptors peaked at 983: the cap (704), two turns (256) and 23 others.
DESCRIPTOR_RESERVE = 2 * ACCEPT_BACKLOG + 64
WARN_EVERY_SECONDS = 60.0


def connection_cap(settings: Settings) -> int:
    """``WEBHOOK_MAX_CONNECTIONS``, or what the process's descriptor limit leaves room for."""
    if settings.max_connections is not None:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, soft - DESCRIPTOR_RESERVE) if soft != resource.RLIM_INFINITY else 10_000


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline per request and a connection cap."""

    read_timeout: float = 15.0
    max_connections: int = 1000
    # Protocols asyncio has created whose connection_made has not run yet (weak: one whose
    # transport could not be built is never made, and must not stay counted).
    unmade: weakref.WeakSet[GuardedH11Protocol]
    _last_warning = float("-inf")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heard = False
        self.refused = False
        self.opened = self.loop.time()
        self._deadline: asyncio.TimerHandle | None = None
        self.unmade.add(self)
        if len(self.connections) + len(self.unmade) > self.max_connections:
            self._make_room()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.unmade.discard(self)
        super().connection_made(transport)
        if self.refused:
            transport.close()
        else:
            self._deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        if self._deadline is None:  # the first bytes of the next request
            self._deadline = self.loop.call_later(self.read_timeout, self._too_slow)
        super().data_received(data)
        if self._deadline is not None and self.conn.their_state is h11.DONE:
            self._deadline.cancel()  # the whole request is in: the rest is ours to do
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def close(self) -> None:
        """Close the connection, or, before asyncio has made it, as soon as it is."""
        if self.transport is None:
            self.refused = True
        elif not self.transport.is_closing():
            self.transport.close()

    def _too_slow(self) -> None:
        self._deadline = None
        self.close()

    def _make_room(self) -> None:
        silent = [c for c in self.connections if not c.heard and not c.transport.is_closing()]
        silent += [c for c in self.unmade if not c.refused and c is not self]
        if silent:
            min(silent, key=lambda connection: connection.opened).close()
            reason = "closed the oldest connection that had sent nothing"
        else:
            self.close()
            reason = "refused a new connection (every connection is busy)"
        now = self.loop.time()
        if now - GuardedH11Protocol._last_warning >= WARN_EVERY_SECONDS:
            GuardedH11Protocol._last_warning = now
            log.warning(
                "%d connections, the cap (WEBHOOK_MAX_CONNECTIONS): %s",
                len(self.connections) + len(self.unmade),
                reason,
            )


def guarded_protocol(settings: Settings) -> type[GuardedH11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``, with the settings' limits."""
    limits: dict[str, Any] = {
        "read_timeout": settings.read_timeout_seconds,
        "max_connections": connection_cap(settings),
        "unmade": weakref.WeakSet(),
    }
    return type("GuardedH11Protocol", (GuardedH11Protocol,), limits)
