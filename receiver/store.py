"""The delivery store: what was accepted, and how far each handler got with it.

:class:`DeliveryStore` is the interface the HTTP edge, the dispatcher and the operator
scripts use. :class:`SqliteStore` is the local implementation (stdlib ``sqlite3`` in WAL
mode; a delivery is committed with ``synchronous=FULL`` before ``202`` is sent, concurrent
deliveries sharing one commit); on Modal, ``receiver.modal_runtime.ModalDictStore``
implements the same interface over a ``modal.Dict``.

    store = SqliteStore("data/deliveries.sqlite3")
    if store.accept(record, body):  # False: already accepted (a redelivery)
        ...
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from receiver.delivery import DeliveryRecord, HandlerState, HandlerStatus


async def call_inline(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run a store call on the event loop itself.

    For the SQLite store this beats a thread: its calls take well under a millisecond, and
    handing each one to a thread costs more (the GIL hand-over) than the call itself.
    Network-backed stores (``modal.Dict``) are called through ``asyncio.to_thread``.
    """
    return function(*args, **kwargs)


Body = bytes | bytearray  # a request body as read (the edge reads into a bytearray)


class StoreError(RuntimeError):
    """The store could not record or read a delivery (the edge answers 503 so LangSmith retries)."""


class DeliveryStore(Protocol):
    """What any delivery store offers; all methods are blocking and thread-safe."""

    def accept(self, record: DeliveryRecord, body: Body) -> bool:
        """Record a new delivery with its handlers pending; False if the id is already known."""
        ...

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery's record, or None."""
        ...

    def body(self, delivery_id: str) -> bytes:
        """The raw body of an accepted delivery."""
        ...

    def start_attempt(self, delivery_id: str, handler: str) -> int:
        """Count a new attempt of ``handler`` (before it runs) and return its number."""
        ...

    def finish_attempt(
        self, delivery_id: str, handler: str, error: str | None, *, final: bool
    ) -> None:
        """Record an attempt's outcome: done, pending again (``error``), or failed (``final``)."""
        ...

    def recent(self, limit: int = 20) -> list[DeliveryRecord]:
        """The latest deliveries, newest first."""
        ...

    def unfinished(self) -> list[str]:
        """Ids of deliveries with a pending handler, oldest first (crash recovery)."""
        ...

    def dead(self) -> list[str]:
        """Ids of deliveries with a handler that failed for good."""
        ...

    def reset_failed(self, delivery_id: str) -> list[str]:
        """Make the failed handlers of a delivery pending again with fresh attempts."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    rule_id TEXT NOT NULL,
    runs INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS handler_states (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    handler TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (delivery_id, handler)
);
CREATE INDEX IF NOT EXISTS handler_states_by_status ON handler_states (status, delivery_id);
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (received_at);
"""

_SELECT_RECORDS = (
    "SELECT d.id, d.received_at, d.rule_id, d.runs, h.handler, h.status, h.attempts, h.last_error"
    " FROM deliveries d LEFT JOIN handler_states h ON h.delivery_id = d.id"
)


