"""handlers/notify_slack.py against a local Slack incoming-webhook receiver."""

import json
import logging

import pytest
from support.payloads import payload_with_runs
from support.slack_receiver import running_slack

from handlers import notify_slack
from receiver import testing
from receiver.sources import RulePayload


@pytest.fixture
def slack():
    with running_slack() as receiver:
        yield receiver


def notify(payload: dict, **env: str) -> None:
    notify_slack.handle(RulePayload.model_validate(payload), testing.context(notify_slack, env))


def mixed_payload(errored: int, ok: int = 2) -> dict:
    payload = payload_with_runs(ok, status="success")
    failing = payload_with_runs(
        errored,
        status="error",
        error="ValueError: upstream <timed> out\nTraceback (most recent call last)",
    )
    payload["runs"] += failing["runs"]
    return payload


def test_the_summary_names_rule_window_statuses_and_errored_runs_with_links(slack):
    payload = mixed_payload(errored=1)
    notify(payload, SLACK_WEBHOOK_URL=slack.url)
    [message] = slack.posts
    assert message["text"] == "LangSmith rule fired: 3 runs, 1 errored"
    text = json.dumps(message["blocks"])
    assert payload["rule_id"] in text
    assert "2024-04-05 01:28:54" in text
    assert "*success*: 2" in text and "*error*: 1" in text
    errored = message["blocks"][-1]["text"]["text"]
    assert "ValueError: upstream &lt;timed&gt; out" in errored
    assert "Traceback" not in errored  # only the error's first line
    assert "<https://smith.langchain.com/o/" in errored


def test_a_long_batch_stays_within_slack_limits_with_and_n_more(slack):
    payload = mixed_payload(errored=500)
    for run in payload["runs"]:
        run["error"] = "E" * 5000
    notify(payload, SLACK_WEBHOOK_URL=slack.url)
    [message] = slack.posts
    assert len(message["blocks"]) <= 50
    for block in message["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    listed = message["blocks"][-1]["text"]["text"].splitlines()
    assert listed[-1] == f"and {500 - (len(listed) - 1)} more"
    assert 1 <= len(listed) - 1 <= notify_slack.MAX_LISTED_ERRORS


def test_a_429_is_retried_after_its_retry_after(slack):
    waits = []
    slack.answer_next(429, **{"Retry-After": "3"})
    slack.answer_next(503)
    message = {"text": "hello"}
    notify_slack.post_with_retries(slack.url, message, attempts=4, sleep=waits.append)
    assert slack.posts == [message]
    assert waits == [3.0, 2.0]  # Retry-After, then the backoff of the 2nd attempt


def test_a_429_is_retried_for_real(slack):
    slack.answer_next(429, **{"Retry-After": "0"})
    notify(mixed_payload(errored=1), SLACK_WEBHOOK_URL=slack.url)
    assert len(slack.posts) == 1


def test_persistent_failure_raises_so_the_dispatcher_retries_later(slack):
    for _ in range(2):
        slack.answer_next(500, **{"Retry-After": "0"})
    with pytest.raises(RuntimeError, match="Slack answered 500"):
        notify(mixed_payload(errored=1), SLACK_WEBHOOK_URL=slack.url, SLACK_NOTIFY_MAX_ATTEMPTS="2")
    assert slack.posts == []


def test_a_4xx_is_not_retried(slack):
    slack.answer_next(404)
    with pytest.raises(RuntimeError, match="Slack answered 404"):
        notify(mixed_payload(errored=1), SLACK_WEBHOOK_URL=slack.url)
    assert slack.answers == []


def test_only_errors_mode_skips_deliveries_without_errors(slack):
    notify(
        payload_with_runs(3, status="success"),
        SLACK_WEBHOOK_URL=slack.url,
        SLACK_NOTIFY_ONLY_ERRORS="true",
    )
    assert slack.posts == []
    notify(mixed_payload(errored=1), SLACK_WEBHOOK_URL=slack.url, SLACK_NOTIFY_ONLY_ERRORS="true")
    assert len(slack.posts) == 1


def test_without_a_url_it_does_nothing_and_logs_once(caplog):
    notify_slack._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING):
        notify(mixed_payload(errored=1))
        notify(mixed_payload(errored=1))
    assert caplog.text.count("SLACK_WEBHOOK_URL is not set") == 1
