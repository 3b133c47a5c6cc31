"""Run your own evaluators over a rule's runs and write their results back as feedback.

LangSmith's hosted code evaluators cannot reach the network, so the rules docs name the
webhook action as the way to evaluate elsewhere: a rule sends its runs here, an evaluator
you write (``module:function``, e.g. ``evaluators.examples:has_output``; any LLM judge or
model) scores each run, and the scores land on the run in LangSmith as model feedback.

- Each evaluator gets each run of the delivery once, with its ``inputs``/``outputs``
  fetched first wherever LangSmith put them (:class:`receiver.langsmith_api.RunData`, the
  same code the corrections handler uses); sync evaluators run in threads, async ones on
  the loop, ``REMOTE_EVALUATOR_CONCURRENCY`` runs at a time, each call within
  ``REMOTE_EVALUATOR_TIMEOUT_SECONDS``.
- A feedback's id is derived from (run id, key): a retry or a redelivery writes the same
  ids. The feedback already on the runs is read first (one request per 100 runs), so a
  result is created when new, updated when it changed (a fixed evaluator, replayed), and
  left alone when equal: a replay creates nothing more.
- ``feedback_source_type`` is ``model``; the source info names the evaluator, the delivery
  and how many results the evaluation gave. A retry (attempt 2 and on) skips the
  evaluations whose results are all there already; a replay (attempt 1) evaluates again.
- With ``REMOTE_EVALUATOR_REQUIRES_FEEDBACK`` (keys), a run is evaluated only once those
  keys are on it: LangSmith's rules poll independently, so this webhook may fire before
  another rule's evaluator has scored the run. The handler re-checks with backoff for up
  to ``REMOTE_EVALUATOR_WAIT_SECONDS``; runs still lacking them are skipped, with the reason.
- An evaluator that raises or times out fails the attempt after the other results are
  written, so that it is retried (and ends dead, replayable, if it keeps failing).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import time
import uuid
from collections import Counter
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_settings import NoDecode

from receiver import HandlerContext, HandlerOptions, RulePayload, Run
from receiver.dispatch import describe_error
from receiver.langsmith_api import BlobError, RunData, feedback_by_run, shared_client
from receiver.settings import CommaList, split_list

EvaluatorRef = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
]
FEEDBACK_FIELDS = ("score", "value", "comment", "correction")


class Options(HandlerOptions):
    """This handler's variables, read and checked at start-up."""

    evaluators: Annotated[tuple[EvaluatorRef, ...], NoDecode] = Field(
        ("evaluators.examples:has_output",), validation_alias="REMOTE_EVALUATORS", min_length=1
    )
    concurrency: int = Field(8, validation_alias="REMOTE_EVALUATOR_CONCURRENCY", ge=1, le=64)
    timeout: float = Field(60.0, validation_alias="REMOTE_EVALUATOR_TIMEOUT_SECONDS", gt=0, le=900)
    requires_feedback: CommaList = Field((), validation_alias="REMOTE_EVALUATOR_REQUIRES_FEEDBACK")
    wait_seconds: float = Field(
        120.0, validation_alias="REMOTE_EVALUATOR_WAIT_SECONDS", ge=0, le=900
    )

    _split = field_validator("evaluators", "requires_feedback", mode="before")(split_list)

    @field_validator("evaluators")
    @classmethod
    def _findable(cls, refs: tuple[str, ...]) -> tuple[str, ...]:
        """A module that is not on the path fails the start, not the first delivery. It is
        located, not imported: an LLM client it imports stays out of the web function."""
        for ref in refs:
            module = ref.partition(":")[0]
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise ValueError(f"module {module!r} of evaluator {ref!r} is not on the path")
        return tuple(dict.fromkeys(refs))

    def local_modules(self) -> tuple[str, ...]:
        return tuple(ref.partition(":")[0] for ref in self.evaluators)


class Result(BaseModel):
    """One result of an evaluator: a dict, or LangSmith's ``EvaluationResult``."""

    model_config = ConfigDict(from_attributes=True, extra="ignore")

    key: str = Field(min_length=1, max_length=200)
    score: bool | int | float | None = None
    value: bool | int | float | str | dict | None = None
    comment: str | None = None
    correction: dict | str | None = None

    @field_validator("score")
    @classmethod
    def _four_decimals(cls, score: Any) -> Any:
        """What the SDK sends (and LangSmith stores): compared as such on a replay."""
        return round(score, 4) if isinstance(score, float) else score

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FEEDBACK_FIELDS}


def results_of(returned: Any) -> list[Result]:
    """An evaluator's return value as results: None, one, a list, or ``{"results": [...]}``
    (LangSmith's ``EvaluationResults``)."""
    if returned is None:
        return []
    if isinstance(returned, dict) and "key" not in returned and "results" in returned:
        returned = returned["results"]
    items = returned if isinstance(returned, list | tuple) else [returned]
    return [Result.model_validate(item) for item in items]


@cache
def load_evaluator(ref: str) -> Callable[[Run], Any]:
    """The function ``ref`` (``module:function``) names, imported on first use."""
    module, _, name = ref.partition(":")
    function = getattr(importlib.import_module(module), name, None)
    if not callable(function):
        raise TypeError(f"evaluator {ref!r}: module {module!r} has no function {name!r}")
    return function


