"""Evaluators for tests of handlers.remote_evaluator, steered through module state."""

import asyncio
import threading

from langsmith.evaluation import EvaluationResult

calls: list[str] = []  # run ids, in call order
fail_for: set[str] = set()  # run ids whose evaluation raises
score = {"value": 1.0}  # what `constant` scores
_lock = threading.Lock()


def reset() -> None:
    calls.clear()
    fail_for.clear()
    score["value"] = 1.0


def constant(run):
    """One result, ``score["value"]``; raises for runs in ``fail_for``."""
    with _lock:
        calls.append(str(run.id))
    if str(run.id) in fail_for:
        raise ValueError(f"judge unavailable for {run.id}")
    return {"key": "quality", "score": score["value"], "comment": "steady"}


async def several(run):
    """Async, three results in the shapes an evaluator may return them."""
    await asyncio.sleep(0)
    return {
        "results": [
            EvaluationResult(key="relevance", score=0.123456, comment="an LLM judge"),
            {"key": "label", "value": "good"},
            {"key": "fix", "correction": {"answer": (run.inputs or {}).get("question")}},
        ]
    }


def nothing(run):
    return None


async def hangs(run):
    await asyncio.sleep(60)


def not_feedback(run):
    return {"score": 1}  # no key
