"""The local delivery store: one SQLite file (stdlib ``sqlite3``, WAL mode).

A delivery is committed with ``synchronous=FULL`` before ``202`` is sent, concurrent
deliveries sharing one commit (see ``runtimes.local.LocalIntake``). Bodies over
``LARGE_BYTES`` are kept in files beside the database (``deliveries.sqlite3.bodies/``),
written and synced before the rows that name them are committed: SQLite writes a large blob
twice (WAL, then checkpoint) through 4 KiB pages, at about four times the CPU of one file
write (measured: 1.6 ms against 0.4 ms for 594 KB; sqlite.org's "Internal Versus External
BLOBs" finds the same above ~100 KB). The large bodies of one commit share one file (a
"segment": one write, one sync), as their rows share one transaction: a file per body
cost five system calls each, and the committing thread waited for the GIL after each while
the event loop parsed the next body.

Accepting waits for another process's lock only in a thread (the edge's deadline must
still be able to answer). The other async methods, the worker's and the operator's, run
their SQL on the event loop itself: each call takes well under a
millisecond, and handing it to a thread costs more (the GIL hand-over) than the call.
``busy_timeout`` bounds how long one may wait for another process's lock.

    store = SqliteStore("data/deliveries.sqlite3")
    new = await store.accept(record, body)
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from receiver.delivery import MAX_FAILURES_KEPT, DeliveryRecord, HandlerState, HandlerStatus
from receiver.stores import Body, StoreError, reset_choice

_BUSY = (sqlite3.SQLITE_BUSY, getattr(sqlite3, "SQLITE_BUSY_SNAPSHOT", 517))
LARGE_BYTES = 64 * 1024  # larger bodies go to files, larger batches commit in a thread
_IOV_MAX = 1024  # buffers per writev (Linux's IOV_MAX)
_INSERT_DELIVERIES = (
    "INSERT OR IGNORE INTO deliveries (id, received_at, source, subject, runs, routes, body,"
    " external, segment, body_offset, body_length) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_ROWS_PER_INSERT = 500  # 11 parameters a row: well under SQLite's 32,766 per statement

# Handler states refer to their delivery by ``seq`` (the order deliveries arrived in), not
# by ``id`` (a hash of the body: random). An accept then appends to the states' indexes
# instead of dirtying a random page of each per delivery: 50 deliveries committed into a
# store of 50,000 wrote 994 KiB of WAL keyed by id, and 506 KiB keyed by seq.
_TABLES = (  # one statement each: the upgrade runs them inside its transaction
    """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    subject TEXT NOT NULL,
    runs INTEGER NOT NULL,
    body BLOB NOT NULL,  -- empty when the body is in a file (external = 1)
    external INTEGER NOT NULL DEFAULT 0,
    segment TEXT,  -- the file holding it, from body_offset, body_length bytes
    body_offset INTEGER NOT NULL DEFAULT 0,
    body_length INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT 'rule',
    routes TEXT NOT NULL DEFAULT ''  -- route names, comma-separated
)
""",
    """
CREATE TABLE IF NOT EXISTS handler_states (
    delivery INTEGER NOT NULL REFERENCES deliveries (seq),
    handler TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    claim_owner TEXT,  -- who runs the current attempt (see start_attempt), until claim_until
    claim_until REAL,
    finished_at REAL,  -- when the last attempt ended
    failures TEXT,  -- JSON: the failed attempts, the last MAX_FAILURES_KEPT
    PRIMARY KEY (delivery, handler)
)
""",
    """
