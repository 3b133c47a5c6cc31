"""A template for your own handler: copy this file, rename it, and list it in WEBHOOK_HANDLERS.

    cp handlers/_template.py handlers/my_handler.py
    WEBHOOK_HANDLERS=handlers.log_runs,handlers.my_handler

The contract:

- Expose ``handle(payload, context)``, a plain function (run in a worker thread) or an
  ``async def`` (awaited on the event loop: don't block in it).
- ``payload`` is a validated :class:`receiver.RulePayload`: ``payload.rule_id``,
  ``payload.start_time`` / ``end_time``, ``payload.runs`` (each a ``Run`` with ``id``,
  ``name``, ``status``, ``inputs``, ``outputs``, ``app_path``, ...; fields LangSmith adds
  later are kept, e.g. ``run.model_extra["new_field"]``).
- Declare your variables in a class named ``Options`` (a ``HandlerOptions``: pydantic
  fields, each with the variable it reads as ``validation_alias``). They are read and
  checked when the server (or Modal function) starts, a bad value stops it with a message
  naming the variable, and ``webhook_app.py`` forwards the non-secret ones to Modal for
  you. Type a credential ``SecretStr | None`` and put it in a Modal secret
  (``WEBHOOK_EXTRA_SECRETS``).
- ``context`` gives you ``options`` (your ``Options``), ``delivery_id``, ``attempt`` (1 on
  the first try), ``settings`` (the receiver's own), ``logger`` (lines are tagged with the
  delivery id) and ``run_key(run.id)``, a UUID that is the same on every retry and
  redelivery: use it as the id of what you create, so a retry never duplicates it.
- Without ``SOURCES`` a handler takes rule deliveries. ``SOURCES = ("rule", "engine")``
  (names as in ``docs/senders.md``) makes it take those senders' events too: an
  ``EngineEvent`` then arrives instead of a ``RulePayload`` (tell them apart with
  ``isinstance``). On a route with run conditions, ``payload.runs`` holds only the runs the
  route selects.
- Test it without a server: ``receiver.testing`` builds events and the context.
- Raise to fail. The handler is retried with exponential backoff (``WEBHOOK_MAX_ATTEMPTS``);
  after the last attempt the delivery is marked dead and can be replayed with
  ``uv run scripts/replay.py``. Handlers that succeeded are not run again.
- Import heavy libraries inside ``handle``, not at the top: the module is imported when
  the Modal app is defined and when the server starts.

This template counts the delivery's runs by status and logs the errored ones (only those
named in ``TEMPLATE_ERROR_NAMES``, when it is set).
"""

from __future__ import annotations

from collections import Counter

from pydantic import Field, field_validator

from receiver import HandlerContext, HandlerOptions, RulePayload
from receiver.settings import CommaList, split_list


class Options(HandlerOptions):
    """The variables this handler reads (an empty or unset variable takes the default)."""

    error_names: CommaList = Field((), validation_alias="TEMPLATE_ERROR_NAMES")

    _split = field_validator("error_names", mode="before")(split_list)


def handle(payload: RulePayload, context: HandlerContext) -> None:
    """Log how many runs of each status the delivery carries, and which ones errored."""
    names = context.options.error_names
    by_status = Counter(run.status or "unknown" for run in payload.runs)
    context.logger.info("rule %s: %s", payload.rule_id, dict(by_status))
    for run in payload.runs:
        if run.status == "error" and (not names or run.name in names):
            key = context.run_key(run.id)  # stable: safe to use as an id downstream
            context.logger.warning(
                "run %s (%s) errored: %s [key %s]", run.id, run.name, run.error, key
            )
