"""The local store: small bodies in the database, large ones in synced files beside it."""

import asyncio
import os
import sqlite3
import threading
import time

import pytest

from receiver.delivery import DeliveryRecord, HandlerState, HandlerStatus
from receiver.stores import StoreError
from receiver.stores.sqlite import LARGE_BYTES, SqliteStore


def record(delivery_id: str) -> DeliveryRecord:
    return DeliveryRecord(delivery_id, 1.0, runs=1, handlers={"h": HandlerState()})


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "deliveries.sqlite3")
    yield store
    store.close()


def external_flags(store: SqliteStore) -> dict[str, tuple[int, int]]:
    db = sqlite3.connect(store.path)
    rows = db.execute("SELECT id, length(body), external FROM deliveries").fetchall()
    return {delivery_id: (length, external) for delivery_id, length, external in rows}


def test_a_small_body_stays_in_the_database_and_a_large_one_goes_to_a_private_file(store):
    small, large = b"{}" * 10, b"x" * (LARGE_BYTES + 1)
    assert asyncio.run(store.accept_many([(record("small"), small), (record("large"), large)]))
    assert external_flags(store) == {"small": (len(small), 0), "large": (0, 1)}
    [segment] = store.bodies.iterdir()
    assert segment.stat().st_mode & 0o777 == 0o600
    assert asyncio.run(store.body("small")) == small
    assert asyncio.run(store.body("large")) == large


def test_the_large_bodies_of_one_commit_share_one_file(store):
    bodies = {f"d{n}": bytes([65 + n]) * (LARGE_BYTES + n) for n in range(3)}
    batch = [(record(delivery_id), body) for delivery_id, body in bodies.items()]
    assert asyncio.run(store.accept_many(batch)) == [True] * 3
    assert len(list(store.bodies.iterdir())) == 1
    assert {d: asyncio.run(store.body(d)) for d in bodies} == bodies
    asyncio.run(store.accept(record("later"), b"L" * (LARGE_BYTES + 1)))  # another commit
    assert len(list(store.bodies.iterdir())) == 2


def test_writing_a_segment_resumes_after_short_writes(store, monkeypatch):
    """``writev`` may write less than asked (a signal, a large total): every byte still lands."""
    real = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, views: real(fd, [bytes(views[0])[:7777]]))
    bodies = {f"d{n}": bytes([65 + n]) * (LARGE_BYTES + n) for n in range(3)}
    batch = [(record(delivery_id), body) for delivery_id, body in bodies.items()]
    assert asyncio.run(store.accept_many(batch)) == [True] * 3
    assert {d: asyncio.run(store.body(d)) for d in bodies} == bodies


def test_a_redelivered_large_body_is_not_a_second_delivery_nor_written_again(store):
    large = b"y" * (LARGE_BYTES * 2)
    assert asyncio.run(store.accept(record("d"), large)) is True
    assert asyncio.run(store.accept(record("d"), large)) is False
    assert asyncio.run(store.body("d")) == large
    assert len(list(store.bodies.iterdir())) == 1


def test_a_failed_commit_leaves_no_row_and_the_retry_is_accepted(store):
    db = sqlite3.connect(store.path, isolation_level=None)
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON handler_states"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    )
    large = b"z" * (LARGE_BYTES + 10)
    with pytest.raises(StoreError):
        asyncio.run(store.accept(record("d"), large))
    assert external_flags(store) == {}
    db.execute("DROP TRIGGER refuse")
    assert asyncio.run(store.accept(record("d"), large)) is True
    assert asyncio.run(store.body("d")) == large


def test_a_lost_or_cut_body_file_is_a_clear_store_error(store):
    asyncio.run(store.accept(record("d"), b"w" * (LARGE_BYTES + 1)))
    [segment] = store.bodies.iterdir()
    segment.write_bytes(segment.read_bytes()[:100])
    with pytest.raises(StoreError, match=f"body of delivery d unreadable: {segment.name} is short"):
        asyncio.run(store.body("d"))
    segment.unlink()
    with pytest.raises(StoreError, match="body of delivery d unreadable"):
        asyncio.run(store.body("d"))


def test_a_body_written_as_a_file_of_its_own_by_an_earlier_version_is_read(store):
    """Stores written before segments kept each large body in a file named by its id."""
    db = sqlite3.connect(store.path, isolation_level=None)
    db.execute(
        "INSERT INTO deliveries (id, received_at, subject, runs, body, external)"
        " VALUES ('old', 1.0, '', 1, x'', 1)"
    )
    (store.bodies / "old").write_bytes(b"an old body")
    assert asyncio.run(store.body("old")) == b"an old body"


def test_a_store_created_before_external_bodies_and_sources_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE deliveries (id TEXT PRIMARY KEY, received_at REAL NOT NULL,"
        " rule_id TEXT NOT NULL, runs INTEGER NOT NULL, body BLOB NOT NULL);"
        "INSERT INTO deliveries VALUES ('old', 1.0, 'rule', 1, x'7b7d');"
    )
    db.close()
    store = SqliteStore(path)
    assert asyncio.run(store.body("old")) == b"{}"
    old = asyncio.run(store.get("old"))
    assert (old.source, old.subject, old.routes) == ("rule", "rule", ())
    assert asyncio.run(store.accept(record("new"), b"u" * (LARGE_BYTES + 1))) is True
    store.close()


