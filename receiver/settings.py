"""Settings: every environment variable the receiver reads, parsed once into one typed object.

Nothing else in the project reads ``os.environ``; code receives a :class:`Settings`.

    settings = Settings.from_env()
    settings.secrets  # ('s3cr3t',)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HANDLERS = ("handlers.log_runs",)
DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024
DEFAULT_LANGSMITH_WEB_URL = "https://smith.langchain.com"
DEFAULT_STORE_PATH = Path("data") / "deliveries.sqlite3"


class SettingsError(ValueError):
    """An environment variable holds a value the receiver cannot use."""


def _split_list(raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def _number(env: Mapping[str, str], name: str, default: float, kind: type = int) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative (got {raw})")
    return value


@dataclass(frozen=True)
class Settings:
    """What the receiver needs to know, from the environment or given directly in tests.

    The fields, with the variable each comes from, are listed in README.md.
    """

    secrets: tuple[str, ...] = field(default=(), repr=False)
    handlers: tuple[str, ...] = DEFAULT_HANDLERS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    langsmith_web_url: str = DEFAULT_LANGSMITH_WEB_URL
    store_path: Path = DEFAULT_STORE_PATH
    max_attempts: int = 5
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    worker_concurrency: int = 64
    store_busy_seconds: float = 2.0
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        settings = cls(
            secrets=_split_list(env.get("LS_WEBHOOK")),
            handlers=_split_list(env.get("WEBHOOK_HANDLERS")) or DEFAULT_HANDLERS,
            max_body_bytes=int(_number(env, "WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            langsmith_web_url=(env.get("LANGSMITH_WEB_URL") or DEFAULT_LANGSMITH_WEB_URL).rstrip(
                "/"
            ),
            store_path=Path(env.get("WEBHOOK_STORE_PATH") or DEFAULT_STORE_PATH),
            max_attempts=max(1, int(_number(env, "WEBHOOK_MAX_ATTEMPTS", 5))),
            retry_base_seconds=_number(env, "WEBHOOK_RETRY_BASE_SECONDS", 2.0, float),
            retry_max_seconds=_number(env, "WEBHOOK_RETRY_MAX_SECONDS", 300.0, float),
            worker_concurrency=max(1, int(_number(env, "WEBHOOK_WORKER_CONCURRENCY", 64))),
            extra=dict(env),
        )
        return settings

    def get(self, name: str, default: str | None = None) -> str | None:
        """A handler's own setting (e.g. ``SLACK_WEBHOOK_URL``), from the same environment."""
        value = self.extra.get(name)
        return value if value not in (None, "") else default

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): exponential backoff."""
        return min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (attempt - 1))
