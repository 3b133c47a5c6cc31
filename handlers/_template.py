"""A template for your own handler: copy this file, rename it, and list it in WEBHOOK_HANDLERS.

    cp handlers/_template.py handlers/my_handler.py
    WEBHOOK_HANDLERS=handlers.log_runs,handlers.my_handler

The contract:

- Expose ``handle(payload, context)``, a plain function (run in a worker thread) or an
  ``async def`` (awaited on the event loop: don't block in it).
- ``payload`` is a validated :class:`receiver.payload.RulePayload`: ``payload.rule_id``,
  ``payload.start_time`` / ``end_time``, ``payload.runs`` (each a ``Run`` with ``id``,
  ``name``, ``status``, ``inputs``, ``outputs``, ``app_path``, ...; fields LangSmith adds
  later are kept, e.g. ``run.model_extra["new_field"]``).
- ``context`` gives you ``delivery_id``, ``attempt`` (1 on the first try), ``settings``
  (``settings.get("MY_HANDLER_TOKEN")`` reads your own env vars), ``logger`` (lines are
  tagged with the delivery id) and ``run_key(run.id)``, a UUID that is the same on every
  retry and redelivery: use it as the id of what you create, so a retry never duplicates it.
- Raise to fail. The handler is retried with exponential backoff (``WEBHOOK_MAX_ATTEMPTS``);
  after the last attempt the delivery is marked dead and can be replayed with
  ``uv run scripts/replay.py``. Handlers that succeeded are not run again.
- Import heavy libraries inside ``handle``, not at the top: the module is imported at
  start-up by the web function too, whose cold start should stay small.

This template counts the delivery's runs by status and logs the errored ones.
"""

from __future__ import annotations

from collections import Counter

from receiver.dispatch import HandlerContext
from receiver.payload import RulePayload


def handle(payload: RulePayload, context: HandlerContext) -> None:
    """Log how many runs of each status the delivery carries, and which ones errored."""
    by_status = Counter(run.status or "unknown" for run in payload.runs)
    context.logger.info("rule %s: %s", payload.rule_id, dict(by_status))
    for run in payload.runs:
        if run.status == "error":
            key = context.run_key(run.id)  # stable: safe to use as an id downstream
            context.logger.warning(
                "run %s (%s) errored: %s [key %s]", run.id, run.name, run.error, key
            )
