"""Delivery ids and the per-delivery state every store records.

A delivery id is LangSmith's own id of the delivery where the sender has one (Engine and
Context Hub events: their retries repeat it), else derived from the body's bytes (and the
path, for a route off ``/``), so a redelivery of the same body (LangSmith retries 5xx
answers and failed connections) gets the same id and is recognised.

    derive_delivery_id(b'{"rule_id": ...}')  # '3f1c...' (32 hex characters)
    derive_delivery_id(body, key="b91c1f0e-7c4a-4f53-9d3e-9f1c8e7a2b10")  # the key itself
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum

_USABLE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # safe in a file name and a Dict key


def derive_delivery_id(body: bytes | bytearray, path: str = "/", key: str | None = None) -> str:
    """The id of a delivery: the sender's ``key`` if usable as is, else the first 128 bits
    of a SHA-256 (of the key, or of the body; of the path too unless it is ``/``)."""
    if key is not None:
        return key if _USABLE_KEY.match(key) else hashlib.sha256(key.encode()).hexdigest()[:32]
    digest = hashlib.sha256() if path == "/" else hashlib.sha256(path.encode() + b"\n")
    digest.update(body)
    return digest.hexdigest()[:32]


MAX_FAILURES_KEPT = 20  # failed attempts remembered per handler (replays add more)


def with_failure(
    failures: tuple[dict, ...], attempt: int, at: float, error: str
) -> tuple[dict, ...]:
    """``failures`` with one more, the oldest dropped past ``MAX_FAILURES_KEPT``."""
    return (*failures, {"attempt": attempt, "at": at, "error": error})[-MAX_FAILURES_KEPT:]


class HandlerStatus(StrEnum):
    """Where one handler stands on one delivery."""

    PENDING = "pending"  # not run yet, or failed and due for another attempt
    DONE = "done"
    FAILED = "failed"  # failed on its last allowed attempt


class DeliveryStatus(StrEnum):
    """Where a whole delivery stands, derived from its handlers."""

    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"  # no handler is pending and at least one failed for good


@dataclass
class HandlerState:
    """One handler's progress on one delivery."""

    status: HandlerStatus = HandlerStatus.PENDING
    attempts: int = 0
    last_error: str | None = None
    finished_at: float | None = None  # when its last attempt ended (epoch seconds)
    # Its failed attempts, oldest first, the last MAX_FAILURES_KEPT: {"attempt", "at",
    # "error"}. Only failures: a handler that succeeds at once writes nothing more.
    failures: tuple[dict, ...] = ()


@dataclass
class DeliveryRecord:
    """What a store knows about one accepted delivery (the body is fetched separately)."""

    id: str
    received_at: float
    source: str = "rule"
    subject: str = ""  # what it is about: the rule's id, the event type, the prompt, ...
    runs: int = 0  # runs in a rule delivery
    routes: tuple[str, ...] = ()  # the routes it matched when it arrived
    handlers: dict[str, HandlerState] = field(default_factory=dict)

    @property
    def status(self) -> DeliveryStatus:
        """``pending`` while any handler is, else ``dead`` if any failed, else ``done``."""
        statuses = {state.status for state in self.handlers.values()}
        if HandlerStatus.PENDING in statuses:
            return DeliveryStatus.PENDING
        if HandlerStatus.FAILED in statuses:
            return DeliveryStatus.DEAD
        return DeliveryStatus.DONE

    def to_json(self) -> dict:
        """A JSON-ready view, as ``GET /deliveries/{id}`` and ``scripts/deliveries.py`` show it."""
        return {
            "id": self.id,
            "status": self.status.value,
            "received_at": self.received_at,
            "source": self.source,
            "subject": self.subject,
            "runs": self.runs,
            "routes": list(self.routes),
            "handlers": {
                name: {
                    "status": state.status.value,
                    "attempts": state.attempts,
                    "last_error": state.last_error,
                    "finished_at": state.finished_at,
                    "failures": list(state.failures),
                }
                for name, state in self.handlers.items()
            },
        }