CREATE TABLE IF NOT EXISTS meta (  -- small JSON values kept across runs (alert state)
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
""",
)
_INDEXES = """
-- Partial indexes: only the rows the worker and the listings look for. A full index on
-- status held every done row, and each write touched a random page of it.
DROP INDEX IF EXISTS handler_states_by_status;
CREATE INDEX IF NOT EXISTS handler_states_pending ON handler_states (delivery)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS handler_states_failed ON handler_states (delivery)
    WHERE status = 'failed';
CREATE INDEX IF NOT EXISTS handler_states_claimed ON handler_states (claim_owner)
    WHERE claim_owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (received_at);
"""
# The columns both layouts share, in the order of the tables above.
_DELIVERY_COLUMNS = (
    "id, received_at, subject, runs, body, external, segment, body_offset, body_length,"
    " source, routes"
)
_STATE_COLUMNS = (
    "handler, status, attempts, last_error, claim_owner, claim_until, finished_at, failures"
)

_IDS_WITH = {  # the status spelled in the SQL (see _ids_with); only enum constants go in
    status: "SELECT DISTINCT d.id FROM handler_states h"  # noqa: S608
    " JOIN deliveries d ON d.seq = h.delivery"
    f" WHERE h.status = '{status.value}' ORDER BY d.received_at"
    for status in (HandlerStatus.PENDING, HandlerStatus.FAILED)
}
# A failed attempt appended to the JSON list of failures (?2 the error, ?7 the time), the
# oldest dropped past MAX_FAILURES_KEPT (one at a time: one is added at a time), as
# receiver.delivery.with_failure does.
_APPENDED = (
    "json_insert(coalesce(failures, '[]'), '$[#]',"
    " json_object('attempt', attempts, 'at', ?7, 'error', ?2))"
)
_WITH_FAILURE = (
    f"CASE WHEN json_array_length({_APPENDED}) > {MAX_FAILURES_KEPT}"
    f" THEN json_remove({_APPENDED}, '$[0]') ELSE {_APPENDED} END"
)
_FINISH_ATTEMPT = (  # constants only: the values travel as parameters
    "UPDATE handler_states SET status = ?1, last_error = ?2,"  # noqa: S608
    " claim_owner = CASE WHEN ?3 IS NULL THEN NULL ELSE claim_owner END,"
    " claim_until = ?3, finished_at = ?7,"
    f" failures = CASE WHEN ?2 IS NULL THEN failures ELSE {_WITH_FAILURE} END"
    " WHERE delivery = (SELECT seq FROM deliveries WHERE id = ?4)"
    " AND handler = ?5 AND claim_owner = ?6 RETURNING 1"
)
_SELECT_RECORDS = (
    "SELECT d.id, d.received_at, d.source, d.subject, d.runs, d.routes,"
    " h.handler, h.status, h.attempts, h.last_error, h.finished_at, h.failures"
    " FROM deliveries d LEFT JOIN handler_states h ON h.delivery = d.seq"
)
# Columns added since the first release, for stores created before them.
_MIGRATIONS = {
    ("deliveries", "external"): "ADD COLUMN external INTEGER NOT NULL DEFAULT 0",
    ("deliveries", "subject"): "RENAME COLUMN rule_id TO subject",
    ("deliveries", "source"): "ADD COLUMN source TEXT NOT NULL DEFAULT 'rule'",
    ("deliveries", "routes"): "ADD COLUMN routes TEXT NOT NULL DEFAULT ''",
    ("deliveries", "segment"): "ADD COLUMN segment TEXT",
    ("deliveries", "body_offset"): "ADD COLUMN body_offset INTEGER NOT NULL DEFAULT 0",
    ("deliveries", "body_length"): "ADD COLUMN body_length INTEGER NOT NULL DEFAULT 0",
    ("handler_states", "claim_owner"): "ADD COLUMN claim_owner TEXT",
    ("handler_states", "claim_until"): "ADD COLUMN claim_until REAL",
    ("handler_states", "finished_at"): "ADD COLUMN finished_at REAL",
    ("handler_states", "failures"): "ADD COLUMN failures TEXT",
}


class LockBusy(Exception):
    """Another process holds the write lock (raised only when asked not to wait)."""


class _Probed(Exception):
    """Rolls a probe's transaction back."""


_PROBE_ID = "~probe"  # sorts after every real id (hex): the probe touches the last pages


class SqliteStore:
    """A :class:`~receiver.stores.DeliveryStore` in one SQLite file, safe across processes.

    ``busy_timeout`` bounds how long a write waits for another process's lock before the
    store gives up with :class:`StoreError`; it stays well under LangSmith's 5 s deadline.

    Accepting a delivery is committed with ``synchronous=FULL`` (on disk, even across a
    power cut). Handler bookkeeping is committed with ``synchronous=NORMAL``: it survives a
    crash of the process, and a power cut can at worst lose the last attempt counts, which
    makes a handler run again (at-least-once), never loses a delivery.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._batch: list[tuple[str, Sequence, asyncio.Future[list[tuple]]]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=0,  # waits for a lock are :meth:`_execute`'s
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._upgrade()
            for statement in _TABLES:
                self._db.execute(statement)
            self._db.executescript(_INDEXES)
            self.bodies = self.path.with_name(self.path.name + ".bodies")
            self.bodies.mkdir(exist_ok=True)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the delivery store at {self.path}: {exc}") from exc

    def _upgrade(self) -> None:
        """Bring a store an earlier version wrote to the current layout, in place: the
        columns added since, then handler states keyed by seq (both tables copied once)."""

        def columns(table: str) -> set[str]:
            return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

        found = columns("deliveries")
        if not found or "seq" in found:  # a new store, or one in the current layout
            return
        with self._transaction() as db:
            if "seq" in columns("deliveries"):  # another process upgraded it meanwhile
                return
            for (table, column), change in _MIGRATIONS.items():
                present = columns(table)  # read again: a rename changes them
                if present and column not in present:
                    db.execute(f"ALTER TABLE {table} {change}")
            had_states = bool(columns("handler_states"))
            db.execute("ALTER TABLE deliveries RENAME TO deliveries_by_id")
            if had_states:
                db.execute("ALTER TABLE handler_states RENAME TO handler_states_by_id")
            for statement in _TABLES:
                db.execute(statement)
            db.execute(
                f"INSERT INTO deliveries ({_DELIVERY_COLUMNS})"  # noqa: S608 (constants)
                f" SELECT {_DELIVERY_COLUMNS} FROM deliveries_by_id ORDER BY rowid"
            )
            if had_states:
                db.execute(
                    f"INSERT INTO handler_states (delivery, {_STATE_COLUMNS})"  # noqa: S608
                    f" SELECT d.seq, {_STATE_COLUMNS} FROM handler_states_by_id"
                    " JOIN deliveries d ON d.id = delivery_id"
                )
                db.execute("DROP TABLE handler_states_by_id")
            db.execute("DROP TABLE deliveries_by_id")

    @contextmanager
    def _transaction(
        self, *, durable: bool = False, wait: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; without ``wait``, :class:`LockBusy` at once if another
        process holds the write lock (nothing is written then)."""
        with self._lock:
            try:
                if durable:
                    self._db.execute("PRAGMA synchronous=FULL")
                self._execute("BEGIN IMMEDIATE", wait=wait)
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

    def _execute(self, sql: str, params: Sequence = (), *, wait: bool = True) -> sqlite3.Cursor:
        """Run one statement, waiting for another process's write lock in short steps.

        SQLite's own busy handler sleeps 1, 2, 5, 10 ms... between tries; the other writer
        (the worker's bookkeeping, the server's commit) holds the lock for microseconds, so
        those sleeps were mostly waiting for nothing. Here the pause starts at 50 µs and
        doubles up to 2 ms, until ``busy_timeout`` has passed.
        """
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.00005
        while True:
            try:
                return self._db.execute(sql, params)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode in _BUSY and not wait:
                    raise LockBusy from exc
                if exc.sqlite_errorcode not in _BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.002)

    def check_integrity(self) -> None:
        """Raise :class:`StoreError` naming the damage if the file is corrupt (start-up).

        ``PRAGMA quick_check`` reads every page (a second or so per GB): a damaged store
        would otherwise start, answer ``/healthz``, and refuse every delivery with 503.
        """
        problems = [row[0] for row in self._query("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise StoreError(
                f"the delivery store {self.path} is damaged ({'; '.join(problems)}):"
                " restore it from a copy, or move it away to start with an empty store"
            )

    def check_writable(self) -> None:
        """Raise :class:`StoreError` if a delivery could not be recorded right now.

        Writes a probe delivery and its handler state (the tables and indexes an accept
        touches) and rolls it back: nothing is synced, nothing stays. When another process
        holds the write lock, the store is busy, not broken: nothing is raised.
        """
        try:
            with self._transaction(wait=False) as db:
                db.execute(
                    "INSERT OR IGNORE INTO deliveries (id, received_at, subject, runs, body)"
                    " VALUES (?, 0, '', 0, x'')",
                    (_PROBE_ID,),
                )
                db.execute(
                    "INSERT OR IGNORE INTO handler_states (delivery, handler, status)"
                    " VALUES ((SELECT seq FROM deliveries WHERE id = ?), '', '')",
                    (_PROBE_ID,),
                )
                raise _Probed
        except (_Probed, LockBusy):
            pass

    async def _write_soon(self, sql: str, params: Sequence) -> list[tuple]:
        """Run one bookkeeping statement in the transaction of every statement asked for
        in the same turn of the event loop: the worker claims (and finishes) the attempts of
        a burst of deliveries together. One transaction for 8 deliveries costs about a third
        of 8 transactions (each rewrites the same pages into the WAL). A failure fails the
        whole batch, as if each had failed: none of it was written."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[tuple]] = loop.create_future()
        self._batch.append((sql, params, answer))
        if len(self._batch) == 1:
            loop.call_soon(self._write_batch)
        return await answer

    def _write_batch(self) -> None:
        batch, self._batch = self._batch, []
        try:
            with self._transaction() as db:
                results = [db.execute(sql, params).fetchall() for sql, params, _ in batch]
        except StoreError as exc:  # _transaction turns every sqlite3.Error into one
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, _, answer), rows in zip(batch, results, strict=True):
            if not answer.done():  # its caller may have been cancelled meanwhile
                answer.set_result(rows)

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"delivery store {self.path}: {exc}") from exc

    async def accept(self, record: DeliveryRecord, body: Body) -> bool:
        return (await self.accept_many([(record, body)]))[0]

    async def accept_many(self, deliveries: Sequence[tuple[DeliveryRecord, Body]]) -> list[bool]:
        """:meth:`accept` for several deliveries in one transaction: all recorded, or none.

        Batches without a body for a file are committed inline when the write lock is free:
        a thread hand-over would cost more than the commit (and its Python steps would wait
        for the GIL while the loop parses). Those with files to write (megabytes to sync),
        and any batch that finds another process holding the lock, are committed in a
        thread, which waits up to ``busy_timeout``: meanwhile the event loop goes on reading
        the next requests (they join the next transaction), answering ``/healthz``, and can
        give up on this one at the edge's deadline.
        """
        if all(len(body) <= LARGE_BYTES for _, body in deliveries):
            try:
                return self._accept_many(deliveries, wait=False)
            except LockBusy:
                pass
        return await asyncio.to_thread(self._accept_many, deliveries)

    def _accept_many(
        self, deliveries: Sequence[tuple[DeliveryRecord, Body]], *, wait: bool = True
    ) -> list[bool]:
        large = [(r.id, body) for r, body in deliveries if len(body) > LARGE_BYTES]
        if large:  # a redelivery's body is not written again
            known = self._known([delivery_id for delivery_id, _ in large])
            large = [(delivery_id, body) for delivery_id, body in large if delivery_id not in known]
        segment, places = self._write_segment(large)
        rows = []
        for record, body in deliveries:
            offset = places.get(record.id)
            external = offset is not None
            rows.append(
                (
                    record.id,
                    record.received_at,
                    record.source,
                    record.subject,
                    record.runs,
                    ",".join(record.routes),
                    b"" if external else body,
                    external,
                    segment if external else None,
                    offset or 0,
                    len(body),
                )
            )
        with self._transaction(durable=True, wait=wait) as db:
            inserted: dict[str, int] = {}  # id: seq of each delivery this commit adds
            # One statement per chunk of rows, not per row: under load a commit holds
            # dozens of deliveries, and each statement is a round through the sqlite3 module.
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                chunk = rows[start : start + _ROWS_PER_INSERT]
                sql = _INSERT_DELIVERIES + ",".join([_ROW] * len(chunk)) + " RETURNING id, seq"
                params = [value for row in chunk for value in row]
                inserted.update(db.execute(sql, params))
            new, states = [], []
            for record, _ in deliveries:
                seq = inserted.pop(record.id, None)  # a second copy in the batch: redelivery
                new.append(seq is not None)
                if seq is not None:
                    pending = HandlerStatus.PENDING.value
                    states.extend((seq, name, pending) for name in record.handlers)
            db.executemany(
                "INSERT INTO handler_states (delivery, handler, status) VALUES (?, ?, ?)",
                states,
            )
        return new

    async def get(self, delivery_id: str) -> DeliveryRecord | None:
        records = self._records("WHERE d.id = ?", (delivery_id,))
        return records[0] if records else None

    async def body(self, delivery_id: str) -> bytes:
        rows = self._query(
            "SELECT body, external, segment, body_offset, body_length FROM deliveries WHERE id = ?",
            (delivery_id,),
        )
        if not rows:
            raise StoreError(f"no delivery {delivery_id} in {self.path}")
        body, external, segment, offset, length = rows[0]
        if not external:
            return body
        try:
            if segment is None:  # a file per body, as stores written before segments have
                return (self.bodies / delivery_id).read_bytes()
            with open(self.bodies / segment, "rb") as file:
                file.seek(offset)
                body = file.read(length)
        except OSError as exc:
            raise StoreError(f"body of delivery {delivery_id} unreadable: {exc}") from exc
        if len(body) != length:
            raise StoreError(f"body of delivery {delivery_id} unreadable: {segment} is short")
        return body

    def _known(self, delivery_ids: list[str]) -> set[str]:
        rows = self._query(
            "SELECT id FROM deliveries WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(delivery_ids),),
        )
        return {row[0] for row in rows}

    def _write_segment(self, bodies: Sequence[tuple[str, Body]]) -> tuple[str, dict[str, int]]:
        """Write the bodies one after another to a new file, durably, before any row names
        them; return its name and where each body starts.

        The folder is synced too, so that the name survives a power cut. A crash before the
        commit leaves a file no row names (space lost, nothing else).
        """
        segment, places, offset = uuid.uuid4().hex, {}, 0
        if not bodies:
            return segment, places
        views = []
        for delivery_id, body in bodies:
            places[delivery_id] = offset
            offset += len(body)
            views.append(memoryview(body))
        try:
            fd = os.open(self.bodies / segment, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, views)
                os.fdatasync(fd)
            finally:
                os.close(fd)
            folder = os.open(self.bodies, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as exc:
            raise StoreError(f"cannot write a body under {self.bodies}: {exc}") from exc
        finally:
            for view in views:
                view.release()
        return segment, places

    # Each claim step is one UPDATE (its own transaction): whether the claim is free and
    # taking it cannot be split by another process's write.
    async def start_attempt(
        self, delivery_id: str, handler: str, owner: str, until: float
    ) -> int | None:
        rows = await self._write_soon(
            "UPDATE handler_states"
            " SET attempts = attempts + 1, claim_owner = ?3, claim_until = ?4"
            " WHERE delivery = (SELECT seq FROM deliveries WHERE id = ?1)"
            " AND handler = ?2 AND status = ?5"
            " AND (claim_owner IS NULL OR claim_owner = ?3 OR claim_until < ?6)"
            " RETURNING attempts",
            (delivery_id, handler, owner, until, HandlerStatus.PENDING.value, time.time()),
        )
        return rows[0][0] if rows else None

    async def renew(self, delivery_id: str, handler: str, owner: str, until: float) -> bool:
        return bool(
            await self._write_soon(
                "UPDATE handler_states SET claim_until = ?1"
                " WHERE delivery = (SELECT seq FROM deliveries WHERE id = ?2)"
                " AND handler = ?3 AND claim_owner = ?4"
                " RETURNING 1",
                (until, delivery_id, handler, owner),
            )
        )

    async def finish_attempt(
        self,
        delivery_id: str,
        handler: str,
        owner: str,
        error: str | None,
        *,
        final: bool,
        hold_until: float | None = None,
    ) -> bool:
        if error is None:
            status = HandlerStatus.DONE
        else:
            status = HandlerStatus.FAILED if final else HandlerStatus.PENDING
        return bool(
            await self._write_soon(
                _FINISH_ATTEMPT,
                (status.value, error, hold_until, delivery_id, handler, owner, time.time()),
            )
        )

    def release_dead_claims(self, alive: Callable[[str], bool]) -> int:
        """End the claims of every owner ``alive`` says is gone, and return how many.

        A local process that crashed holding claims need not be waited for until they
        expire: the worker asks this at start-up and at each sweep.
        """
        owners = self._query(
            "SELECT DISTINCT claim_owner FROM handler_states WHERE claim_owner IS NOT NULL"
        )
        released = 0
        for (owner,) in owners:
            if not alive(owner):
                released += len(
                    self._query(
                        "UPDATE handler_states SET claim_owner = NULL, claim_until = NULL"
                        " WHERE claim_owner = ? RETURNING 1",
                        (owner,),
                    )
                )
        return released

    async def recent(
        self, limit: int = 20, *, source: str | None = None, route: str | None = None
    ) -> list[DeliveryRecord]:
        return self._records(
            "WHERE d.id IN (SELECT id FROM deliveries"
            " WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR instr(',' || routes || ',', ?2))"
            " ORDER BY received_at DESC LIMIT ?3)",
            (source, None if route is None else f",{route},", limit),
            order="d.received_at DESC",
        )

    async def unfinished(self) -> list[str]:
        return self._ids_with(HandlerStatus.PENDING)

    async def dead(self) -> list[str]:
        dead_ids = set(self._ids_with(HandlerStatus.FAILED)) - set(await self.unfinished())
        return sorted(dead_ids)

    async def reset(
        self,
        delivery_id: str,
        handlers: Collection[str] | None = None,
        *,
        include_done: bool = False,
    ) -> list[str]:
        chosen = reset_choice(
            await self.get(delivery_id) if handlers is None else None, handlers, include_done
        )
        with self._transaction() as db:
            reset = [
                name
                for name in chosen
                if db.execute(
                    "UPDATE handler_states SET status = ?1, attempts = 0, claim_owner = NULL,"
                    " claim_until = NULL"
                    " WHERE delivery = (SELECT seq FROM deliveries WHERE id = ?2)"
                    " AND handler = ?3 AND status != ?1 RETURNING 1",
                    (HandlerStatus.PENDING.value, delivery_id, name),
                ).fetchall()
            ]
        return reset

    async def get_meta(self, key: str) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    async def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def _ids_with(self, status: HandlerStatus) -> list[str]:
        # The status is spelled in the SQL: SQLite uses a partial index only for a query
        # whose condition matches the index's at prepare time (a parameter never does).
        rows = self._query(_IDS_WITH[status])
        return [delivery_id for (delivery_id,) in rows]

    def _records(
        self, where: str, params: Sequence, order: str = "d.received_at"
    ) -> list[DeliveryRecord]:
        # `where` and `order` are constants of this class; values travel as parameters.
        sql = f"{_SELECT_RECORDS} {where} ORDER BY {order}, h.handler"
        rows = self._query(sql, params)
        records: dict[str, DeliveryRecord] = {}
        for (
            id_,
            received_at,
            source,
            subject,
            runs,
            routes,
            handler,
            status,
            attempts,
            error,
            finished_at,
            failures,
        ) in rows:
            record = records.get(id_)
            if record is None:
                record = records[id_] = DeliveryRecord(
                    id_, received_at, source, subject, runs, tuple(filter(None, routes.split(",")))
                )
            if handler is not None:
                record.handlers[handler] = HandlerState(
                    HandlerStatus(status),
                    attempts,
                    error,
                    finished_at,
                    tuple(json.loads(failures)) if failures else (),
                )
        return list(records.values())


def _write_all(fd: int, views: list[memoryview]) -> None:
    """Write every buffer, in order: ``writev`` in batches, resumed after a short write."""
    views = list(views)  # the caller's views stay whole (it releases them)
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views = views[1:]
        if written:
            views[0] = views[0][written:]
