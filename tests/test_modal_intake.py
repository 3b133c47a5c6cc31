"""The acknowledgement on Modal: index, record and spawn in two round trips, bounded by the
ack deadline; a duplicate in one, without uploading its body again."""

import asyncio
import time

import httpx
import pytest
from conftest import HEADER, SECRET
from support.memory_modal import Faults, Spawner, memory_store
from support.payloads import unique_body

from receiver.delivery import derive_delivery_id
from receiver.runtimes.modal import create_modal_app
from receiver.settings import Settings

LATENCY = 0.02  # added to every Modal call


def post(app, body: bytes) -> tuple[httpx.Response, float]:
    async def send() -> tuple[httpx.Response, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            started = time.perf_counter()
            response = await client.post("/", content=body, headers=HEADER)
            return response, time.perf_counter() - started

    # The outer bound only turns a hang into a failure; the edge's own deadline answers.
    return asyncio.run(asyncio.wait_for(send(), timeout=10))


def receiver(faults: Faults, **options):
    store = memory_store(faults)
    spawner = Spawner(faults)
    settings = Settings(secrets=(SECRET,), handlers=("handlers.log_runs",), **options)
    return create_modal_app(settings, store, spawner), store, spawner


def test_a_new_delivery_takes_two_round_trips_and_a_duplicate_one():
    faults = Faults(latency=LATENCY)
    app, _, spawner = receiver(faults)
    body = unique_body()
    post(app, unique_body())  # warm: the first request pays for imports and the app start
    faults.calls.clear()
    first, first_took = post(app, body)
    assert (first.status_code, first.json()["duplicate"]) == (202, False)
    assert first_took < 3 * LATENCY
    calls_for_new = list(faults.calls)
    faults.calls.clear()
    again, again_took = post(app, body)
    assert (again.status_code, again.json()["duplicate"]) == (202, True)
    assert again_took < 2 * LATENCY
    delivery_id = derive_delivery_id(body)
    # the duplicate's body was not uploaded again: no write of its record, no second spawn
    assert ("put", f"delivery:{delivery_id}") in calls_for_new
    assert ("put", f"delivery:{delivery_id}") not in faults.calls
    assert spawner.spawned.count(delivery_id) == 1


@pytest.mark.parametrize(
    ("method", "when", "key"),
    [
        ("contains", "before", "delivery:"),
        ("queue.put", "before", "b"),
        ("queue.put", "after", "b"),
        ("put", "before", "delivery:"),
        ("put", "after", "delivery:"),
    ],
)
def test_a_failure_before_the_record_is_known_to_be_indexed_and_written_is_503(method, when, key):
    faults = Faults()
    faults.fail(method, when=when, key=key)
    app = receiver(faults)[0]
    response, _ = post(app, unique_body())
    assert response.status_code == 503
    assert response.json() == {"error": "the delivery could not be recorded; retry later"}


def test_a_failed_spawn_is_still_202_the_delivery_is_indexed_and_recorded_for_the_sweeper():
    faults = Faults()
    faults.fail("spawn", when="before")
    app, store, spawner = receiver(faults)
    body = unique_body()
    response, _ = post(app, body)
    assert (response.status_code, response.json()["duplicate"]) == (202, False)
    assert spawner.spawned == []
    delivery_id = derive_delivery_id(body)
    assert asyncio.run(store.seen(delivery_id))
    assert [s["id"] for s in asyncio.run(store.unswept(ahead=False))] == [delivery_id]


@pytest.mark.parametrize("method", ["contains", "queue.put", "put", "spawn"])
def test_a_hanging_modal_call_is_503_at_the_ack_deadline_never_a_late_answer(method):
    faults = Faults()
    faults.fail(method, when="hang")
    app, _, _ = receiver(faults, ack_deadline_seconds=0.2)
    response, took = post(app, unique_body())
    assert response.status_code == 503
    assert took < 1.0


class RequestSizeError(Exception):
    """What modal raises when the control plane answers a write with 413."""


def test_a_body_the_dict_refuses_as_too_large_is_413_not_a_retry_that_cannot_help():
    faults = Faults()
    faults.fail("put", key="delivery:", error=RequestSizeError)
    app = receiver(faults)[0]
    response, _ = post(app, unique_body())
    assert response.status_code == 413
    assert response.json() == {"error": "the body is larger than the delivery store takes"}


def test_the_console_on_modal_lists_from_the_dict_and_replays_by_spawning_process():
    """The web function's console: its replay spawns `process` and notes the call, so the
    sweeper does not spawn another while it is queued."""
    from receiver.delivery import HandlerStatus

    token = "console-token-modal-9d1f3a"
    app, store, spawner = receiver(Faults(), console_token=token)
    answer, _ = post(app, unique_body())
    delivery_id = answer.json()["delivery_id"]

    async def die_then_replay() -> tuple[dict, dict]:
        await store.start_attempt(delivery_id, "handlers.log_runs", "test", time.time() + 30)
        await store.finish_attempt(delivery_id, "handlers.log_runs", "test", "boom", final=True)
        bearer = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            listed = (await client.get("/api/deliveries?status=dead", headers=bearer)).json()
            replayed = await client.post("/api/replay", headers=bearer, json={"status": "dead"})
            return listed, replayed.json()

    listed, replayed = asyncio.run(die_then_replay())
    assert [d["id"] for d in listed["deliveries"]] == [delivery_id]
    assert replayed["replayed"] == [delivery_id]
    assert spawner.spawned == [delivery_id, delivery_id]  # on arrival, then the replay
    record = asyncio.run(store.get(delivery_id))
    assert record.handlers["handlers.log_runs"].status is HandlerStatus.PENDING
    assert asyncio.run(store.call_of(delivery_id)) == "fc-2"