# The layout before handler states were keyed by seq: states referred to the delivery's id.
_ID_KEYED = """
CREATE TABLE deliveries (id TEXT PRIMARY KEY, received_at REAL NOT NULL, subject TEXT NOT NULL,
    runs INTEGER NOT NULL, body BLOB NOT NULL, external INTEGER NOT NULL DEFAULT 0,
    segment TEXT, body_offset INTEGER NOT NULL DEFAULT 0,
    body_length INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT 'rule',
    routes TEXT NOT NULL DEFAULT '');
CREATE TABLE handler_states (delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    handler TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, claim_owner TEXT, claim_until REAL, finished_at REAL, failures TEXT,
    PRIMARY KEY (delivery_id, handler));
CREATE INDEX handler_states_pending ON handler_states (delivery_id) WHERE status = 'pending';
CREATE INDEX handler_states_failed ON handler_states (delivery_id) WHERE status = 'failed';
INSERT INTO deliveries (id, received_at, subject, runs, body, routes)
    VALUES ('later', 2.0, 's', 1, x'7b7d', 'default'), ('dead', 1.0, 's', 2, x'5b5d', 'default');
INSERT INTO handler_states VALUES
    ('dead', 'a', 'failed', 3, 'boom', NULL, NULL, 5.0, '[{"attempt": 3, "at": 5.0, "error": "boom"}]'),
    ('dead', 'b', 'done', 1, NULL, NULL, NULL, 4.0, NULL),
    ('later', 'a', 'pending', 1, 'retrying', 'worker-1', 99.0, NULL, NULL);
"""  # noqa: E501


def test_a_store_whose_handler_states_name_deliveries_by_id_is_upgraded_in_place(tmp_path):
    """Every delivery and handler state survives the move to seq keys, in arrival order,
    and the store works on them: the listings, a reset, a claim, a new delivery."""
    path = tmp_path / "id-keyed.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_ID_KEYED)
    db.close()
    store = SqliteStore(path)
    dead = asyncio.run(store.get("dead"))
    assert dead.handlers["a"] == HandlerState(
        HandlerStatus.FAILED, 3, "boom", 5.0, ({"attempt": 3, "at": 5.0, "error": "boom"},)
    )
    assert dead.handlers["b"] == HandlerState(HandlerStatus.DONE, 1, None, 4.0)
    assert asyncio.run(store.body("dead")) == b"[]"
    assert asyncio.run(store.dead()) == ["dead"]
    assert asyncio.run(store.unfinished()) == ["later"]
    assert store.release_dead_claims(lambda owner: False) == 1
    assert asyncio.run(store.start_attempt("later", "a", "me", time.time() + 30)) == 2
    assert asyncio.run(store.reset("dead")) == ["a"]
    assert asyncio.run(store.accept(record("new"), b"{}")) is True
    seqs = dict(store._db.execute("SELECT id, seq FROM deliveries"))
    assert seqs["later"] < seqs["dead"] < seqs["new"]  # the order they were written in
    tables = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master")}
    assert not {"deliveries_by_id", "handler_states_by_id"} & tables
    store.close()
    reopened = SqliteStore(path)  # already upgraded: opened as is
    assert asyncio.run(reopened.get("dead")).handlers["a"].status == HandlerStatus.PENDING
    reopened.close()


def test_a_write_waits_for_another_processs_lock_and_gives_up_after_the_busy_timeout(tmp_path):
    """The store waits for the lock itself (SQLite's handler would sleep in 1-100 ms steps):
    a lock released in time is waited for, one held past ``busy_timeout`` is a StoreError."""
    path = tmp_path / "deliveries.sqlite3"
    store = SqliteStore(path, busy_timeout=5.0)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    releaser = threading.Timer(0.3, other.execute, ["COMMIT"])
    releaser.start()
    assert asyncio.run(store.accept(record("waited"), b"{}")) is True
    releaser.join()
    impatient = SqliteStore(path, busy_timeout=0.1)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="database is locked"):
        asyncio.run(impatient.accept(record("refused"), b"{}"))
    with pytest.raises(StoreError, match="database is locked"):
        asyncio.run(impatient.start_attempt("waited", "h", "me", time.time() + 30))
    other.execute("ROLLBACK")
    assert asyncio.run(impatient.start_attempt("waited", "h", "me", time.time() + 30)) == 1
    assert asyncio.run(store.get("refused")) is None


@pytest.mark.parametrize("size", [10, LARGE_BYTES + 1])
def test_two_copies_in_one_commit_are_one_delivery_and_a_duplicate(store, size):
    body = b"c" * size
    batch = [(record("a"), body), (record("twice"), body), (record("twice"), body)]
    assert asyncio.run(store.accept_many(batch)) == [True, True, False]
    assert asyncio.run(store.get("twice")).handlers.keys() == {"h"}
    assert asyncio.run(store.body("twice")) == body
    assert asyncio.run(store.accept_many([(record("twice"), body)])) == [False]


def test_a_commit_of_more_rows_than_one_statement_takes_records_them_all(store):
    batch = [(record(f"d{n}"), b"{}") for n in range(1_234)]
    assert asyncio.run(store.accept_many(batch)) == [True] * 1_234
    assert len(asyncio.run(store.recent(2_000))) == 1_234


def test_the_worker_s_lookups_read_partial_indexes_not_every_handler_row(store):
    """Done rows pile up for ever: finding pending or failed handlers, and the claims to
    release, must not scan them (the worker sweeps every 30 s)."""
    from receiver.stores.sqlite import _IDS_WITH

    def plan(sql: str) -> str:
        return " ".join(row[3] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql))

    assert "handler_states_pending" in plan(_IDS_WITH[HandlerStatus.PENDING])
    assert "handler_states_failed" in plan(_IDS_WITH[HandlerStatus.FAILED])
    claimed = "SELECT DISTINCT claim_owner FROM handler_states WHERE claim_owner IS NOT NULL"
    assert "handler_states_claimed" in plan(claimed)
    indexes = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master")}
    assert "handler_states_by_status" not in indexes
