"""Claims: one process at a time runs a given handler of a given delivery, on either store."""

import asyncio
import socket
import subprocess
import time

import pytest
from handlers_for_tests.concurrency import overlaps, starts
from support.live_server import wait_for
from support.memory_modal import memory_store

from receiver.delivery import DeliveryRecord, DeliveryStatus, HandlerState, HandlerStatus
from receiver.dispatch import Dispatcher
from receiver.registry import load_handlers
from receiver.runtimes.worker import owner_alive
from receiver.settings import Settings
from receiver.stores.sqlite import SqliteStore
from receiver.testing import rule_payload

HANDLER = "h"


@pytest.fixture(params=["sqlite", "modal_dict"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteStore(tmp_path / "claims.sqlite3")
    else:
        yield memory_store()


def accepted(store, delivery_id: str = "d1", body: bytes = b"{}", handler: str = HANDLER):
    record = DeliveryRecord(delivery_id, time.time(), handlers={handler: HandlerState()})
    asyncio.run(store.accept(record, body))


def run(coroutine):
    return asyncio.run(coroutine)


def soon(seconds: float = 30.0) -> float:
    return time.time() + seconds


def test_a_claimed_attempt_is_refused_to_every_other_owner_until_it_ends(store):
    accepted(store)
    assert run(store.start_attempt("d1", HANDLER, "a", soon())) == 1
    assert run(store.start_attempt("d1", HANDLER, "b", soon())) is None
    assert run(store.renew("d1", HANDLER, "b", soon())) is False
    assert run(store.renew("d1", HANDLER, "a", soon())) is True
    # a retry waits out its backoff under the same claim: still a's
    assert run(store.finish_attempt("d1", HANDLER, "a", "boom", final=False, hold_until=soon()))
    assert run(store.start_attempt("d1", HANDLER, "b", soon())) is None
    assert run(store.start_attempt("d1", HANDLER, "a", soon())) == 2
    assert run(store.finish_attempt("d1", HANDLER, "a", None, final=False))
    assert run(store.start_attempt("d1", HANDLER, "b", soon())) is None  # done: nothing to run
    state = run(store.get("d1")).handlers[HANDLER]
    assert (state.status, state.attempts) == (HandlerStatus.DONE, 2)


def test_an_expired_claim_passes_to_the_next_owner_and_the_late_one_records_nothing(store):
    accepted(store)
    assert run(store.start_attempt("d1", HANDLER, "crashed", time.time() + 0.05)) == 1
    time.sleep(0.1)
    assert run(store.start_attempt("d1", HANDLER, "next", soon())) == 2
    assert run(store.finish_attempt("d1", HANDLER, "crashed", None, final=False)) is False
    assert run(store.renew("d1", HANDLER, "crashed", soon())) is False
    assert run(store.get("d1")).handlers[HANDLER].status is HandlerStatus.PENDING
    assert run(store.finish_attempt("d1", HANDLER, "next", None, final=False)) is True
    assert run(store.get("d1")).handlers[HANDLER].status is HandlerStatus.DONE


def test_a_released_claim_is_free_at_once(store):
    accepted(store)
    assert run(store.start_attempt("d1", HANDLER, "a", soon())) == 1
    assert run(store.finish_attempt("d1", HANDLER, "a", "boom", final=False)) is True
    assert run(store.start_attempt("d1", HANDLER, "b", soon())) == 2


def test_claims_of_a_local_process_that_is_gone_are_released(tmp_path):
    store = SqliteStore(tmp_path / "claims.sqlite3")
    accepted(store)
    gone = f"{socket.gethostname()}:{2**22 + 7}:dead"  # above Linux's pid_max
    assert not owner_alive(gone) and owner_alive(f"{socket.gethostname()}:1:init")
    assert owner_alive("another-host:1:x")
    assert run(store.start_attempt("d1", HANDLER, gone, soon())) == 1
    assert run(store.start_attempt("d1", HANDLER, "b", soon())) is None
    assert store.release_dead_claims(owner_alive) == 1
    assert run(store.start_attempt("d1", HANDLER, "b", soon())) == 2


def test_a_process_that_exited_but_was_never_reaped_counts_as_gone():
    """A killed server's worker can linger as a zombie (nobody waits for it): its claims
    are released all the same."""
    child = subprocess.Popen(["true"])
    try:
        assert wait_for(lambda: not owner_alive(f"{socket.gethostname()}:{child.pid}:w"), 5)
    finally:
        child.wait()


def test_two_dispatchers_on_one_delivery_never_run_its_handler_at_once(
    store, monkeypatch, tmp_path
):
    """Two processes (two ``process`` calls, a sweep and a replay) take the same delivery
    at the same moment: the handler runs once, and both report what the store says."""
    notes = tmp_path / "concurrency.txt"
    monkeypatch.setenv("TEST_CONCURRENCY_PATH", str(notes))
    monkeypatch.setenv("CONCURRENCY_SECONDS", "0.3")
    [handler] = load_handlers(("handlers_for_tests.concurrency",))
    accepted(store, body=rule_payload().model_dump_json().encode(), handler=handler.name)
    settings = Settings(secrets=("x" * 20,), lease_seconds=5)

    async def both() -> list:
        first, second = (Dispatcher(store, [handler], settings) for _ in range(2))
        return await asyncio.gather(first.process("d1"), second.process("d1"))

    records = run(both())
    assert (starts(notes), overlaps(notes)) == ({"d1": 1}, {})
    assert {record.status for record in records} <= {DeliveryStatus.DONE, DeliveryStatus.PENDING}
    state = run(store.get("d1")).handlers[handler.name]
    assert (state.status, state.attempts) == (HandlerStatus.DONE, 1)


def test_each_failed_attempt_is_remembered_the_last_20_and_a_success_adds_none(store):
    """The console shows a handler's attempts: when each failed, and why."""
    from receiver.delivery import MAX_FAILURES_KEPT

    accepted(store)
    for n in range(1, 26):
        run(store.start_attempt("d1", HANDLER, "w", time.time() + 30))
        run(store.finish_attempt("d1", HANDLER, "w", f"error {n}", final=True))
        run(store.reset("d1"))  # a replay: the history stays
    failures = run(store.get("d1")).handlers[HANDLER].failures
    assert [f["error"] for f in failures] == [f"error {n}" for n in range(6, 26)]
    assert len(failures) == MAX_FAILURES_KEPT and all(f["attempt"] == 1 for f in failures)
    assert failures[0]["at"] <= failures[-1]["at"] <= time.time()
    run(store.start_attempt("d1", HANDLER, "w", time.time() + 30))
    run(store.finish_attempt("d1", HANDLER, "w", None, final=False))
    state = run(store.get("d1")).handlers[HANDLER]
    assert state.status is HandlerStatus.DONE and state.failures == failures
