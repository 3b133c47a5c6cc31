"""What a hostile sender or a busy operator could break, each through the real server."""

import asyncio
import contextlib
import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import HEADER
from handlers_for_tests.concurrency import overlaps, starts
from support.live_server import wait_for
from support.payloads import payload_with_runs, unique_body

from receiver.delivery import DeliveryRecord, HandlerState, HandlerStatus
from receiver.stores.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[1]

# Every code point str.splitlines() breaks a line on, besides "\n" and "\r".
LINE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def test_line_breaks_in_a_payload_never_split_a_log_line(live_server):
    """A run named with U+2028, U+0085, ... is logged on one line, its breaks escaped:
    a payload cannot forge a line of the receiver's log."""
    server = live_server(env={"WEBHOOK_HANDLERS": "handlers.log_runs"})
    forged = f"legit{LINE_BREAKS}2026-11-29 INFO receiver.http delivery=forged accepted"
    body = json.dumps(payload_with_runs(1, name=forged), ensure_ascii=False).encode()
    assert httpx.post(server.url, content=body, headers=HEADER).status_code == 202
    assert wait_for(lambda: "legit" in server.log(), timeout=10)
    log = server.log()
    assert not set(LINE_BREAKS) & set(log)
    [line] = [line for line in log.split("\n") if "legit" in line]
    assert "handlers.log_runs" in line and "\\u2028" in line and "\\u0085" in line


