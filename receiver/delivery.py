"""Delivery ids and the per-delivery state every store records.

A delivery id is derived from the body's bytes, so a redelivery of the same body (LangSmith
retries 5xx answers and failed connections) gets the same id and is recognised.

    derive_delivery_id(b'{"rule_id": ...}')  # '3f1c...' (32 hex characters)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum


def derive_delivery_id(body: bytes | bytearray) -> str:
    """The id of a delivery: the first 128 bits of the body's SHA-256, in hex."""
    return hashlib.sha256(body).hexdigest()[:32]


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


@dataclass
class DeliveryRecord:
    """What a store knows about one accepted delivery (the body is fetched separately)."""

    id: str
    received_at: float
    rule_id: str
    runs: int
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
            "rule_id": self.rule_id,
            "runs": self.runs,
            "handlers": {
                name: {
                    "status": state.status.value,
                    "attempts": state.attempts,
                    "last_error": state.last_error,
                }
                for name, state in self.handlers.items()
            },
        }
