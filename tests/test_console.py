"""The delivery console and its JSON API, in process (the browser tests drive it for real)."""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import HEADER, drain
from support.payloads import payload_with_runs

TOKEN = "console-token-7b1e2f9c4d"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BROKEN = "handlers_for_tests.broken_until_fixed"


@pytest.fixture
def console(make_settings, open_client, tmp_path):
    """A local app with the console on, the always-working recording handler and one that
    fails until its marker file exists; yields (client, marker)."""
    marker = tmp_path / "fixed"
    settings = make_settings(
        {"FIX_MARKER": str(marker)},
        handlers=("handlers_for_tests.recording", BROKEN),
        console_token=TOKEN,
        max_attempts=1,
    )
    with open_client(settings) as client:
        yield client, marker


def deliver(client, **run_fields) -> str:
    body = json.dumps(payload_with_runs(1, **run_fields)).encode()
    answer = client.post("/", content=body, headers=HEADER)
    assert answer.status_code == 202, answer.text
    return answer.json()["delivery_id"]


def log_in(client) -> str:
    """Log in through the form; the CSRF token of the session."""
    answer = client.post(
        "/console/login", data={"token": TOKEN, "next": "/console"}, follow_redirects=False
    )
    assert answer.status_code == 303
    page = client.get("/console").text
    return re.search(r'name="csrf" value="([^"]+)"', page)[1]


def test_without_a_token_the_console_and_its_api_are_not_there(make_settings, open_client):
    with open_client(make_settings()) as client:
        assert client.get("/console").status_code == 404
        assert "WEBHOOK_CONSOLE_TOKEN" in client.get("/console").text
        assert client.get("/console/login").status_code == 404
        assert client.get("/api/deliveries", headers=BEARER).status_code == 404
        assert client.post("/api/replay", headers=BEARER, json={}).status_code == 404


def test_without_a_session_pages_redirect_to_login_and_the_api_answers_401(console):
    client, _ = console
    delivery_id = deliver(client)
    for path in (
        "/console",
        f"/console/deliveries/{delivery_id}",
        f"/console/deliveries/{delivery_id}/body",
        "/console/replay?status=dead",
    ):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/console/login?next=%2Fconsole")
    wrong = {"Authorization": "Bearer not-the-token"}
    for method, path in (
        ("GET", "/api/deliveries"),
        ("GET", f"/api/deliveries/{delivery_id}"),
        ("GET", f"/api/deliveries/{delivery_id}/body"),
        ("POST", "/api/replay"),
    ):
        for headers in ({}, wrong, HEADER):  # the webhook secret is not the console's
            answer = client.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["www-authenticate"] == "Bearer"
    # a session cookie does not open the API either: it takes the token only
    log_in(client)
    assert client.get("/api/deliveries").status_code == 401


def test_login_sets_a_strict_http_only_cookie_that_expires(console):
    client, _ = console
    refused = client.post("/console/login", data={"token": "console-token-wrong"})
    assert refused.status_code == 401 and "not the console token" in refused.text
    answer = client.post(
        "/console/login",
        data={"token": TOKEN, "next": "/console"},
        headers={"X-Forwarded-Proto": "https"},
        follow_redirects=False,
    )
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    assert "Max-Age=43200" in cookie  # WEBHOOK_CONSOLE_SESSION_HOURS, 12 by default
    assert TOKEN not in cookie


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console", "/docs"])
def test_login_never_redirects_off_the_console(console, target):
    client, _ = console
    answer = client.post(
        "/console/login", data={"token": TOKEN, "next": target}, follow_redirects=False
    )
    assert answer.headers["location"] == "/console"


