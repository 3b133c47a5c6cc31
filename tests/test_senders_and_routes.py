"""Every LangSmith sender, routed, through the real local server (serve_local.py, 127.0.0.1)."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import HEADER, SECRET
from support.live_server import ROOT, wait_for

from receiver.auth import sign

DATA = ROOT / "tests" / "data"
SIGNING = "whsec-current-7c1d"
ROLLED = "whsec-previous-22ab"
FIRST, SECOND = "handlers_for_tests.watcher", "handlers_for_tests.second_watcher"
FIXTURES = {
    "rule": "langsmith_rule_payload.json",
    "alert": "alert_threshold.json",
    "prompt_commit": "prompt_commit.json",
    "agent_run": "agent_server_run.json",
    "engine": "engine_issue_created.json",
    "context_hub": "context_hub_commit_created.json",
}
EVENT_CLASSES = {
    "rule": "RulePayload",
    "alert": "AlertEvent",
    "prompt_commit": "PromptCommitEvent",
    "agent_run": "AgentRunEvent",
    "engine": "EngineEvent",
    "context_hub": "ContextHubEvent",
}
ROUTES = f"""
[[routes]]
name = "rules"
handlers = ["{FIRST}"]

[[routes]]
name = "product"
sources = ["alert", "prompt_commit", "agent_run"]
handlers = ["{FIRST}"]

[[routes]]
name = "signed"
path = "/langsmith/events"
sources = ["engine", "context_hub"]
handlers = ["{SECOND}"]
"""
FILTERED = f"""
[[routes]]
name = "errors"
handlers = ["{FIRST}"]
[routes.match]
run_status = ["error"]

[[routes]]
name = "everything"
handlers = ["{SECOND}"]

[[routes]]
name = "severe-issues"
path = "/engine"
sources = ["engine"]
handlers = ["{FIRST}", "{SECOND}"]
[routes.match]
event_type = ["issue.created"]
max_severity = 1

