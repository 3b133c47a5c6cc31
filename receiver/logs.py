"""Logging set-up that keeps webhook secrets out of every log line, and every record on one.

uvicorn's access log records the full request line, query string included, and LangSmith's
documented URL form carries the secret there (``/?secret=...``; Agent Server's is
``?token=...``). :class:`RedactingFilter` rewrites the value of any ``secret`` or ``token``
query parameter, however its name is spelt (case, percent-encoding), and any configured
secret to ``***`` in every record that reaches a handler it is installed on. Secrets are
URL-safe ASCII (checked at start-up), so a configured secret reads the same in a URL.

The same filter escapes every code point that breaks a line (``\n``, ``\r``, U+0085,
U+2028, ...: what ``str.splitlines`` splits on) in the message and its arguments, where
payload text (a run's name, an error) ends up: a payload cannot forge a log line.
Tracebacks keep their ``\\n``.

    configure_logging(settings.redacted_values)
    logging.getLogger("x").info("GET /?secret=abc")  # logs "GET /?secret=***"
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "***"
# Any `name=value` pair of a query string (or standing alone); its name is compared once
# percent-decoded, since `?%73ecret=` reaches the app as `secret` too.
_QUERY_PAIR = re.compile(r"((?:^|[?&\s])([^=&\s\"'?]+)=)([^&\s\"']*)")
SECRET_PARAMETERS = frozenset({"secret", "token"})
_LINE_BREAKS = {
    code: f"\\u{code:04x}"
    for code in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)
}
_FOREIGN_BREAKS = {code: text for code, text in _LINE_BREAKS.items() if code != 0x0A}
# Loggers with handlers of their own (propagate=False) besides the root logger.
SERVER_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error")


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with ``secret=``/``token=`` query values and each of ``secrets`` as ``***``."""
    text = _QUERY_PAIR.sub(_redact_pair, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _redact_pair(match: re.Match[str]) -> str:
    if unquote_plus(match.group(2)).strip().lower() in SECRET_PARAMETERS:
        return match.group(1) + REDACTED
    return match.group(0)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts the message and its arguments, keeping their shape.

    Arguments are redacted one by one (not merged into the message) because some
    formatters, uvicorn's access formatter among them, unpack ``record.args``.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)

    def _clean(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return redact(value, self.secrets).translate(_LINE_BREAKS)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, dict):
            record.args = {key: self._clean(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(self._clean(value) for value in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:  # its own lines stay; a payload's line breaks in it do not
            record.exc_text = redact(record.exc_text, self.secrets).translate(_FOREIGN_BREAKS)
        return True


def install_redaction(secrets: Iterable[str]) -> None:
    """Add a :class:`RedactingFilter` to every handler of the root and server loggers."""
    redacting = RedactingFilter(secrets)
    for name in ("", *SERVER_LOGGERS):
        for handler in logging.getLogger(name).handlers:
            handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
            handler.addFilter(redacting)


def configure_logging(secrets: Iterable[str], level: int = logging.INFO) -> None:
    """Log to stderr at ``level`` with one line per record, secrets redacted."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_redaction(secrets)
