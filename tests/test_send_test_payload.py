"""scripts/send_test_payload.py against a real local server."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import HEADER, SECRET

ROOT = Path(__file__).resolve().parents[1]


def send(*args, env=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "send_test_payload.py"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_sample_body_is_sent_with_the_secret_in_the_url(live_server):
    server = live_server()
    result = send(f"{server.url}?secret={SECRET}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("202 in ")
    assert '"duplicate":false' in result.stdout


def test_a_synthetic_batch_is_sent_with_the_secret_in_the_header(live_server):
    server = live_server()
    result = send(server.url, "--runs", "25", "--header", env={"LS_WEBHOOK": SECRET})
    assert result.returncode == 0, result.stderr
    delivery_id = result.stdout.split('"delivery_id":"')[1].split('"')[0]
    status = httpx.get(f"{server.url}deliveries/{delivery_id}", headers=HEADER).json()
    assert status["runs"] == 25


def test_a_refused_delivery_exits_1(live_server):
    server = live_server()
    result = send(f"{server.url}?secret=wrong")
    assert result.returncode == 1
    assert result.stdout.startswith("401 in ")
