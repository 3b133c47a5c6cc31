"""Delivers a body the way LangSmith does, to test the receiver against its real sender rules.

From LangSmith's documented delivery semantics: a 5 s deadline, after which the delivery
has failed and is not retried; a 5xx answer or a failed connection is retried up to 2 more
times with exponential backoff; a 4xx answer is final.

    result = deliver(url, body, headers={"X-Webhook-Secret": secret})
    result.delivered  # True when a 2xx arrived within the deadline
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx

DEADLINE_SECONDS = 5.0
MAX_RETRIES = 2


@dataclass
class DeliveryResult:
    """What the sender saw: each attempt's status (None: no answer) and the final verdict."""

    statuses: list[int | None] = field(default_factory=list)
    timed_out: bool = False
    elapsed: float = 0.0

    @property
    def delivered(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] is not None and self.statuses[-1] < 300


def deliver(
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    backoff: float = 0.2,
    client: httpx.Client | None = None,
) -> DeliveryResult:
    """POST ``body`` with LangSmith's timeout and retry rules."""
    result = DeliveryResult()
    own_client = client is None
    client = client or httpx.Client(timeout=DEADLINE_SECONDS)
    started = time.perf_counter()
    try:
        for attempt in range(MAX_RETRIES + 1):
            try:
                response = client.post(
                    url,
                    content=body,
                    headers={"Content-Type": "application/json", **(headers or {})},
                    timeout=DEADLINE_SECONDS,
                )
            except httpx.TimeoutException:
                result.statuses.append(None)
                result.timed_out = True
                break  # a timeout is a failed delivery, never retried
            except httpx.TransportError:
                result.statuses.append(None)
            else:
                result.statuses.append(response.status_code)
                if response.status_code < 500:
                    break
            if attempt < MAX_RETRIES:
                time.sleep(backoff * 2**attempt)
    finally:
        result.elapsed = time.perf_counter() - started
        if own_client:
            client.close()
    return result
