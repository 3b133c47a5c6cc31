"""Post a summary of each delivery to Slack through an incoming webhook.

The message (Block Kit) names the rule and its time window, counts the runs by status, and
lists the errored runs with their error and a link to each in LangSmith. It stays within
Slack's limits on any batch size: at most ``MAX_LISTED_ERRORS`` runs are listed, then
"and N more"; long errors are cut. 429 and 5xx answers are retried, honouring
``Retry-After``.

Settings (env): ``SLACK_WEBHOOK_URL`` (put it in a Modal secret: it is a credential; when
unset the handler logs once and does nothing), ``SLACK_NOTIFY_ONLY_ERRORS`` (``true``: post
only when a run errored), ``SLACK_NOTIFY_MAX_ATTEMPTS`` (default 4),
``LANGSMITH_WEB_URL`` for the links.

Example message, as Slack renders it::

    LangSmith rule fired: 3 runs, 1 errored
    Rule d75d7417-…  ·  2024-04-05 01:28:54 → 01:28:56 UTC
    success: 2 · error: 1
    • Search (tool): ValueError: upstream timed out   ← a link to the run
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from typing import Any

from pydantic import Field, SecretStr

from handlers.log_runs import run_url
from receiver import HandlerContext, HandlerOptions, RulePayload, Run
from receiver.slack import MAX_SECTION_CHARS, cut, escape, post_with_retries

MAX_LISTED_ERRORS = 10
MAX_ERROR_CHARS = 200

log = logging.getLogger(__name__)


@functools.cache
def _warn_once(message: str) -> None:
    """Log ``message`` the first time only (per process), not on every delivery."""
    log.warning(message)


def _errored_line(run: Run, web_url: str) -> str:
    name = escape(cut(run.name or str(run.id), 80))
    label = f"<{url}|{name}>" if (url := run_url(run, web_url)) else name
    error = escape(cut((run.error or "no error message").splitlines()[0], MAX_ERROR_CHARS))
    return f"• {label} ({run.run_type or 'run'}): {error}"


def build_message(payload: RulePayload, web_url: str) -> dict[str, Any]:
    """The Slack message (``text`` fallback and Block Kit ``blocks``) for one delivery."""
    by_status = Counter(run.status or "unknown" for run in payload.runs)
    errored = [run for run in payload.runs if run.status == "error"]
    title = f"LangSmith rule fired: {len(payload.runs)} runs, {len(errored)} errored"
    window = f"{payload.start_time:%Y-%m-%d %H:%M:%S} → {payload.end_time:%Y-%m-%d %H:%M:%S} UTC"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(title, 150)}},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"Rule `{payload.rule_id}` · {window}"}],
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": " · ".join(f"*{escape(s)}*: {n}" for s, n in by_status.most_common())
                or "no runs",
            },
        },
    ]
    if errored:
        lines, used = [], 0
        for run in errored[:MAX_LISTED_ERRORS]:
            line = _errored_line(run, web_url)
            if used + len(line) + 1 > MAX_SECTION_CHARS:
                break
            lines.append(line)
            used += len(line) + 1
        if len(errored) > len(lines):
            lines.append(f"and {len(errored) - len(lines)} more")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    return {"text": title, "blocks": blocks}


class Options(HandlerOptions):
    """This handler's variables, read and checked at start-up."""

    webhook_url: SecretStr | None = Field(None, validation_alias="SLACK_WEBHOOK_URL")
    only_errors: bool = Field(False, validation_alias="SLACK_NOTIFY_ONLY_ERRORS")
    max_attempts: int = Field(4, validation_alias="SLACK_NOTIFY_MAX_ATTEMPTS", ge=1)


def handle(payload: RulePayload, context: HandlerContext) -> None:
    """Post the delivery's summary to Slack (or, with only-errors on, only when one errored)."""
    options = context.options
    if options.webhook_url is None:
        _warn_once("SLACK_WEBHOOK_URL is not set: handlers.notify_slack does nothing")
        return
    if options.only_errors and not any(run.status == "error" for run in payload.runs):
        return
    message = build_message(payload, context.settings.langsmith_web_url)
    post_with_retries(
        options.webhook_url.get_secret_value(), message, attempts=options.max_attempts
    )
    context.logger.info("posted to Slack: %s", message["text"])
