"""The real local server (scripts/serve_local.py under uvicorn on 127.0.0.1), end to end."""

import json
import socket
from pathlib import Path

import httpx
import pytest
from conftest import HEADER, SECRET, read_calls
from support.langsmith_sender import deliver
from support.live_server import uvicorn_in_thread, wait_for
from support.payloads import sample_payload, unique_body

from receiver.runtimes.local import create_local_app


def test_every_status_code_over_a_real_socket(live_server, sample_body, record_path):
    server = live_server(env={"WEBHOOK_MAX_BODY_BYTES": "4096"})
    url = server.url
    assert httpx.post(f"{url}?secret={SECRET}", content=sample_body).status_code == 202
    assert httpx.post(url, content=unique_body(), headers=HEADER).status_code == 202
    assert httpx.post(url, content=sample_body).status_code == 401
    assert httpx.post(f"{url}?secret=nope", content=sample_body).status_code == 401
    assert httpx.post(url, content=b"{nope", headers=HEADER).status_code == 422
    too_big = json.dumps({**sample_payload(), "padding": "x" * 5000}).encode()
    assert httpx.post(url, content=too_big, headers=HEADER).status_code == 413
    assert httpx.get(url + "healthz").status_code == 200
    assert wait_for(lambda: len(read_calls(record_path)) == 2)


def test_no_configured_secret_is_503_on_every_post_over_a_real_socket(make_settings, sample_body):
    with uvicorn_in_thread(create_local_app(make_settings(secrets=()))) as url:
        assert httpx.post(url, content=sample_body).status_code == 503
        assert httpx.post(url, content=sample_body, headers=HEADER).status_code == 503
        assert httpx.get(url + "healthz").status_code == 200


def test_the_secret_appears_in_no_log_line_even_the_access_log(live_server, sample_body):
    server = live_server()
    httpx.post(f"{server.url}?secret={SECRET}", content=sample_body)
    httpx.post(f"{server.url}?secret={SECRET}-wrong-guess", content=sample_body)
    httpx.get(f"{server.url}deliveries/x?secret={SECRET}")
    encoded = "".join(f"%{byte:02X}" for byte in SECRET.encode())
    disguised = httpx.post(f"{server.url}?%73ecret={encoded}", content=unique_body())
    assert disguised.status_code == 202  # the app decodes the name and the value alike
    assert wait_for(lambda: 'POST /?%73ecret=*** HTTP/1.1" 202' in server.log(), timeout=10)
    assert wait_for(lambda: 'POST /?secret=*** HTTP/1.1" 202' in server.log(), timeout=10)
    log = server.log()
    assert "401" in log
    assert SECRET not in log
    assert encoded not in log


def test_a_generated_secret_is_printed_once_with_the_url_and_works(live_server, sample_body):
    server = live_server(env={"LS_WEBHOOK": ""})
    [line] = [line for line in server.log().splitlines() if "?secret=" in line]
    url = line.strip()
    assert url.startswith(server.url)
    assert httpx.post(url, content=sample_body).status_code == 202


def test_a_langsmith_style_sender_gets_202_and_never_retries_on_4xx(live_server, sample_body):
    server = live_server()
    accepted = deliver(server.url, sample_body, HEADER)
    assert accepted.delivered and accepted.statuses == [202]
    refused = deliver(server.url, sample_body, {"X-Webhook-Secret": "wrong"})
    assert refused.statuses == [401]