def test_a_state_changing_request_without_the_csrf_token_is_refused(console):
    client, _ = console
    delivery_id = deliver(client)
    csrf = log_in(client)
    for form in ({"id": delivery_id}, {"id": delivery_id, "csrf": "forged"}):
        assert client.post("/console/replay", data=form).status_code == 403
    assert client.post("/console/logout", data={}).status_code == 403
    answer = client.post(
        "/console/replay", data={"id": delivery_id, "csrf": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303


def test_a_body_is_shown_as_text_and_pages_are_not_indexed(console):
    client, _ = console
    delivery_id = deliver(client, name="<script>alert(1)</script>")
    log_in(client)
    page = client.get(f"/console/deliveries/{delivery_id}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert page.headers["x-robots-tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # none allowed
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert HEADER["X-Webhook-Secret"] not in page.text and TOKEN not in page.text


def test_a_delivery_page_links_its_runs_and_cuts_large_bodies(console):
    client, _ = console
    small = deliver(client, app_path="/o/1/projects/p/2/r/abc")
    large = deliver(client, inputs={"text": "x" * 100_000})
    log_in(client)
    page = client.get(f"/console/deliveries/{small}").text
    assert 'href="https://smith.langchain.com/o/1/projects/p/2/r/abc"' in page
    cut = client.get(f"/console/deliveries/{large}").text
    assert "Download the whole body" in cut
    whole = client.get(f"/console/deliveries/{large}/body")
    assert len(whole.content) > 100_000 and "attachment" in whole.headers["content-disposition"]


def test_the_list_filters_by_status_route_run_and_time_and_counts_each_status(console):
    client, marker = console
    first = deliver(client)
    drain(client)
    marker.write_text("fixed")
    run_id = "3b8f6f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    second = payload_with_runs(1)
    second["runs"][0]["id"] = run_id
    client.post("/", content=json.dumps(second).encode(), headers=HEADER)
    drain(client)
    answer = client.get("/api/deliveries", headers=BEARER).json()
    assert answer["counts"] == {"dead": 1, "done": 1}
    dead = client.get("/api/deliveries?status=dead", headers=BEARER).json()["deliveries"]
    assert [d["id"] for d in dead] == [first]
    by_run = client.get(f"/api/deliveries?run={run_id}", headers=BEARER).json()["deliveries"]
    assert len(by_run) == 1 and by_run[0]["id"] != first
    assert client.get("/api/deliveries?since=1h", headers=BEARER).json()["total"] == 2
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    assert client.get(f"/api/deliveries?since={future}", headers=BEARER).json()["total"] == 0
    bad = client.get("/api/deliveries?since=yesterday", headers=BEARER)
    assert bad.status_code == 422 and "since" in bad.json()["detail"]
    log_in(client)
    page = client.get("/console?status=dead").text
    assert first in page and by_run[0]["id"] not in page
    detail = client.get(f"/console/deliveries/{first}").text
    assert "1 failed attempt(s)" in detail and "attempt 1" in detail
    assert re.search(r'class="status dead">dead</span> 1', page)
    assert "<svg" in page and 'class="dead"' in page  # the chart has a dead bar


def test_replay_of_a_range_dry_run_counts_and_changes_nothing_then_reruns_exactly_those(console):
    client, marker = console
    old = deliver(client)
    drain(client)
    recent = [deliver(client) for _ in range(2)]
    drain(client)
    # the first delivery is moved out of the range: 3 hours ago
    store = client.app.state.store
    store._db.execute(
        "UPDATE deliveries SET received_at = ? WHERE id = ?", (time.time() - 3 * 3600, old)
    )
    asked = {"since": "2h", "status": "dead", "dry_run": True}
    dry = client.post("/api/replay", headers=BEARER, json=asked).json()
    assert (dry["deliveries"], dry["handlers"], dry["replayed"]) == (2, 2, [])
    assert sorted(dry["plan"]) == sorted(recent)
    assert client.get("/api/deliveries?status=dead", headers=BEARER).json()["total"] == 3
    marker.write_text("fixed")
    done = client.post("/api/replay", headers=BEARER, json={**asked, "dry_run": False}).json()
    assert sorted(done["replayed"]) == sorted(recent)
    drain(client)
    dead = client.get("/api/deliveries?status=dead", headers=BEARER).json()["deliveries"]
    assert [d["id"] for d in dead] == [old]


def test_a_succeeded_delivery_or_one_handler_can_be_run_again(console):
    client, marker = console
    marker.write_text("fixed")
    delivery_id = deliver(client)
    drain(client)
    csrf = log_in(client)
    before = client.get(f"/api/deliveries/{delivery_id}", headers=BEARER).json()
    assert before["status"] == "done"
    client.post("/console/replay", data={"id": delivery_id, "csrf": csrf, "handler": BROKEN})
    drain(client)
    one = client.get(f"/api/deliveries/{delivery_id}", headers=BEARER).json()["handlers"]
    assert one[BROKEN]["finished_at"] > before["handlers"][BROKEN]["finished_at"]
    assert one["handlers_for_tests.recording"] == before["handlers"]["handlers_for_tests.recording"]
    client.post("/console/replay", data={"id": delivery_id, "csrf": csrf})
    drain(client)
    both = client.get(f"/api/deliveries/{delivery_id}", headers=BEARER).json()["handlers"]
    assert both[BROKEN]["failures"] == []  # it never failed
    assert all(both[n]["finished_at"] > one[n]["finished_at"] for n in both if n != BROKEN)
    assert both[BROKEN]["finished_at"] > one[BROKEN]["finished_at"]


def test_the_replay_confirmation_says_how_many_deliveries_and_handlers_will_run(console):
    client, _ = console
    for _ in range(3):
        deliver(client)
    drain(client)
    log_in(client)
    page = client.get("/console/replay?status=dead").text
    assert "3 deliveries, 3 handlers will run again" in page
    page = client.get("/console/replay?status=dead&include_done=1").text
    assert "3 deliveries, 6 handlers will run again" in page


def test_the_api_and_its_bearer_scheme_are_in_the_openapi_document(console):
    client, _ = console
    document = client.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["console-token"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "secret-header" in document["components"]["securitySchemes"]  # still there
    for path, method in (("/api/deliveries", "get"), ("/api/replay", "post")):
        assert document["paths"][path][method]["security"] == [{"console-token": []}]
    assert not any(path.startswith("/console") for path in document["paths"])
