"""On Modal, every acknowledged delivery reaches ``done`` or ``dead`` through the sweeper,
whatever step fails, and no handler attempt ever runs twice at once.

A small simulation of Modal: the Dict and Queue fakes inject faults; ``spawn`` queues a
call that the test then runs (``process``'s real body), lets die after its retries, or
leaves queued; the sweeper is the real one, run at moments the test chooses.
"""

import asyncio
import time

import httpx
import pytest
from conftest import HEADER, SECRET
from handlers_for_tests.concurrency import overlaps, starts
from support.memory_modal import Faults, memory_store
from support.payloads import unique_body

from receiver.delivery import DeliveryRecord, DeliveryStatus, HandlerState, derive_delivery_id
from receiver.runtimes import sweeper
from receiver.runtimes.modal import create_modal_app, process_delivery
from receiver.settings import Settings
from receiver.stores.modal_dict import BUCKET_SECONDS, RECHECK_SECONDS, bucket_of, summary_of

HANDLER = "handlers_for_tests.concurrency"


class ModalSim:
    """Spawned ``process`` calls, run (or killed) when the test says."""

    def __init__(self, faults: Faults, settings: Settings) -> None:
        self.faults, self.settings = faults, settings
        self.store = memory_store(faults)
        self.calls: dict[str, list[str]] = {}  # call id -> [delivery id, state]
        self.clock = time.time()

    async def spawn(self, delivery_id: str):
        def start():
            call_id = f"fc-{len(self.calls) + 1}"
            self.calls[call_id] = [delivery_id, "queued"]
            return type("Call", (), {"object_id": call_id})()

        return await self.faults.run("spawn", delivery_id, start)

    async def call_alive(self, call_id: str) -> bool:
        return self.calls[call_id][1] == "queued"

    def queued(self) -> list[str]:
        return [call_id for call_id, (_, state) in self.calls.items() if state == "queued"]

    def run_calls(self, *, dying: int = 0) -> None:
        """Run the queued calls; the first ``dying`` of them die after their retries."""
        for n, call_id in enumerate(self.queued()):
            delivery_id = self.calls[call_id][0]
            if n >= dying:
                asyncio.run(process_delivery(self.settings, self.store, delivery_id, call_id))
            self.calls[call_id][1] = "ended"

    def sweep(self) -> sweeper.SweepReport:
        """A sweeper run a recheck later than the last one (a minute's runs, compressed)."""
        self.clock += RECHECK_SECONDS + sweeper.GRACE_SECONDS + BUCKET_SECONDS
        return asyncio.run(
            sweeper.sweep(
                self.store,
                spawn=self.spawn,
                call_alive=self.call_alive,
                retention_days=30,
                now=self.clock,
            )
        )

    def send(self, body: bytes, attempts: int = 4) -> int:
        """Deliver like LangSmith: retry a 5xx answer; return the last status."""
        app = create_modal_app(self.settings, self.store, self.spawn)

        async def post() -> int:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                for _ in range(attempts):
                    status = (await client.post("/", content=body, headers=HEADER)).status_code
                    if status < 500:
                        return status
                return status

        return asyncio.run(post())

    def status(self, delivery_id: str) -> DeliveryStatus:
        return asyncio.run(self.store.get(delivery_id)).status


