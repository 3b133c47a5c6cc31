"""Credentials: the shared secret and LangSmith's body signature, both constant-time.

Rules, alerts, prompt commits and Agent Server runs are not signed: the documented practice
is a random secret in the URL (``?secret=...``; Agent Server's form is ``?token=...``) or in
a header configured on the webhook. Engine and Context Hub events are signed:
``X-LangSmith-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` under the
subscription's signing secret. ``LS_WEBHOOK`` and ``LS_SIGNING_SECRETS`` may each hold
several comma-separated secrets, so that a rolled one can be put in place before the old
one is dropped.

    secret_matches("b", ("a", "b"))  # True
    signature_matches(b"{}", "sha256=" + hmac.new(b"k", b"{}", "sha256").hexdigest(), ("k",))
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SECRET_HEADER = "X-Webhook-Secret"  # noqa: S105 (a header name)
SECRET_QUERY_PARAM = "secret"  # noqa: S105 (a parameter name)
TOKEN_QUERY_PARAM = "token"  # noqa: S105 (Agent Server's name for the query secret)
SIGNATURE_HEADER = "X-LangSmith-Signature"


def _any_equal(candidate: bytes, accepted: Sequence[bytes]) -> bool:
    """Every accepted value is compared (no early exit), each with
    :func:`hmac.compare_digest`, so the time taken reveals neither which one matched nor
    how much of it did."""
    matched = False
    for value in accepted:
        matched |= hmac.compare_digest(candidate, value)
    return matched


def secret_matches(presented: str | None, accepted: Sequence[str]) -> bool:
    """True when ``presented`` equals one of the ``accepted`` secrets."""
    if not presented:
        return False
    return _any_equal(presented.encode(), [secret.encode() for secret in accepted])


def sign(body: bytes | bytearray, secret: str) -> str:
    """The ``X-LangSmith-Signature`` value LangSmith sends for ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes | bytearray, presented: str, accepted: Sequence[str]) -> bool:
    """True when ``presented`` is the signature of ``body`` under one of ``accepted``."""
    return _any_equal(presented.encode(), [sign(body, secret).encode() for secret in accepted])
