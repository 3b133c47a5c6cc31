"""The console in a real headless Chromium (Debian's package, driven by Playwright), against
the real server: log in, see a delivery, filter to dead ones, open one, replay it, see it
done. Screenshots go to ``test-artifacts/`` (``CONSOLE_SCREENSHOTS`` to put them elsewhere).

Without Chromium these tests skip, saying how to install it (``.ci/run`` does).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from conftest import HEADER
from support.live_server import ROOT, wait_for
from support.payloads import payload_with_runs

TOKEN = "console-token-browser-5c2a9e"
BROKEN = "handlers_for_tests.broken_until_fixed"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
ARTIFACTS = Path(os.environ.get("CONSOLE_SCREENSHOTS") or ROOT / "test-artifacts")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: install Debian's package (apt-get install chromium), or set"
    " CHROMIUM_PATH; .ci/run installs it",
)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def server(live_server, tmp_path):
    marker = tmp_path / "fixed"
    server = live_server(
        env={
            "WEBHOOK_HANDLERS": f"handlers_for_tests.recording,{BROKEN}",
            "WEBHOOK_CONSOLE_TOKEN": TOKEN,
            "WEBHOOK_MAX_ATTEMPTS": "1",
            "FIX_MARKER": str(marker),
        }
    )
    return server, marker


def deliver(server, name: str) -> str:
    body = json.dumps(payload_with_runs(1, name=name, app_path="/o/1/r/abc")).encode()
    answer = httpx.post(server.url, content=body, headers=HEADER)
    assert answer.status_code == 202
    return answer.json()["delivery_id"]


def status_of(server, delivery_id: str) -> str:
    answer = httpx.get(
        f"{server.url}api/deliveries/{delivery_id}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    return answer.json()["status"]


def test_log_in_filter_to_dead_open_replay_and_see_it_done(server, browser):
    server, marker = server
    dead = deliver(server, "<script>document.title='owned'</script>")
    assert wait_for(lambda: status_of(server, dead) == "dead")
    marker.write_text("fixed")  # later deliveries succeed
    done = deliver(server, "fine")
    assert wait_for(lambda: status_of(server, done) == "done")
    marker.unlink()

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{server.url}console")
    assert page.url.startswith(f"{server.url}console/login")  # no session: the login form
    page.fill("input[name=token]", TOKEN)
    page.click("button:has-text('Log in')")
    assert page.url == f"{server.url}console"
    assert page.locator(f"a:has-text('{dead}')").count() == 1
    assert page.locator(f"a:has-text('{done}')").count() == 1
    assert page.locator("svg rect.dead").count() >= 1

    page.select_option("select[name=status]", "dead")
    page.click("text=Apply")
    assert "status=dead" in page.url
    assert page.locator(f"a:has-text('{dead}')").count() == 1
    assert page.locator(f"a:has-text('{done}')").count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-deliveries.png"), full_page=True)

    page.click(f"a:has-text('{dead}')")
    assert page.locator("h1 .status").inner_text() == "dead"
    assert "downstream rejected the payload" in page.inner_text("table >> nth=1")
    assert "<script>" in page.inner_text("#body")  # shown as text, never run
    assert page.title() != "owned"
    assert page.get_attribute("a:has-text('<script>')", "href").startswith(
        "https://smith.langchain.com/o/1/r/abc"
    )
    page.screenshot(path=str(ARTIFACTS / "console-delivery.png"), full_page=True)

    marker.write_text("fixed")  # the operator fixed the cause
    page.click("text=Replay the whole delivery")
    assert "replaying 2 handler(s)" in page.inner_text(".message")
    assert wait_for(lambda: status_of(server, dead) == "done")
    page.reload()
    assert page.locator("h1 .status").inner_text() == "done"


def test_a_replay_of_a_selection_is_confirmed_first(server, browser):
    server, marker = server
    ids = [deliver(server, f"run {n}") for n in range(3)]
    assert wait_for(lambda: all(status_of(server, i) == "dead" for i in ids))
    page = browser.new_page()
    page.goto(f"{server.url}console/login")
    page.fill("input[name=token]", TOKEN)
    page.click("button:has-text('Log in')")
    page.goto(f"{server.url}console?status=dead")
    page.click("text=Replay these…")
    assert "3 deliveries, 3 handlers will run again" in page.inner_text("main")
    assert all(status_of(server, i) == "dead" for i in ids)  # nothing happened yet
    marker.write_text("fixed")
    page.click("text=Replay 3 deliveries")
    assert "replaying 3 deliveries" in page.inner_text(".message")
    assert wait_for(lambda: all(status_of(server, i) == "done" for i in ids))
