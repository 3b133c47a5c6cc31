"""Who may use the console: the token, the browser's session cookie, its CSRF token.

The console's credential is ``WEBHOOK_CONSOLE_TOKEN``, never the webhook secret LangSmith
holds. A browser presents it once, in the login form; the session is then a cookie signed
with ``itsdangerous`` (a key derived from the token: rotating the token ends every
session), ``HttpOnly``, ``SameSite=Strict``, ``Secure`` on https, expiring after
``WEBHOOK_CONSOLE_SESSION_HOURS``. It carries a random CSRF token that every form repeats.
Scripts send ``Authorization: Bearer <token>`` to the JSON API instead; the API takes no
cookie, so a page elsewhere cannot drive it through the browser.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from receiver.settings import Settings

COOKIE = "console_session"
SALT = "langsmith-webhooks console session"


@dataclass(frozen=True)
class Session:
    """A logged-in browser: its CSRF token."""

    csrf: str


class Sessions:
    """Issues and checks console sessions for one configured token."""

    def __init__(self, settings: Settings) -> None:
        assert settings.console_token is not None
        self._token = settings.console_token.get_secret_value().encode()
        key = hmac.new(self._token, b"console session key", hashlib.sha256).hexdigest()
        self._serializer = URLSafeTimedSerializer(key, salt=SALT)
        self.max_age = int(settings.console_session_hours * 3600)

    def token_matches(self, presented: str | None) -> bool:
        """Constant-time comparison with the console token."""
        return presented is not None and hmac.compare_digest(presented.encode(), self._token)

    def start(self, request: Request, response: Response) -> None:
        """Set a new session cookie on ``response``."""
        value = self._serializer.dumps({"csrf": secrets.token_urlsafe(32)})
        response.set_cookie(
            COOKIE,
            value,
            max_age=self.max_age,
            path="/",
            secure=is_https(request),
            httponly=True,
            samesite="strict",
        )

    def end(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path="/", secure=is_https(request), httponly=True, samesite="strict"
        )

    def of(self, request: Request) -> Session | None:
        """The request's session, or None (no cookie, a forged one, or expired)."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is one
            return None
        return Session(data["csrf"]) if isinstance(data, dict) and "csrf" in data else None


def csrf_matches(session: Session, presented: str | None) -> bool:
    """Whether a form's CSRF token is the session's (constant-time)."""
    return presented is not None and hmac.compare_digest(presented, session.csrf)


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https (Modal's proxy says so in a header)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    return request.url.scheme == "https" or forwarded == "https"
