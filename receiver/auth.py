"""Shared-secret check: one small pure function, constant-time, several secrets at once.

LangSmith does not sign its webhook bodies; the documented practice is a random secret in
the URL (``?secret=...``) or in a header configured on the rule. ``LS_WEBHOOK`` may hold
several comma-separated secrets so a new one can be rolled out before the old one is
dropped.

    secret_matches("b", ("a", "b"))  # True
    secret_matches("c", ("a", "b"))  # False
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

SECRET_HEADER = "X-Webhook-Secret"  # noqa: S105 (a header name)
SECRET_QUERY_PARAM = "secret"  # noqa: S105 (a parameter name)


def secret_matches(presented: str | None, accepted: Sequence[str]) -> bool:
    """True when ``presented`` equals one of the ``accepted`` secrets.

    Every accepted secret is compared (no early exit), each with
    :func:`hmac.compare_digest`, so the time taken does not reveal which one matched or how
    much of it did.
    """
    if not presented:
        return False
    candidate = presented.encode()
    matched = False
    for secret in accepted:
        matched |= hmac.compare_digest(candidate, secret.encode())
    return matched
