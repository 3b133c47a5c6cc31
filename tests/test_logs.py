"""Secrets never reach a log line: query values and configured secrets are redacted."""

import logging
import sys

from uvicorn.logging import AccessFormatter

from receiver.logs import RedactingFilter, redact


def test_secret_query_values_are_redacted_wherever_they_stand():
    assert redact('"POST /?secret=abc&x=1 HTTP/1.1"', ()) == '"POST /?secret=***&x=1 HTTP/1.1"'
    assert redact("GET /deliveries/1?a=b&secret=abc", ()) == "GET /deliveries/1?a=b&secret=***"
    assert redact("SECRET=abc", ()) == "SECRET=***"
    assert redact("nosecret=abc", ()) == "nosecret=abc"


def test_every_spelling_of_a_secret_parameter_is_redacted():
    """``?%73ecret=`` reaches the app as ``secret``: the log must not print its value."""
    encoded = "".join(f"%{byte:02X}" for byte in b"hunter2")
    line = f'"POST /?%73ecret={encoded}&x=1 HTTP/1.1"'
    assert redact(line, ("hunter2",)) == '"POST /?%73ecret=***&x=1 HTTP/1.1"'
    assert redact("GET /?Token=abc", ()) == "GET /?Token=***"
    assert redact("GET /?a=1&%74%6Fken=zz", ()) == "GET /?a=1&%74%6Fken=***"
    assert redact("GET /?secrets=abc&tokens=x", ()) == "GET /?secrets=abc&tokens=x"


def test_configured_secrets_are_redacted_anywhere_in_a_message():
    assert redact("token hunter2 leaked (hunter2)", ("hunter2",)) == "token *** leaked (***)"
    assert redact("nothing here", ("", "hunter2")) == "nothing here"


def record(msg, args, exc_info=None):
    return logging.LogRecord("x", logging.INFO, __file__, 1, msg, args, exc_info)


def test_the_filter_keeps_uvicorns_access_log_arguments_usable():
    access = record(
        '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "POST", "/?secret=hunter2", "1.1", 202)
    )
    RedactingFilter(["hunter2"]).filter(access)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(access)
    assert line == '127.0.0.1:5 - "POST /?secret=*** HTTP/1.1" 202 Accepted'


def test_the_filter_redacts_dict_arguments_and_tracebacks():
    filter_ = RedactingFilter(["hunter2"])
    with_dict = record("%(who)s", ({"who": "hunter2"},))
    filter_.filter(with_dict)
    assert with_dict.getMessage() == "***"
    try:
        raise ValueError("bad key hunter2")
    except ValueError:
        failing = record("failed", (), sys.exc_info())
    filter_.filter(failing)
    assert "hunter2" not in logging.Formatter().format(failing)
    assert "bad key ***" in logging.Formatter().format(failing)
