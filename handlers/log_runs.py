"""Log one structured line per run: the default handler, and the simplest one to read.

Each line is a JSON object with the run's id, name, run_type, status, error and a link to
the run in the LangSmith web app (``LANGSMITH_WEB_URL`` + the run's ``app_path``):

    delivery=3f1c… run {"id": "6ab8…", "name": "Search", "run_type": "tool",
    "status": "success", "error": null, "url": "https://smith.langchain.com/o/…/r/6ab8…"}
"""

from __future__ import annotations

import json
import logging

from receiver import HandlerContext, RulePayload, Run


def run_url(run: Run, web_url: str) -> str | None:
    """The run's page in the LangSmith web app, or None when LangSmith sent no ``app_path``."""
    return f"{web_url}{run.app_path}" if run.app_path else None


async def handle(payload: RulePayload, context: HandlerContext) -> None:
    """Write one log line per run of the delivery (async: logging does not block)."""
    if not context.logger.isEnabledFor(logging.INFO):
        return
    for run in payload.runs:
        line = {
            "id": str(run.id),
            "name": run.name,
            "run_type": run.run_type,
            "status": run.status,
            "error": run.error,
            "url": run_url(run, context.settings.langsmith_web_url),
        }
        context.logger.info("run %s", json.dumps(line, ensure_ascii=False))
