"""Handlers run isolated from each other, are retried with backoff, and end dead or done."""

import asyncio
import logging

from conftest import HEADER, drain, read_calls
from support.payloads import unique_body

from receiver.cli.replay import plan_for, run_here
from receiver.delivery import DeliveryStatus, HandlerStatus
from receiver.dispatch import Dispatcher, HandlerContext
from receiver.registry import load_handlers
from receiver.settings import Settings

RECORDING = "handlers_for_tests.recording"
FLAKY = "handlers_for_tests.flaky"
BROKEN = "handlers_for_tests.broken_until_fixed"


def post(client, body):
    response = client.post("/", content=body, headers=HEADER)
    assert response.status_code == 202
    return response.json()["delivery_id"]


def test_one_handler_raising_does_not_stop_the_others(
    make_settings, open_client, record_path, capfd, caplog
):
    settings = make_settings(handlers=(BROKEN, RECORDING), max_attempts=1)
    caplog.set_level(logging.INFO)  # the worker process logs at the server's level
    with open_client(settings) as client:
        delivery_id = post(client, unique_body())
        drain(client)
        record = client.portal.call(client.app.state.store.get, delivery_id)
    assert record.handlers[RECORDING].status is HandlerStatus.DONE
    assert record.handlers[BROKEN].status is HandlerStatus.FAILED
    assert "RuntimeError: downstream rejected the payload" in record.handlers[BROKEN].last_error
    assert (RECORDING, delivery_id, 1, "ok") in read_calls(record_path)
    worker_log = capfd.readouterr().err  # the worker process logs to the server's stderr
    assert f"delivery={delivery_id} handler={RECORDING} outcome=done" in worker_log
    assert f"delivery={delivery_id} handler={BROKEN} outcome=failed" in worker_log


def test_a_handler_failing_twice_is_done_after_three_attempts_and_its_sibling_ran_once(
    make_settings, open_client, record_path
):
    with open_client(make_settings(handlers=(FLAKY, RECORDING))) as client:
        delivery_id = post(client, unique_body())
        drain(client)
        record = client.portal.call(client.app.state.store.get, delivery_id)
    assert record.status is DeliveryStatus.DONE
    assert record.handlers[FLAKY].attempts == 3
    calls = read_calls(record_path)
    assert [c for c in calls if c[0] == FLAKY] == [
        (FLAKY, delivery_id, 1, "failed"),
        (FLAKY, delivery_id, 2, "failed"),
        (FLAKY, delivery_id, 3, "ok"),
    ]
    assert [c for c in calls if c[0] == RECORDING] == [(RECORDING, delivery_id, 1, "ok")]


def test_retries_wait_with_exponential_backoff(make_settings, tmp_path):
    settings = make_settings(handlers=(FLAKY,), retry_base_seconds=1.5, env={"FLAKY_FAILURES": "3"})
    from receiver.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "backoff.sqlite3")
    waits = []

    async def fake_sleep(seconds):
        waits.append(seconds)

    dispatcher = Dispatcher(store, load_handlers(settings.handlers), settings, sleep=fake_sleep)
    from receiver.delivery import DeliveryRecord, HandlerState

    body = unique_body()
    asyncio.run(
        store.accept(DeliveryRecord("d1", 0.0, runs=1, handlers={FLAKY: HandlerState()}), body)
    )
    record = asyncio.run(dispatcher.process("d1"))
    assert record.status is DeliveryStatus.DONE
    assert waits == [1.5, 3.0, 6.0]


def test_a_handler_that_always_fails_ends_dead_and_a_replay_after_the_fix_completes_it(
    make_settings, open_client, record_path, tmp_path, capfd
):
    marker = tmp_path / "fixed"
    settings = make_settings(
        handlers=(BROKEN, RECORDING), max_attempts=3, env={"FIX_MARKER": str(marker)}
    )
    with open_client(settings) as client:
        delivery_id = post(client, unique_body())
        drain(client)
        store = client.app.state.store
        record = client.portal.call(store.get, delivery_id)
    assert record.status is DeliveryStatus.DEAD
    assert record.handlers[BROKEN].attempts == 3
    assert asyncio.run(store.dead()) == [delivery_id]
    assert (
        f"delivery={delivery_id} dead: {BROKEN} failed after 3 attempts" in capfd.readouterr().err
    )

    marker.touch()
    dispatcher = Dispatcher(store, load_handlers(settings.handlers), settings)
    plan = asyncio.run(plan_for(store, ids=[delivery_id]))
    [replayed] = asyncio.run(run_here(dispatcher, plan))
    assert replayed.status is DeliveryStatus.DONE
    assert asyncio.run(store.dead()) == []
    calls = read_calls(record_path)
    assert [c for c in calls if c[0] == BROKEN][-1] == (BROKEN, delivery_id, 1, "ok")
    assert len([c for c in calls if c[0] == RECORDING]) == 1


def test_run_keys_are_stable_per_handler_and_run_and_differ_between_them():
    def context(handler, delivery):
        return HandlerContext(
            delivery, handler, 1, Settings(), logging.LoggerAdapter(logging.getLogger())
        )

    a = context("handlers.a", "delivery-1")
    assert a.run_key("run-1") == context("handlers.a", "delivery-2").run_key("run-1")
    assert a.run_key("run-1") != a.run_key("run-2")
    assert a.run_key("run-1") != context("handlers.b", "delivery-1").run_key("run-1")
    assert a.run_key("run-1", scope="x") != a.run_key("run-1")