@pytest.fixture
def settings(monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_CONCURRENCY_PATH", str(tmp_path / "attempts"))
    monkeypatch.setenv("CONCURRENCY_SECONDS", "0.05")
    return Settings(
        secrets=(SECRET,), handlers=(HANDLER,), lease_seconds=1, retry_base_seconds=0.01
    )


FAILURES = {
    "index put fails": [("queue.put", "before", "b")],
    "index put lands, answer lost": [("queue.put", "after", "b")],
    "record put fails": [("put", "before", "delivery:")],
    "record put lands, answer lost": [("put", "after", "delivery:")],
    "spawn fails": [("spawn", "before", "")],
    "spawn starts, answer lost": [("spawn", "after", "")],
    "spawn fails, the redelivery's too": [("spawn", "before", ""), ("spawn", "before", "")],
    "the duplicate check fails": [("contains", "before", "delivery:")],
}


@pytest.mark.parametrize("faults_at", FAILURES.values(), ids=FAILURES.keys())
@pytest.mark.parametrize("dying", [0, 1], ids=["calls run", "first call dies after retries"])
def test_every_acknowledged_delivery_is_done_through_the_sweeper(
    settings, tmp_path, faults_at, dying
):
    faults = Faults()
    for method, when, key in faults_at:
        faults.fail(method, when=when, key=key)
    sim = ModalSim(faults, settings)
    bodies = [unique_body() for _ in range(3)]
    assert [sim.send(body) for body in bodies] == [202, 202, 202]
    sim.run_calls(dying=dying)
    for _ in range(3):
        sim.sweep()
        sim.run_calls()
    ids = [derive_delivery_id(body) for body in bodies]
    assert [sim.status(delivery_id) for delivery_id in ids] == [DeliveryStatus.DONE] * 3
    attempts = tmp_path / "attempts"
    assert overlaps(attempts) == {}
    assert all(starts(attempts)[delivery_id] >= 1 for delivery_id in ids)
    assert sim.queued() == []  # nothing left running
    assert asyncio.run(sim.store.unfinished()) == []


def test_a_container_dying_mid_handler_is_resumed_after_its_claim_expires(settings, tmp_path):
    sim = ModalSim(Faults(), settings)
    body = unique_body()
    assert sim.send(body) == 202
    delivery_id = derive_delivery_id(body)
    # the call's container starts the handler, then dies; Modal's retries die too
    claimed = asyncio.run(sim.store.start_attempt(delivery_id, HANDLER, "dead", time.time() + 0.5))
    assert claimed == 1
    sim.run_calls(dying=1)
    report = sim.sweep()
    assert report.resumed == [delivery_id]
    sim.run_calls()
    assert sim.status(delivery_id) is DeliveryStatus.DONE
    assert asyncio.run(sim.store.get(delivery_id)).handlers[HANDLER].attempts == 2


def test_a_live_call_is_left_alone_and_a_spawn_the_sweeper_made_is_not_repeated(settings):
    sim = ModalSim(Faults(), settings)
    body = unique_body()
    assert sim.send(body) == 202
    assert sim.sweep().resumed == []  # the web path's call is still queued: alive
    sim.calls["fc-1"][1] = "ended"  # it died without running
    assert sim.sweep().resumed == [derive_delivery_id(body)]
    assert sim.sweep().resumed == []  # the sweeper's own call (noted) is alive
    sim.run_calls()
    assert sim.status(derive_delivery_id(body)) is DeliveryStatus.DONE


def test_dead_letters_are_kept_revived_by_a_replay_and_removed_after_the_retention(
    monkeypatch, settings, tmp_path
):
    monkeypatch.setenv("TEST_RECORD_PATH", str(tmp_path / "calls"))
    broken = "handlers_for_tests.broken_until_fixed"
    dead_settings = settings.model_copy(update={"handlers": (broken,), "max_attempts": 1})
    sim = ModalSim(Faults(), dead_settings)
    bodies = [unique_body() for _ in range(2)]
    ids = [derive_delivery_id(body) for body in bodies]
    assert [sim.send(body) for body in bodies] == [202, 202]
    sim.run_calls()
    report = sim.sweep()
    assert sorted(report.dead) == sorted(ids)
    assert sorted(asyncio.run(sim.store.dead())) == sorted(ids)

    # replay the first after the fix: reset, process, and the sweeper takes it off the list
    fixed = tmp_path / "fixed"
    fixed.touch()
    monkeypatch.setenv("FIX_MARKER", str(fixed))
    assert asyncio.run(sim.store.reset(ids[0])) == [broken]
    asyncio.run(process_delivery(dead_settings, sim.store, ids[0]))
    assert sim.sweep().revived == [ids[0]]
    assert asyncio.run(sim.store.dead()) == [ids[1]]

    # the other stays listed, past Modal's 7 days, until the retention ends
    sim.clock += 10 * 86400
    assert sim.sweep().purged == 0
    assert asyncio.run(sim.store.dead()) == [ids[1]]
    sim.clock += 25 * 86400
    assert sim.sweep().purged == 1
    assert asyncio.run(sim.store.dead()) == []
    assert asyncio.run(sim.store.get(ids[1])) is None


def test_listing_ten_thousand_deliveries_reads_a_page_not_every_delivery():
    """10,000 deliveries over 28 hours, swept into the listing: a page of 20 (newest, or of
    one route) costs the same few dozen calls as it would with 20 deliveries."""
    faults = Faults()
    store = memory_store(faults)
    first = time.time() - 10_000 * 10

    async def fill() -> None:
        for n in range(10_000):
            record = DeliveryRecord(
                f"d{n:05}", first + n * 10, routes=("odd",) if n % 2 else ("even",)
            )
            record.handlers = {"h": HandlerState()}
            await store.index(summary_of(record), record.received_at)
            await store.record(record, b"{}")
        await store.set_cursor(bucket_of(first))

    async def sweep_all() -> None:
        while (await sweeper.sweep(store, spawn=None, call_alive=None, retention_days=30)).buckets:
            pass

    asyncio.run(fill())
    # every delivery is pending and has no call: make them done, so the sweeper only lists
    done = {"status": "done", "attempts": 1, "last_error": None}
    for n in range(10_000):
        store.entries.put(f"handler:d{n:05}:h", done)
    asyncio.run(sweep_all())
    faults.calls.clear()
    page = asyncio.run(store.recent(20))
    assert [record.id for record in page] == [f"d{n:05}" for n in range(9_999, 9_979, -1)]
    newest_calls = len(faults.calls)
    faults.calls.clear()
    odd = asyncio.run(store.recent(20, route="odd"))
    assert [record.id for record in odd] == [f"d{n:05}" for n in range(9_999, 9_959, -2)]
    assert newest_calls < 100 and len(faults.calls) < 100


def test_a_call_spawned_alongside_the_record_waits_for_it_and_one_never_recorded_ends(
    monkeypatch, settings, tmp_path
):
    from receiver.runtimes import modal as modal_runtime

    sim = ModalSim(Faults(), settings)
    body = unique_body()
    delivery_id = derive_delivery_id(body)
    record = DeliveryRecord(delivery_id, time.time(), handlers={HANDLER: HandlerState()})

    async def record_later() -> dict:
        call = asyncio.create_task(process_delivery(settings, sim.store, delivery_id, "fc-9"))
        await asyncio.sleep(0.5)  # the Dict write lands after the call started
        await sim.store.record(record, body)
        return await call

    assert asyncio.run(record_later())["status"] == "done"
    assert starts(tmp_path / "attempts") == {delivery_id: 1}

    monkeypatch.setattr(modal_runtime, "RECORD_WAIT_SECONDS", 0.5)
    never = asyncio.run(process_delivery(settings, sim.store, "never-recorded"))
    assert never == {"id": "never-recorded", "status": "unknown"}
