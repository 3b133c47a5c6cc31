"""Nothing accepted is lost, nothing is processed twice: the promises of the README."""

import sqlite3
import threading
import time

import httpx
from conftest import HEADER, drain, read_calls
from support.langsmith_sender import deliver
from support.live_server import free_port, wait_for
from support.payloads import unique_body

from receiver.delivery import DeliveryStatus, derive_delivery_id


def test_a_duplicate_body_is_acknowledged_again_and_its_handlers_run_once(
    make_settings, open_client, record_path
):
    body = unique_body()
    with open_client(make_settings()) as client:
        answers = [client.post("/", content=body, headers=HEADER) for _ in range(3)]
        drain(client)
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]
    assert len({a.json()["delivery_id"] for a in answers}) == 1
    assert len(read_calls(record_path)) == 1


def test_concurrent_copies_of_one_body_run_the_handlers_once(
    make_settings, open_client, record_path
):
    body = unique_body()
    with open_client(make_settings()) as client:
        results = []

        def send():
            results.append(client.post("/", content=body, headers=HEADER).json()["duplicate"])

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        drain(client)
    assert sorted(results) == [False] + [True] * 7
    assert len(read_calls(record_path)) == 1


def test_redeliveries_by_a_langsmith_sender_are_processed_once(live_server, record_path):
    server = live_server()
    body = unique_body()
    first = deliver(server.url, body, HEADER)
    second = deliver(server.url, body, HEADER)
    assert first.statuses == second.statuses == [202]
    delivery_id = derive_delivery_id(body)
    done = lambda: httpx.get(f"{server.url}deliveries/{delivery_id}", headers=HEADER).json()  # noqa: E731
    assert wait_for(lambda: done()["status"] == "done")
    assert len(read_calls(record_path)) == 1


def test_an_unwritable_store_answers_503_and_writes_nothing(
    make_settings, open_client, record_path
):
    settings = make_settings(store_busy_seconds=0.2)
    body = unique_body()
    with open_client(settings) as client:
        blocker = sqlite3.connect(settings.store_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            refused = client.post("/", content=body, headers=HEADER)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert refused.status_code == 503
        assert "retry" in refused.json()["error"]
        assert client.portal.call(client.app.state.store.recent) == []

        accepted = client.post("/", content=body, headers=HEADER)
        drain(client)
    assert (accepted.status_code, accepted.json()["duplicate"]) == (202, False)
    assert len(read_calls(record_path)) == 1


def test_a_failure_midway_through_recording_leaves_no_half_written_delivery(
    make_settings, open_client
):
    settings = make_settings()
    with open_client(settings) as client:
        db = sqlite3.connect(settings.store_path, isolation_level=None)
        db.execute(
            "CREATE TRIGGER fail_second_write BEFORE INSERT ON handler_states"
            " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
        body = unique_body()
        assert client.post("/", content=body, headers=HEADER).status_code == 503
        assert db.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)
        db.execute("DROP TRIGGER fail_second_write")
        db.close()
        assert client.post("/", content=body, headers=HEADER).status_code == 202


def test_a_langsmith_sender_retries_503s_and_a_later_delivery_gets_through(
    live_server, record_path
):
    server = live_server(env={"WEBHOOK_STORE_BUSY_SECONDS": "0.2"})
    store_path = server.env["WEBHOOK_STORE_PATH"]
    body = unique_body()
    blocker = sqlite3.connect(store_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        refused = deliver(server.url, body, HEADER, backoff=0.05)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert refused.statuses == [503, 503, 503]  # the first try and LangSmith's 2 retries
    assert deliver(server.url, body, HEADER).statuses == [202]
    status = httpx.get(f"{server.url}deliveries/{derive_delivery_id(body)}", headers=HEADER)
    assert status.status_code == 200


def test_the_sender_retries_failed_connections_twice():
    result = deliver(f"http://127.0.0.1:{free_port()}/", b"{}", backoff=0.01)
    assert result.statuses == [None, None, None]
    assert not result.delivered and not result.timed_out


def test_deliveries_are_listed_newest_first_with_their_status(make_settings, open_client):
    with open_client(make_settings()) as client:
        ids = [
            client.post("/", content=unique_body(), headers=HEADER).json()["delivery_id"]
            for _ in range(3)
        ]
        drain(client)
        recent = client.portal.call(client.app.state.store.recent, 2)
    assert [record.id for record in recent] == ids[::-1][:2]
    assert all(record.status is DeliveryStatus.DONE for record in recent)


def test_a_delivery_held_up_past_the_deadline_is_503_then_recorded_processed_once(
    make_settings, open_client, record_path, sample_body
):
    """Another process holds the store's lock past the ack deadline: the sender gets 503
    in time (and retries); the commit still lands once the lock is free, the handler runs
    once, and the retry is a duplicate."""
    settings = make_settings(ack_deadline_seconds=0.2, store_busy_seconds=5.0)
    with open_client(settings) as client:
        other = sqlite3.connect(settings.store_path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(1.0, other.execute, ["COMMIT"])
        release.start()
        late = client.post("/", content=sample_body, headers=HEADER)
        assert client.get("/healthz").status_code == 200  # the loop was never blocked
        release.join()
        assert wait_for(lambda: read_calls(record_path), timeout=10)  # recorded, processed
        retry = client.post("/", content=sample_body, headers=HEADER)
        drain(client)
    assert late.status_code == 503
    assert (retry.status_code, retry.json()["duplicate"]) == (202, True)
    assert [call[3] for call in read_calls(record_path)] == ["ok"]


def test_each_delivery_held_up_gets_its_own_deadline(make_settings, open_client, record_path):
    """Deliveries arriving one after another behind a held lock are each answered 503 at
    their own deadline (one timer serves them all), and all are recorded and processed
    once the lock is free."""
    settings = make_settings(ack_deadline_seconds=0.3, store_busy_seconds=5.0)
    bodies = [unique_body() for _ in range(3)]
    with open_client(settings) as client:
        other = sqlite3.connect(settings.store_path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        answers: dict[int, tuple[int, float]] = {}

        def send(index: int) -> None:
            time.sleep(0.1 * index)  # arrive 100 ms apart
            started = time.monotonic()
            status = client.post("/", content=bodies[index], headers=HEADER).status_code
            answers[index] = (status, time.monotonic() - started)

        threads = [threading.Thread(target=send, args=(index,)) for index in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        other.execute("COMMIT")
        assert wait_for(lambda: len(read_calls(record_path)) == 3, timeout=10)
        drain(client)
    assert [answers[index][0] for index in range(3)] == [503, 503, 503]
    assert all(0.25 < took < 1.0 for _, took in answers.values()), answers
    assert len(read_calls(record_path)) == 3
