"""Durable-before-acknowledged on Modal: the Dict record and the spawn both happen before 202."""

import asyncio
import time

import httpx
import pytest
from conftest import HEADER, SECRET
from starlette.testclient import TestClient
from support.memory_dict import MemoryDict
from support.payloads import unique_body

from receiver.delivery import DeliveryRecord, derive_delivery_id
from receiver.runtimes.modal import create_modal_app
from receiver.settings import Settings
from receiver.stores import modal_dict
from receiver.stores.modal_dict import ModalDictStore


class Spawner:
    """Records spawned delivery ids; fails the first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.spawned: list[str] = []

    async def __call__(self, delivery_id: str):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Modal control plane unreachable")
        self.spawned.append(delivery_id)
        return type("Call", (), {"object_id": f"fc-{len(self.spawned)}"})()


def client_for(entries, spawner):
    settings = Settings(secrets=(SECRET,), handlers=("handlers.log_runs",))
    return TestClient(create_modal_app(settings, entries, spawner))


def test_a_failed_spawn_is_503_and_the_retry_is_accepted_and_spawned():
    entries, spawner, body = MemoryDict(), Spawner(failures=1), unique_body()
    with client_for(entries, spawner) as client:
        assert client.post("/", content=body, headers=HEADER).status_code == 503
        retry = client.post("/", content=body, headers=HEADER)
    assert (retry.status_code, retry.json()["duplicate"]) == (202, False)
    assert spawner.spawned == [derive_delivery_id(body)]


def test_an_unreachable_dict_is_503_and_nothing_is_spawned():
    entries, spawner = MemoryDict(), Spawner()
    entries.fail_puts = True
    with client_for(entries, spawner) as client:
        assert client.post("/", content=unique_body(), headers=HEADER).status_code == 503
    assert spawner.spawned == []


def test_a_duplicate_arriving_while_the_first_copy_is_being_recorded_is_asked_to_retry():
    entries, spawner, body = MemoryDict(), Spawner(), unique_body()
    store = ModalDictStore(entries)
    settings = Settings(secrets=(SECRET,))
    asyncio.run(store.accept(DeliveryRecord(derive_delivery_id(body), time.time(), runs=1), body))
    with TestClient(create_modal_app(settings, entries, spawner)) as client:
        assert client.post("/", content=body, headers=HEADER).status_code == 503
    assert spawner.spawned == []


def test_a_record_whose_spawn_was_lost_is_spawned_by_a_later_redelivery(monkeypatch):
    entries, spawner, body = MemoryDict(), Spawner(), unique_body()
    monkeypatch.setattr(modal_dict, "SPAWN_GRACE_SECONDS", 0.0)
    record = DeliveryRecord(derive_delivery_id(body), 0.0, runs=1)
    asyncio.run(ModalDictStore(entries).accept(record, body))
    with client_for(entries, spawner) as client:
        response = client.post("/", content=body, headers=HEADER)
    assert response.status_code == 202
    assert spawner.spawned == [derive_delivery_id(body)]


@pytest.mark.parametrize("copies", [2, 5])
def test_redeliveries_after_the_spawn_are_202_without_spawning_again(copies):
    entries, spawner, body = MemoryDict(), Spawner(), unique_body()
    with client_for(entries, spawner) as client:
        answers = [client.post("/", content=body, headers=HEADER) for _ in range(copies)]
    assert [a.status_code for a in answers] == [202] * copies
    assert [a.json()["duplicate"] for a in answers] == [False] + [True] * (copies - 1)
    assert len(spawner.spawned) == 1


class HangingDict(MemoryDict):
    """A Dict whose writes never answer (a stalled Modal control plane)."""

    def __init__(self) -> None:
        super().__init__()

        async def hang(*args, **kwargs):
            await asyncio.Event().wait()

        self.put = type("Put", (), {"aio": staticmethod(hang)})()


def test_a_hanging_dict_is_503_at_the_ack_deadline_never_a_late_answer():
    settings = Settings(secrets=(SECRET,), ack_deadline_seconds=0.2)
    app = create_modal_app(settings, HangingDict(), Spawner())

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/", content=unique_body(), headers=HEADER)

    # The outer bound only turns a hang into a failure; the edge's own deadline answers.
    response = asyncio.run(asyncio.wait_for(post(), timeout=10))
    assert response.status_code == 503
    assert response.json() == {"error": "the delivery could not be recorded; retry later"}