async def evaluate(ref: str, run: Run, timeout: float) -> list[Result]:
    """Call the evaluator on ``run`` (in a thread unless it is async), within ``timeout``."""
    function = load_evaluator(ref)
    if inspect.iscoroutinefunction(function):
        call = function(run)
    else:
        call = asyncio.to_thread(function, run)
    try:
        return results_of(await asyncio.wait_for(call, timeout))
    except TimeoutError:
        raise TimeoutError(f"no result within {timeout} s") from None


def write_result(
    client: Any, run: Run, result: Result, found: Any, feedback_id: uuid.UUID, source: dict
) -> str:
    """Create the feedback, or update it when it exists with other values (``found``, or a
    409: written meanwhile); return what was done."""
    from langsmith.utils import LangSmithConflictError

    fields = result.fields()
    if found is not None:
        if all(getattr(found, name) == value for name, value in fields.items()):
            return "unchanged"
        client.update_feedback(feedback_id, **fields)
        return "updated"
    try:
        client.create_feedback(
            run.id,
            result.key,
            **fields,
            trace_id=run.trace_id,
            session_id=run.session_id,
            start_time=run.start_time,
            feedback_id=feedback_id,
            feedback_source_type="model",
            source_info=source,
        )
    except LangSmithConflictError:
        client.update_feedback(feedback_id, **fields)
        return "updated"
    return "created"


async def wait_for_keys(
    client: Any, runs: list[Run], keys: set[str], on_run: dict[str, set[str]], seconds: float
) -> list[Run]:
    """The runs that have every feedback key in ``keys``, re-reading those that lack some
    with backoff (1 s, 2 s, ... 30 s) for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    delay = 1.0
    while True:
        lacking = [run for run in runs if not keys <= on_run.get(str(run.id), set())]
        if not lacking or time.monotonic() + delay > deadline:
            return [run for run in runs if run not in lacking]
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
        fresh = await asyncio.to_thread(
            feedback_by_run, client, [run.id for run in lacking], sorted(keys)
        )
        for run_id, items in fresh.items():
            on_run.setdefault(run_id, set()).update(item.key for item in items)


def _done_before(feedback: list, ref: str, delivery_id: str) -> bool:
    """Whether an earlier attempt of this delivery wrote all of ``ref``'s results."""
    mine = [
        f
        for f in feedback
        if f.feedback_source is not None
        and (f.feedback_source.metadata or {}).get("evaluator") == ref
        and f.feedback_source.metadata.get("delivery_id") == delivery_id
    ]
    return bool(mine) and len(mine) >= mine[0].feedback_source.metadata.get("results", 1)


async def handle(payload: RulePayload, context: HandlerContext) -> None:
    """Evaluate every run of the delivery and write the results as feedback."""
    options: Options = context.options
    client = shared_client(context.settings)
    data = RunData(client, context.settings)
    runs = list({run.id: run for run in payload.runs}.values())
    existing = await asyncio.to_thread(feedback_by_run, client, [run.id for run in runs])
    by_id = {str(f.id): f for items in existing.values() for f in items}
    skipped: Counter[str] = Counter()
    if options.requires_feedback:
        keys = set(options.requires_feedback)
        on_run = {run_id: {f.key for f in items} for run_id, items in existing.items()}
        ready = await wait_for_keys(client, runs, keys, on_run, options.wait_seconds)
        if len(ready) < len(runs):
            reason = f"no {', '.join(sorted(keys))} feedback after {options.wait_seconds:g} s"
            skipped[reason] = len(runs) - len(ready)
        runs = ready

    written: Counter[str] = Counter()
    failures: list[str] = []
    semaphore = asyncio.Semaphore(options.concurrency)

    async def evaluate_run(run: Run) -> None:
        async with semaphore:
            try:
                inputs = await asyncio.to_thread(data.get, run, "inputs", required=False)
                outputs = await asyncio.to_thread(data.get, run, "outputs", required=False)
            except BlobError as exc:
                context.logger.warning("run %s skipped: %s", run.id, exc)
                skipped[str(exc)] += 1
                return
            run = run.model_copy(update={"inputs": inputs, "outputs": outputs})
            for ref in options.evaluators:
                if context.attempt > 1 and _done_before(
                    existing.get(str(run.id), []), ref, context.delivery_id
                ):
                    written["done before"] += 1
                    continue
                try:
                    results = await evaluate(ref, run, options.timeout)
                    source = {
                        "evaluator": ref,
                        "delivery_id": context.delivery_id,
                        "results": len(results),
                    }
                    for result in results:
                        feedback_id = context.run_key(run.id, scope=result.key)
                        found = by_id.get(str(feedback_id))
                        written[
                            await asyncio.to_thread(
                                write_result, client, run, result, found, feedback_id, source
                            )
                        ] += 1
                except Exception as exc:
                    failures.append(f"run {run.id}, {ref}: {describe_error(exc)}")

    await asyncio.gather(*(evaluate_run(run) for run in runs))
    context.logger.info(
        "remote evaluation: runs=%d evaluators=%d %s failed=%d skipped=%d%s",
        len(payload.runs),
        len(options.evaluators),
        " ".join(f"{what.replace(' ', '_')}={count}" for what, count in sorted(written.items()))
        or "written=0",
        len(failures),
        sum(skipped.values()),
        "".join(f" [{count}x {reason}]" for reason, count in skipped.items()),
    )
    if failures:
        raise RuntimeError(f"{len(failures)} evaluation(s) failed; first: {failures[0]}")
