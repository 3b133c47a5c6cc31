"""A minute of everything at once against the real server, killed and restarted twice.

Not in the default run (``-m "not soak"`` in pyproject.toml); ``.ci/run`` runs it with
``uv run pytest -m soak``. Loopback only; it reports its counts on stdout.
"""

import asyncio
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import HEADER, SECRET
from handlers_for_tests.concurrency import overlaps, starts
from support.live_server import wait_for
from support.payloads import unique_body

from receiver.delivery import DeliveryStatus
from receiver.stores.sqlite import SqliteStore

pytestmark = pytest.mark.soak
ROOT = Path(__file__).resolve().parents[1]
SECONDS = 60
HOSTILE = [
    b"{nope",
    b"[1, 2]",
    b'{"rule_id": "x", "rule_id": "y", "runs": []}',
    b'{"runs": [{"id": 1, "id": 2}]}',
]


def test_a_minute_of_deliveries_attacks_replays_and_two_crashes(live_server, tmp_path):
    notes = tmp_path / "concurrency.txt"
    env = {
        "WEBHOOK_HANDLERS": "handlers_for_tests.concurrency",
        "TEST_CONCURRENCY_PATH": str(notes),
        "CONCURRENCY_SECONDS": "0.02",
        "WEBHOOK_READ_TIMEOUT_SECONDS": "2",
    }
    server = live_server(env=env)
    port, store_path = server.port, tmp_path / "live.sqlite3"
    accepted: set[str] = set()
    statuses: Counter = Counter()
    sent: list[bytes] = []
    stop = threading.Event()
    lock = threading.Lock()

    def post(body: bytes, headers: dict[str, str]) -> None:
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=headers)
        except httpx.TransportError:
            with lock:
                statuses["no answer (server down)"] += 1
            return
        with lock:
            statuses[answer.status_code] += 1
            if answer.status_code == 202:
                accepted.add(answer.json()["delivery_id"])

    def sender(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            roll = rng.random()
            if roll < 0.55:
                body = unique_body()
                sent.append(body)
                post(body, HEADER)
            elif roll < 0.75 and sent:
                post(rng.choice(sent), HEADER)  # a duplicate
            elif roll < 0.9:
                post(rng.choice(HOSTILE), HEADER)
            else:
                post(unique_body(), {"X-Webhook-Secret": "wrong-" + SECRET[::-1]})

    def loiterer() -> None:
        """Slow headers and silent sockets, a few at a time."""
        while not stop.is_set():
            held = []
            for _ in range(20):
                try:
                    connection = socket.create_connection(("127.0.0.1", port), timeout=1)
                    connection.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
                    held.append(connection)
                except OSError:
                    pass
            time.sleep(1)
            for connection in held:
                connection.close()

    def replayer() -> None:
        while not stop.wait(7):
            if accepted:
                subprocess.run(
                    [sys.executable, str(ROOT / "scripts" / "replay.py"), next(iter(accepted))],
                    env={
                        **os.environ,
                        **env,
                        "LS_WEBHOOK": SECRET,
                        "WEBHOOK_STORE_PATH": str(store_path),
                        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
                    },
                    capture_output=True,
                    timeout=60,
                )

    workers = [threading.Thread(target=sender, args=(seed,)) for seed in range(4)]
    workers += [threading.Thread(target=loiterer), threading.Thread(target=replayer)]
    for worker in workers:
        worker.start()
    peak_fds = peak_rss = 0
    started = time.monotonic()
    crashes = 0
    while time.monotonic() - started < SECONDS:
        time.sleep(0.5)
        pid = server.process.pid
        try:
            peak_fds = max(peak_fds, len(os.listdir(f"/proc/{pid}/fd")))
            status = Path(f"/proc/{pid}/status").read_text()
            peak_rss = max(peak_rss, int(status.split("VmRSS:")[1].split()[0]) // 1024)
        except OSError:
            pass
        if crashes < 2 and time.monotonic() - started > SECONDS * (crashes + 1) / 3:
            server.kill()
            crashes += 1
            server = live_server(env=env, port=port)
    stop.set()
    for worker in workers:
        worker.join()

    store = SqliteStore(store_path)
    assert wait_for(lambda: not _pending(store), timeout=60)
    records = {record.id: record for record in _all(store)}
    logs = "".join(path.read_text() for path in tmp_path.glob("server.log"))
    print(
        f"\nsoak: {dict(statuses)}; {len(accepted)} deliveries accepted, {crashes} crashes,"
        f" peak {peak_fds} descriptors, {peak_rss} MB"
    )
    assert accepted <= set(records)
    assert all(records[delivery].status is DeliveryStatus.DONE for delivery in accepted)
    assert overlaps(notes) == {}
    assert all(starts(notes).get(delivery, 0) >= 1 for delivery in accepted)
    assert not [s for s in statuses if isinstance(s, int) and s >= 500 and s != 503]
    assert statuses[202] > 100 and statuses[422] > 10 and statuses[401] > 10
    assert "Traceback" not in logs and SECRET not in logs
    assert peak_fds < 200 and peak_rss < 300


def _pending(store: SqliteStore) -> list[str]:
    return asyncio.run(store.unfinished())


def _all(store: SqliteStore) -> list:
    return asyncio.run(store.recent(1_000_000))