class SqliteStore:
    """A :class:`DeliveryStore` in one SQLite file, shared safely by threads and processes.

    ``busy_timeout`` bounds how long a write waits for another process's lock before the
    store gives up with :class:`StoreError`; it stays well under LangSmith's 5 s deadline.

    Accepting a delivery is committed with ``synchronous=FULL`` (on disk, even across a
    power cut). Handler bookkeeping is committed with ``synchronous=NORMAL``: it survives a
    crash of the process, and a power cut can at worst lose the last attempt counts, which
    makes a handler run again (at-least-once), never loses a delivery.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 2.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the delivery store at {self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                if durable:
                    self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"delivery store {self.path}: {exc}") from exc
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"delivery store {self.path}: {exc}") from exc

    def accept(self, record: DeliveryRecord, body: Body) -> bool:
        return self.accept_many([(record, body)])[0]

    def accept_many(self, deliveries: Sequence[tuple[DeliveryRecord, Body]]) -> list[bool]:
        """:meth:`accept` for several deliveries in one transaction: all recorded, or none."""
        new = []
        with self._transaction(durable=True) as db:
            for record, body in deliveries:
                inserted = db.execute(
                    "INSERT OR IGNORE INTO deliveries (id, received_at, rule_id, runs, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (record.id, record.received_at, record.rule_id, record.runs, body),
                ).rowcount
                if inserted:
                    db.executemany(
                        "INSERT INTO handler_states (delivery_id, handler, status)"
                        " VALUES (?, ?, ?)",
                        [
                            (record.id, name, HandlerStatus.PENDING.value)
                            for name in record.handlers
                        ],
                    )
                new.append(bool(inserted))
        return new

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        records = self._records("WHERE d.id = ?", (delivery_id,))
        return records[0] if records else None

    def body(self, delivery_id: str) -> bytes:
        rows = self._query("SELECT body FROM deliveries WHERE id = ?", (delivery_id,))
        if not rows:
            raise StoreError(f"no delivery {delivery_id} in {self.path}")
        return rows[0][0]

    # One delivery's handler is only ever run by one worker at a time, so the bookkeeping
    # below uses single statements (each its own transaction) rather than BEGIN ... COMMIT.
    def start_attempt(self, delivery_id: str, handler: str) -> int:
        key = (delivery_id, handler)
        self._query(
            "UPDATE handler_states SET attempts = attempts + 1"
            " WHERE delivery_id = ? AND handler = ?",
            key,
        )
        [(attempts,)] = self._query(
            "SELECT attempts FROM handler_states WHERE delivery_id = ? AND handler = ?", key
        )
        return attempts

    def finish_attempt(
        self, delivery_id: str, handler: str, error: str | None, *, final: bool
    ) -> None:
        if error is None:
            status = HandlerStatus.DONE
        else:
            status = HandlerStatus.FAILED if final else HandlerStatus.PENDING
        self._query(
            "UPDATE handler_states SET status = ?, last_error = ?"
            " WHERE delivery_id = ? AND handler = ?",
            (status.value, error, delivery_id, handler),
        )

    def recent(self, limit: int = 20) -> list[DeliveryRecord]:
        return self._records(
            "WHERE d.id IN (SELECT id FROM deliveries ORDER BY received_at DESC LIMIT ?)",
            (limit,),
            order="d.received_at DESC",
        )

    def unfinished(self) -> list[str]:
        return self._ids_with(HandlerStatus.PENDING)

    def dead(self) -> list[str]:
        dead_ids = set(self._ids_with(HandlerStatus.FAILED)) - set(self.unfinished())
        return sorted(dead_ids)

    def reset_failed(self, delivery_id: str) -> list[str]:
        with self._transaction() as db:
            handlers = [
                name
                for (name,) in db.execute(
                    "SELECT handler FROM handler_states WHERE delivery_id = ? AND status = ?",
                    (delivery_id, HandlerStatus.FAILED.value),
                )
            ]
            db.execute(
                "UPDATE handler_states SET status = ?, attempts = 0"
                " WHERE delivery_id = ? AND status = ?",
                (HandlerStatus.PENDING.value, delivery_id, HandlerStatus.FAILED.value),
            )
        return handlers

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def _ids_with(self, status: HandlerStatus) -> list[str]:
        rows = self._query(
            "SELECT DISTINCT h.delivery_id FROM handler_states h"
            " JOIN deliveries d ON d.id = h.delivery_id"
            " WHERE h.status = ? ORDER BY d.received_at",
            (status.value,),
        )
        return [delivery_id for (delivery_id,) in rows]

    def _records(
        self, where: str, params: Sequence, order: str = "d.received_at"
    ) -> list[DeliveryRecord]:
        # `where` and `order` are constants of this class; values travel as parameters.
        sql = f"{_SELECT_RECORDS} {where} ORDER BY {order}, h.handler"
        rows = self._query(sql, params)
        records: dict[str, DeliveryRecord] = {}
        for id_, received_at, rule_id, runs, handler, status, attempts, error in rows:
            record = records.setdefault(id_, DeliveryRecord(id_, received_at, rule_id, runs))
            if handler is not None:
                record.handlers[handler] = HandlerState(HandlerStatus(status), attempts, error)
        return list(records.values())