def test_a_server_killed_right_after_202_finishes_the_delivery_when_started_again(
    live_server, record_path
):
    slow = {"WEBHOOK_HANDLERS": "handlers_for_tests.slow,handlers_for_tests.recording"}
    first = live_server(env={**slow, "SLOW_SECONDS": "60"})
    response = httpx.post(first.url, content=unique_body(), headers=HEADER)
    assert response.status_code == 202
    delivery_id = response.json()["delivery_id"]

    def handler_status(server, name):
        status = httpx.get(f"{server.url}deliveries/{delivery_id}", headers=HEADER).json()
        return status["handlers"][name]["status"]

    # Kill once the sibling is recorded as done (it wrote its line before that: a kill in
    # between would rightly run it again, at least once) while the slow one is mid-run.
    assert wait_for(lambda: handler_status(first, "handlers_for_tests.recording") == "done")
    first.kill()
    assert not any(call[0] == "handlers_for_tests.slow" for call in read_calls(record_path))

    second = live_server(env={**slow, "SLOW_SECONDS": "0"}, port=first.port)
    assert wait_for(
        lambda: ("handlers_for_tests.slow", delivery_id, 2, "ok") in read_calls(record_path)
    )
    # its outcome is written just after it returns
    assert wait_for(
        lambda: (
            httpx.get(f"{second.url}deliveries/{delivery_id}", headers=HEADER).json()["status"]
            == "done"
        )
    )
    recording_calls = [c for c in read_calls(record_path) if c[0] == "handlers_for_tests.recording"]
    assert len(recording_calls) == 1  # the sibling that had finished is not run again


def test_a_burst_of_200_is_acknowledged_within_5s_while_a_10s_handler_processes_all(
    live_server, record_path
):
    import asyncio

    server = live_server(
        env={
            "WEBHOOK_HANDLERS": "handlers_for_tests.slow",
            "SLOW_SECONDS": "10",
            "WEBHOOK_WORKER_CONCURRENCY": "256",
        }
    )
    bodies = [unique_body() for _ in range(200)]

    async def burst():
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=5.0, limits=limits) as client:

            async def one(body):
                # LangSmith's 5 s deadline: a slower answer raises ReadTimeout and fails.
                response = await client.post(server.url, content=body, headers=HEADER)
                return response.status_code

            return await asyncio.gather(*(one(body) for body in bodies))

    assert asyncio.run(burst()) == [202] * 200
    assert wait_for(lambda: len(read_calls(record_path)) == 200, timeout=60)
    assert len({call[1] for call in read_calls(record_path)}) == 200


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (read from /proc: no extra tool needed)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_handlers_run_in_a_worker_process_that_dies_with_a_killed_server(live_server, record_path):
    server = live_server()
    assert httpx.post(server.url, content=unique_body(), headers=HEADER).status_code == 202
    assert wait_for(lambda: len(read_calls(record_path)) == 1)
    workers = [pid for pid in _children(server.process.pid) if _alive(pid)]
    assert workers, "no worker process"
    server.kill()
    assert wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=10)


def _raw_request(url: str, head: bytes, body: bytes = b"") -> socket.socket:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(head + body)
    return sock


def test_a_sender_dropping_mid_body_is_one_log_line_without_a_traceback(live_server):
    server = live_server()
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nX-Webhook-Secret: {SECRET}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    _raw_request(server.url, head, b'{"rule_id": "' + b"x" * 500).close()
    assert wait_for(lambda: "the sender went away after" in server.log(), timeout=10)
    assert httpx.get(server.url + "healthz").status_code == 200
    log = server.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log


@pytest.mark.parametrize(
    ("headers", "status"),
    [("X-Webhook-Secret: wrong\r\n", b"401"), (f"X-Webhook-Secret: {SECRET}\r\n", b"413")],
)
def test_a_refused_body_is_answered_and_the_connection_closed_unread(live_server, headers, status):
    """200 MB announced, none sent: the answer comes at once and the server hangs up,
    rather than keeping the connection to read (and drop) the body."""
    server = live_server(env={"WEBHOOK_MAX_BODY_BYTES": "4096"})
    head = (f"POST / HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 200000000\r\n\r\n").encode()
    sock = _raw_request(server.url, head)
    received = b""
    while chunk := sock.recv(65536):  # ends when the server closes (the socket times out in 5 s)
        received += chunk
    sock.close()
    assert received.startswith(b"HTTP/1.1 " + status)
    assert b"connection: close" in received.lower()
