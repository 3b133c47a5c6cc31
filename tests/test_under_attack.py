"""What a hostile sender or a busy operator could break, each through the real server."""

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from conftest import HEADER
from support.live_server import wait_for
from support.payloads import payload_with_runs, unique_body

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
