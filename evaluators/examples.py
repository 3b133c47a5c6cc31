"""Example evaluators for ``handlers.remote_evaluator``: copy one to start your own.

An evaluator takes a run (a :class:`receiver.Run` whose ``inputs`` and ``outputs`` are
already fetched, wherever LangSmith put them) and returns one result, a list of them, or
None. A result is a dict or LangSmith's ``EvaluationResult``: ``key``, ``score`` and/or
``value``, optionally ``comment`` and ``correction``. It may be ``async``, and may call an
LLM judge or a model: it runs outside LangSmith, with network access.

    REMOTE_EVALUATORS=evaluators.examples:has_output,evaluators.examples:output_length
"""

from __future__ import annotations

import json

from receiver import Run

EMPTY = (None, "", [], {})


def has_output(run: Run) -> dict:
    """1 when the run produced some non-empty output, else 0: a silent failure shows up as
    a score of 0 even when the run's status says success."""
    filled = [key for key, value in (run.outputs or {}).items() if value not in EMPTY]
    comment = f"non-empty: {', '.join(filled)}" if filled else "no output"
    return {"key": "has_output", "score": 1 if filled else 0, "comment": comment}


def output_length(run: Run) -> dict:
    """The length of the run's outputs as JSON, in characters (0 without outputs)."""
    size = len(json.dumps(run.outputs, default=str)) if run.outputs else 0
    return {"key": "output_length", "score": size}
