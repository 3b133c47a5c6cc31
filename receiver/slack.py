"""Posting to Slack through an incoming webhook: Block Kit text and a POST with retries.

Shared by ``handlers.notify_slack`` (a summary per delivery) and ``receiver.alerts`` (dead
deliveries, recoveries, silent routes), so both escape, cut and retry the same way.

    post_with_retries(url, {"text": "...", "blocks": [...]}, attempts=4)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

MAX_SECTION_CHARS = 2900  # Slack: 3,000 characters per section text
MAX_RETRY_AFTER_SECONDS = 30.0


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """``text``, shortened to ``limit`` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def post_with_retries(
    url: str,
    message: dict[str, Any],
    *,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """POST ``message``; retry 429 and 5xx (waiting ``Retry-After`` when given), else raise."""
    import httpx  # here, not at the top: the web function imports this module at start-up

    with httpx.Client(timeout=10.0) as client:
        for attempt in range(1, attempts + 1):
            response = client.post(url, json=message)
            if response.is_success:
                return
            retryable = response.status_code == 429 or response.status_code >= 500
            if not retryable or attempt == attempts:
                raise RuntimeError(
                    f"Slack answered {response.status_code}: {cut(response.text, 200)}"
                )
            try:
                delay = float(response.headers.get("Retry-After", ""))
            except ValueError:
                delay = float(2 ** (attempt - 1))
            sleep(min(max(delay, 0.0), MAX_RETRY_AFTER_SECONDS))