[[routes]]
name = "all-issues"
path = "/engine"
sources = ["engine", "unknown"]
handlers = ["{SECOND}"]
"""


def fixture(source: str) -> bytes:
    return (DATA / FIXTURES[source]).read_bytes()


def signed(body: bytes, secret: str = SIGNING) -> dict[str, str]:
    return {"X-LangSmith-Signature": sign(body, secret)}


def seen(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def routed(live_server, tmp_path):
    """Start a server on a routes file; returns (server, events file)."""
    events = tmp_path / "events.jsonl"

    def start(routes: str, **env: str):
        routes_file = tmp_path / "routes.toml"
        routes_file.write_text(routes)
        server = live_server(
            env={
                "WEBHOOK_HANDLERS": "",
                "WEBHOOK_ROUTES": str(routes_file),
                "LS_SIGNING_SECRETS": f"{SIGNING},{ROLLED}",
                "TEST_EVENTS_PATH": str(events),
                **env,
            }
        )
        return server, events

    return start


def test_each_of_the_six_senders_is_accepted_stored_with_its_source_and_routed(routed):
    server, events = routed(ROUTES)
    expected = {}
    for source in FIXTURES:
        body = fixture(source)
        if source in ("engine", "context_hub"):
            url, headers = server.url + "langsmith/events", signed(body)
        else:
            url, headers = server.url, HEADER
        answer = httpx.post(url, content=body, headers=headers)
        assert answer.status_code == 202, (source, answer.text)
        assert answer.json()["source"] == source
        expected[answer.json()["delivery_id"]] = (source, answer.json()["routes"])
    assert [routes for _, routes in expected.values()] == [
        ["rules"],
        ["product"],
        ["product"],
        ["product"],
        ["signed"],
        ["signed"],
    ]
    assert wait_for(lambda: len(seen(events)) == 6)
    for call in seen(events):
        source, routes = expected[call["delivery"]]
        assert call["event"] == EVENT_CLASSES[source]
        assert call["handler"] == (SECOND if routes == ["signed"] else FIRST)
    for delivery_id, (source, routes) in expected.items():

        def recorded(delivery_id=delivery_id, source=source, routes=routes) -> bool:
            """The handler has run; its outcome is written just after it returns."""
            status = httpx.get(f"{server.url}deliveries/{delivery_id}", headers=HEADER).json()
            return (status["source"], status["routes"], status["status"]) == (
                source,
                routes,
                "done",
            )

        assert wait_for(recorded, timeout=10), delivery_id


def test_a_signed_event_needs_a_valid_signature_and_a_retry_is_a_duplicate(routed):
    server, events = routed(ROUTES)
    url = server.url + "langsmith/events"
    body = fixture("engine")
    envelope_id = json.loads(body)["id"]
    for headers in (
        HEADER,  # the shared secret is not enough for a LangSmith event
        {**HEADER, "X-LangSmith-Signature": "sha256=" + "0" * 64},
        signed(body, "not-a-configured-secret"),
        signed(body + b" "),  # the signature of other bytes
        {"X-LangSmith-Signature": sign(body, SIGNING).upper()},
    ):
        assert httpx.post(url, content=body, headers=headers).status_code == 401, headers
    first = httpx.post(url, content=body, headers=signed(body))  # a signature alone will do
    retry = httpx.post(url, content=body, headers=signed(body, ROLLED))  # the old secret too
    assert (first.status_code, retry.status_code) == (202, 202)
    assert first.json()["delivery_id"] == retry.json()["delivery_id"] == envelope_id
    assert (first.json()["duplicate"], retry.json()["duplicate"]) == (False, True)
    assert wait_for(lambda: len(seen(events)) == 1)
    assert not wait_for(lambda: len(seen(events)) > 1, timeout=1)


def test_run_filters_hand_each_route_its_runs_and_unmatched_deliveries_are_kept(routed):
    server, events = routed(FILTERED)
    body = json.loads(fixture("rule"))
    template = body["runs"][0]
    statuses = ["success", "error", "pending", "error"]
    body["runs"] = [
        {**template, "id": f"00000000-0000-4000-8000-00000000000{i}", "status": s}
        for i, s in enumerate(statuses)
    ]
    mixed = httpx.post(server.url, json=body, headers=HEADER)
    assert mixed.json()["routes"] == ["errors", "everything"]
    assert wait_for(lambda: len(seen(events)) == 2)
    runs = {call["handler"]: call["runs"] for call in seen(events)}
    assert runs == {FIRST: ["error", "error"], SECOND: statuses}

    mild = json.loads(fixture("engine"))
    mild["data"]["object"]["severity"] = 3
    mild["id"] = "another-event-id"
    raw = json.dumps(mild).encode()
    answer = httpx.post(server.url + "engine", content=raw, headers=signed(raw))
    assert answer.json()["routes"] == ["all-issues"]
    severe = fixture("engine")
    answer = httpx.post(server.url + "engine", content=severe, headers=signed(severe))
    assert answer.json()["routes"] == ["severe-issues", "all-issues"]
    assert wait_for(lambda: len(seen(events)) == 5)  # the second watcher ran once for both

    nothing = httpx.post(server.url, content=fixture("alert"), headers=HEADER)
    assert (nothing.status_code, nothing.json()["routes"]) == (202, [])
    listed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "deliveries.py"), "--json", "--source", "alert"],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    [alert] = json.loads(listed.stdout)
    assert (alert["id"], alert["source"], alert["routes"]) == (
        nothing.json()["delivery_id"],
        "alert",
        [],
    )


def test_unknown_objects_and_event_types_are_kept_never_refused(routed):
    server, events = routed(FILTERED)
    hello = httpx.post(server.url, json={"hello": "world"}, headers=HEADER)
    assert (hello.status_code, hello.json()["source"], hello.json()["routes"]) == (
        202,
        "unknown",
        [],
    )
    future = json.loads(fixture("engine"))
    future["type"] = "issue.resolved"  # a type LangSmith has not documented yet
    raw = json.dumps(future).encode()
    assert httpx.post(server.url + "engine", content=raw, headers=HEADER).status_code == 401
    answer = httpx.post(server.url + "engine", content=raw, headers=signed(raw))
    assert answer.json() == {
        "delivery_id": future["id"],
        "duplicate": False,
        "source": "unknown",
        "routes": ["all-issues"],
    }
    assert wait_for(lambda: [c["event"] for c in seen(events)] == ["UnknownEvent"])
    assert httpx.post(server.url, content=b"[1, 2]", headers=HEADER).status_code == 422


def test_agent_servers_token_is_the_query_secret_and_never_logged(routed):
    server, _ = routed(ROUTES)
    body = fixture("agent_run")
    assert httpx.post(f"{server.url}?token={SECRET}", content=body).status_code == 202
    assert httpx.post(f"{server.url}?token=wrong", content=body).status_code == 401
    assert wait_for(lambda: 'POST /?token=*** HTTP/1.1" 202' in server.log(), timeout=10)
    assert SECRET not in server.log()


@pytest.mark.parametrize("source", list(FIXTURES))
def test_send_test_payload_sends_each_sender_and_signs_on_request(routed, source):
    server, _ = routed(ROUTES)
    command = [sys.executable, str(ROOT / "scripts" / "send_test_payload.py"), "--source", source]
    if source in ("engine", "context_hub"):
        command += [server.url + "langsmith/events", "--sign", SIGNING]
    else:
        command += [f"{server.url}?secret={SECRET}"]
    sent = subprocess.run(command, capture_output=True, text=True, env=server.env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f'"source":"{source}"' in sent.stdout