def corrupt_index(store: Path) -> None:
    """Overwrite the page of the index of delivery ids with garbage, as a bad disk would."""
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        [(root,)] = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_deliveries_1'"
        )
    with open(store, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(bytes(range(256)) * (page_size // 256))


def test_a_damaged_store_stops_start_up_with_what_is_wrong(live_server, tmp_path):
    """A store with a corrupt page does not start and answer 503 to every delivery: start-up
    runs an integrity check and names the damage."""
    store = tmp_path / "live.sqlite3"
    server = live_server()
    for _ in range(20):
        assert httpx.post(server.url, content=unique_body(), headers=HEADER).status_code == 202
    server.stop()
    corrupt_index(store)
    with pytest.raises(RuntimeError, match=r"delivery store .* is damaged"):
        live_server()


def test_healthz_says_when_the_store_cannot_record_deliveries(live_server, tmp_path):
    """/healthz probes a write the way an accept does (cached for a couple of seconds): when
    deliveries get 503, so does /healthz, saying why."""
    server = live_server()
    assert httpx.get(server.url + "healthz").json() == {"status": "ok"}
    with sqlite3.connect(tmp_path / "live.sqlite3") as db:
        db.execute(
            "CREATE TRIGGER broken BEFORE INSERT ON deliveries"
            " BEGIN SELECT RAISE(ABORT, 'database disk image is malformed'); END"
        )
    assert httpx.post(server.url, content=unique_body(), headers=HEADER).status_code == 503
    assert wait_for(lambda: httpx.get(server.url + "healthz").status_code == 503, timeout=5)
    answer = httpx.get(server.url + "healthz").json()
    assert answer["status"] == "unavailable" and "malformed" in answer["problem"]


@pytest.mark.parametrize(
    ("where", "key"),
    [("top", "runs"), ("run", "status"), ("nested", "question")],
)
def test_a_body_repeating_a_key_is_refused_with_the_key_named(live_server, where, key):
    """Parsers disagree on which copy of a repeated key wins: appending "runs": [] could
    show handlers no runs while a proxy or an auditor saw the real ones. Refused, 422."""
    server = live_server()
    text = json.dumps(payload_with_runs(1, status="error", inputs={"question": "q"}))
    if where == "top":
        text = text[:-1] + ', "runs": []}'
    elif where == "run":
        text = text.replace('"status": "error"', '"status": "error", "status": "success"')
    else:
        text = text.replace('"question": "q"', '"question": "q", "question": "r"')
    answer = httpx.post(server.url, content=text.encode(), headers=HEADER)
    assert answer.status_code == 422
    assert f'repeated key "{key}"' in answer.json()["error"]


def test_a_replay_beside_a_running_server_runs_each_handler_once_at_a_time(live_server, tmp_path):
    """The server's worker sweeps up a delivery that scripts/replay.py has just made pending
    and is running: the attempt is replay's (claimed), so the worker leaves it, and replay
    reports what the store holds."""
    store_path, notes = tmp_path / "live.sqlite3", tmp_path / "concurrency.txt"
    handler = "handlers_for_tests.concurrency"
    store = SqliteStore(store_path)
    record = DeliveryRecord("dead-1", time.time(), handlers={handler: HandlerState()})
    body = payload_with_runs(1)

    async def dead() -> None:
        await store.accept(record, json.dumps(body).encode())
        await store.start_attempt("dead-1", handler, "earlier", time.time() + 30)
        await store.finish_attempt("dead-1", handler, "earlier", "RuntimeError: down", final=True)

    asyncio.run(dead())
    env = {
        "WEBHOOK_HANDLERS": handler,
        "WEBHOOK_STORE_PATH": str(store_path),
        "TEST_CONCURRENCY_PATH": str(notes),
        "CONCURRENCY_SECONDS": "2",
    }
    replay = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "replay.py"), "dead-1"],
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert wait_for(lambda: starts(notes) == {"dead-1": 1}, timeout=20)
    server = live_server(env=env)  # its worker sweeps the store as it starts
    assert wait_for(lambda: "claimed by another process" in server.log(), timeout=10)
    out, _ = replay.communicate(timeout=30)
    assert replay.returncode == 0, out
    time.sleep(0.5)
    assert (starts(notes), overlaps(notes)) == ({"dead-1": 1}, {})
    state = asyncio.run(store.get("dead-1")).handlers[handler]
    assert (state.status, state.attempts) == (HandlerStatus.DONE, 1)
    assert "done" in out


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def children(pid: int) -> set[int]:
    return {
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    }


def test_three_maximum_bodies_of_tiny_runs_are_acknowledged_in_time_and_memory(
    live_server, tmp_path
):
    """Three 25 MiB bodies of 500,000 runs at once: each 202 within LangSmith's 5 s, /healthz
    answering all along (they are parsed in a process of their own, one at a time), the
    server's memory under four times the bodies, and the parser's bounded by one body's
    tree (about ten times the body for runs this small). No route matches them, so the
    worker stays out of the way."""
    routes = tmp_path / "routes.toml"
    routes.write_text(
        "[[routes]]\nname = 'other-rule'\nhandlers = ['handlers_for_tests.recording']\n"
        f"[routes.match]\nrule_id = ['{uuid.uuid4()}']\n"
    )
    server = live_server(env={"WEBHOOK_ROUTES": str(routes), "WEBHOOK_HANDLERS": ""})
    runs = [{"id": str(uuid.UUID(int=index + 1))} for index in range(500_000)]
    bodies = [
        json.dumps({**payload_with_runs(0), "runs": runs}, separators=(",", ":")).encode()
        for _ in range(3)
    ]
    del runs
    assert all(20 * 2**20 < len(body) <= 25 * 2**20 for body in bodies)
    pid = server.process.pid
    idle = rss_mib(pid)
    idle_children = {child: rss_mib(child) for child in children(pid)}  # worker, parser
    answers, slowest_health, peak, grown = [], [0.0], [idle], [0.0]

    def send(body: bytes) -> None:
        started = time.monotonic()
        status = httpx.post(server.url, content=body, headers=HEADER, timeout=30).status_code
        answers.append((status, time.monotonic() - started))

    senders = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for sender in senders:
        sender.start()
    while any(sender.is_alive() for sender in senders):
        started = time.monotonic()
        assert httpx.get(server.url + "healthz", timeout=5).status_code == 200
        slowest_health[0] = max(slowest_health[0], time.monotonic() - started)
        peak[0] = max(peak[0], rss_mib(pid))
        for child, before in idle_children.items():
            with contextlib.suppress(OSError):
                grown[0] = max(grown[0], rss_mib(child) - before)
        time.sleep(0.01)
    assert [status for status, _ in answers] == [202, 202, 202]
    assert max(took for _, took in answers) < 5, answers
    assert slowest_health[0] < 0.5, slowest_health  # seconds when parsed on the loop
    megabytes = [len(body) / 2**20 for body in bodies]
    assert peak[0] - idle < 4 * sum(megabytes), (idle, peak)
    assert 2 * max(megabytes) < grown[0] < 12 * max(megabytes), grown  # the parser's tree


def test_silent_and_slow_header_connections_are_closed_at_the_read_deadline(live_server):
    server = live_server(env={"WEBHOOK_READ_TIMEOUT_SECONDS": "1"})
    silent = socket.create_connection(("127.0.0.1", server.port))
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    for _ in range(8):  # a header byte every 0.25 s: never a whole request
        time.sleep(0.25)
        with contextlib.suppress(OSError):
            slow.sendall(b"X")
    for connection in (silent, slow):
        connection.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert connection.recv(1024) == b""  # closed by the server
        connection.close()
    assert time.monotonic() - started < 4


def test_a_delivery_gets_through_1100_idle_connections_on_1024_descriptors(live_server):
    """1,100 connections that send nothing, against a server allowed 1,024 descriptors: the
    oldest silent ones make room, a real delivery is acknowledged within 5 s, and the log
    has no traceback, just a warning."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"this test holds 1,100 sockets itself: its descriptor limit is {hard}")
    if soft < 1300:  # a soft limit of 1,024 is common: raise it (for this process only)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    server = live_server(fd_limit=1024)
    idle = []
    try:
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.5)
        started = time.monotonic()
        answer = httpx.post(server.url, content=unique_body(), headers=HEADER, timeout=5)
        assert answer.status_code == 202
        assert time.monotonic() - started < 5
    finally:
        for connection in idle:
            connection.close()
    log = server.log()
    assert "Traceback" not in log and "out of system resource" not in log
    assert "the cap (WEBHOOK_MAX_CONNECTIONS)" in log
