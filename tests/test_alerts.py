"""Slack alerts: dead deliveries, recoveries and quiet routes, posted once each."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import HEADER, SECRET, drain
from support.payloads import unique_body
from support.slack_receiver import running_slack

from receiver.alerts import check_alerts
from receiver.routes import load_routes
from receiver.settings import Settings
from receiver.sources import SOURCES

BROKEN = "handlers_for_tests.broken_until_fixed"
ROUTES = """
[[routes]]
name = "prod"
handlers = ["handlers_for_tests.broken_until_fixed"]
expect_every = "6h"
"""


@pytest.fixture
def slack():
    with running_slack() as slack:
        yield slack


@pytest.fixture
def app(open_client, slack, tmp_path, monkeypatch):
    """A local app whose only route's handler fails until its marker exists; yields
    (client, settings, marker). The worker's own sweep is slowed right down: the tests
    call check_alerts themselves."""
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(ROUTES)
    marker = tmp_path / "fixed"
    monkeypatch.setenv("FIX_MARKER", str(marker))
    monkeypatch.setenv("TEST_RECORD_PATH", str(tmp_path / "calls.log"))
    settings = Settings(
        secrets=(SECRET,),
        store_path=tmp_path / "deliveries.sqlite3",
        routes_file=routes_file,
        max_attempts=1,
        slack_alerts_webhook_url=slack.url,
        sweep_seconds=3600,
    )
    with open_client(settings) as client:
        yield client, settings, marker


def check(client, settings, now: float | None = None) -> list[dict]:
    routes = load_routes(settings, SOURCES)
    return asyncio.run(check_alerts(settings, routes, client.app.state.store, now=now))


def die(client) -> str:
    delivery_id = client.post("/", content=unique_body(), headers=HEADER).json()["delivery_id"]
    drain(client)
    return delivery_id


def test_a_delivery_that_dies_is_posted_once_with_its_handler_error_and_link(app, slack):
    client, settings, _ = app
    already = die(client)
    asyncio.run(client.app.state.store.set_meta("alerts", None))  # alerts turned on now:
    assert check(client, settings) == []  # what is already dead is not posted
    delivery_id = die(client)
    [message] = check(client, settings)
    assert slack.posts == [message]
    text = str(message["blocks"])
    assert message["text"] == f"Delivery dead: {BROKEN}"
    assert "prod" in text and "downstream rejected the payload" in text
    assert f"/console/deliveries/{delivery_id}" in text and already not in text
    assert check(client, settings) == []  # once
    assert len(slack.posts) == 1


def test_a_dead_delivery_that_succeeds_on_replay_is_posted_as_recovered(app, slack):
    client, settings, marker = app
    check(client, settings)
    delivery_id = die(client)
    check(client, settings)
    marker.write_text("fixed")
    store = client.app.state.store
    asyncio.run(store.reset(delivery_id))
    client.app.state.worker.wake(delivery_id)
    drain(client)
    [message] = check(client, settings)
    assert message["text"] == "Delivery recovered: prod"
    assert delivery_id in str(message["blocks"])
    assert check(client, settings) == []


def test_links_are_absolute_with_webhook_public_url(app, slack):
    client, settings, _ = app
    settings = settings.model_copy(update={"public_url": "https://acme--hooks-web.modal.run"})
    check(client, settings)
    delivery_id = die(client)
    [message] = check(client, settings)
    link = f"<https://acme--hooks-web.modal.run/console/deliveries/{delivery_id}|"
    assert link in str(message["blocks"])


def test_a_quiet_route_is_posted_once_per_silence(app, slack):
    client, settings, _ = app
    start = time.time()
    check(client, settings, now=start)
    assert check(client, settings, now=start + 5 * 3600) == []  # within its 6 h
    [quiet] = check(client, settings, now=start + 7 * 3600)
    assert quiet["text"].startswith("No delivery from route prod since")
    assert "every 6h" in str(quiet["blocks"])
    assert check(client, settings, now=start + 8 * 3600) == []  # once per silence
    die(client)  # a delivery arrives (it dies: posted as such), then silence again
    later = time.time() + 7 * 3600
    posted = check(client, settings, now=later)
    assert [m["text"].split(":")[0] for m in posted] == [
        "Delivery dead",
        "No delivery from route prod since " + time.strftime("%Y-%m-%d %H", time.gmtime()),
    ]


def test_an_alert_slack_refuses_is_posted_at_the_next_check(app, slack):
    client, settings, _ = app
    check(client, settings)
    die(client)
    for _ in range(3):
        slack.answer_next(500)
    assert check(client, settings) == []
    assert len(check(client, settings)) == 1


def test_the_worker_posts_a_dead_delivery_on_its_own(make_settings, open_client, slack, tmp_path):
    """End to end: the local server's worker sweeps, sees the delivery die, posts once."""
    settings = make_settings(
        handlers=(BROKEN,),
        max_attempts=1,
        slack_alerts_webhook_url=slack.url,
        sweep_seconds=0.2,
    )
    with open_client(settings) as client:
        time.sleep(0.5)  # the first sweep turns alerts on
        die(client)
        deadline = time.monotonic() + 10
        while not slack.posts and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.6)  # a few more sweeps: still one post
    assert [post["text"] for post in slack.posts] == [f"Delivery dead: {BROKEN}"]
