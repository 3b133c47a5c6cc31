"""Turn runs that received a feedback correction into examples of a LangSmith dataset.

The documentation's reference endpoint, done right:

- feedback is fetched for all of the delivery's runs at once (``list_feedback`` with about
  100 run ids a request, which keeps URLs short) and grouped by ``run_id``, never paired by
  position; with several corrections on a run, the newest wins; a correction that holds
  only a score (LangSmith's "audit evaluator scores") or nothing is no reference output: the
  run is skipped, counted with the reason; a run listed twice is one example;
- a run's inputs/outputs come from the run, from its presigned URL
  (``inputs_s3_urls["ROOT"]["presigned_url"]``: a bounded GET, from LangSmith's own hosts
  only), or, when the body has neither or the URL expired, from LangSmith through the SDK
  (:class:`receiver.langsmith_api.RunData`); a run whose data cannot be had anywhere is
  skipped and counted, the others go on;
- all examples go to LangSmith in one batched ``create_examples`` call (chunked for very
  large deliveries), each with an id derived from (dataset, run id): a redelivery or retry
  never duplicates an example, and "already exists" counts as success, unless a newer
  correction changed the outputs: then the example is updated (its metadata keeps the
  correction's id and time);
- the dataset is created when missing.

Settings (env): ``LS_DATASET_NAME`` (default ``webhook-corrections``),
``CORRECTIONS_FEEDBACK_KEYS`` (comma-separated keys whose corrections count; default: any),
``CORRECTIONS_SCORE_KEY`` + ``CORRECTIONS_SCORE_THRESHOLD`` (optional: runs scored at or above
the threshold on that key become examples with their own outputs),
``CORRECTIONS_MAX_EXAMPLE_BYTES`` (19 MB: larger examples are skipped), plus
``LANGSMITH_API_KEY``, ``LANGSMITH_ENDPOINT`` (self-hosted or EU) and the blob settings
(``LANGSMITH_BLOB_HOSTS``, ``LANGSMITH_BLOB_TIMEOUT_SECONDS``, ``LANGSMITH_MAX_BLOB_BYTES``).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from receiver import HandlerContext, HandlerOptions, RulePayload, Run
from receiver.langsmith_api import BlobError, RunData, chunked, feedback_by_run, shared_client
from receiver.settings import CommaList, split_list

EXAMPLES_PER_REQUEST = 500
EXAMPLE_IDS_PER_REQUEST = 100
BLOB_FETCHERS = 8


class Options(HandlerOptions):
    """This handler's variables, read and checked at start-up."""

    dataset_name: str = Field("webhook-corrections", validation_alias="LS_DATASET_NAME")
    feedback_keys: CommaList = Field((), validation_alias="CORRECTIONS_FEEDBACK_KEYS")
    score_key: str | None = Field(None, validation_alias="CORRECTIONS_SCORE_KEY")
    score_threshold: float | None = Field(None, validation_alias="CORRECTIONS_SCORE_THRESHOLD")
    # The SDK sends examples in requests of at most 20 MB (its `_batch_examples_by_size`),
    # one alone if larger, which LangSmith refuses: every retry would fail the same way.
    max_example_bytes: int = Field(
        19_000_000, validation_alias="CORRECTIONS_MAX_EXAMPLE_BYTES", gt=0, le=19_000_000
    )

    _split = field_validator("feedback_keys", mode="before")(split_list)


class ExampleTooLarge(ValueError):
    """An example larger than LangSmith takes in one request (skipped: no retry helps)."""


@dataclass(frozen=True)
class Candidate:
    """A run chosen to become an example; ``outputs`` None means "the run's own outputs"."""

    run: Run
    feedback_key: str
    outputs: dict[str, Any] | None
    feedback: Any = None  # the correction it comes from (None for a score at the threshold)


def relevant_feedback(client: Any, run_ids: list[uuid.UUID], options: Options) -> dict[str, list]:
    """The feedback on ``run_ids`` this handler may use (all keys, unless limited)."""
    keys = None
    if options.feedback_keys:
        keys = sorted({*options.feedback_keys, *([options.score_key] if options.score_key else [])})
    return feedback_by_run(client, run_ids, keys)


def _newest(feedback: list) -> Any:
    return max(feedback, key=lambda f: (f.modified_at or f.created_at, f.created_at))


def not_an_output(correction: Any) -> str | None:
    """Why a correction is no reference output, or None if it is one.

    LangSmith's "audit evaluator scores" flow writes ``correction={"score": 1}``: a
    corrected score, not a corrected answer.
    """
    if correction == {}:
        return "correction is empty"
    if isinstance(correction, dict) and set(correction) == {"score"}:
        return "correction holds only a score"
    return None


def choose(
    runs: list[Run], feedback: dict[str, list], options: Options, skipped: Counter[str]
) -> list[Candidate]:
    """The runs that become examples: a correction (newest wins), or a score at the
    threshold; each run once. Runs with only corrections that are no outputs are counted in
    ``skipped`` by reason."""
    chosen = []
    unique: dict[uuid.UUID, Run] = {}
    for run in runs:
        unique.setdefault(run.id, run)  # a run listed twice is one example
    for run in unique.values():
        on_run = feedback.get(str(run.id), [])
        corrections = [
            f
            for f in on_run
            if f.correction is not None
            and (not options.feedback_keys or f.key in options.feedback_keys)
        ]
        outputs_given = [f for f in corrections if not_an_output(f.correction) is None]
        if outputs_given:
            newest = _newest(outputs_given)
            correction = newest.correction
            outputs = correction if isinstance(correction, dict) else {"output": correction}
            chosen.append(Candidate(run, newest.key, outputs, newest))
        elif _scored_enough(on_run, options):
            chosen.append(Candidate(run, options.score_key, None))
        elif corrections:
            skipped[not_an_output(_newest(corrections).correction)] += 1
    return chosen


def _scored_enough(on_run: list, options: Options) -> bool:
    """Whether the run's newest score on ``score_key`` reaches the threshold (if set)."""
    if options.score_key is None or options.score_threshold is None:
        return False
    scores = [f for f in on_run if f.key == options.score_key and f.score is not None]
    return bool(scores) and _newest(scores).score >= options.score_threshold


def build_example(
    candidate: Candidate,
    dataset_id: uuid.UUID,
    rule_id: uuid.UUID,
    options: Options,
    data: RunData,
) -> dict[str, Any]:
    """The example for one candidate, with an id that is the same on every retry."""
    run = candidate.run
    inputs = data.get(run, "inputs")
    outputs = candidate.outputs or data.get(run, "outputs")
    size = len(json.dumps(inputs, default=str)) + len(json.dumps(outputs, default=str))
    if size > options.max_example_bytes:
        raise ExampleTooLarge(
            f"example of {size} bytes is over CORRECTIONS_MAX_EXAMPLE_BYTES"
            f" ({options.max_example_bytes})"
        )
    return {
        "id": uuid.uuid5(dataset_id, str(run.id)),
        "inputs": inputs,
        "reference_outputs": outputs,
        "source_run_id": run.id,
        "metadata": {
            "rule_id": str(rule_id),
            "feedback_key": candidate.feedback_key,
            "run_name": run.name,
            "source": "langsmith-modal-webhooks",
            **_correction_metadata(candidate.feedback),
        },
    }


def ensure_dataset(client: Any, name: str) -> uuid.UUID:
    """The id of the dataset called ``name``, created when missing."""
    from langsmith.utils import LangSmithConflictError, LangSmithNotFoundError

    try:
        return client.read_dataset(dataset_name=name).id
    except LangSmithNotFoundError:
        pass
    try:
        description = "Runs corrected through feedback, collected by a LangSmith webhook."
        return client.create_dataset(name, description=description).id
    except LangSmithConflictError:  # created meanwhile by a concurrent delivery
        return client.read_dataset(dataset_name=name).id


def _correction_metadata(feedback: Any) -> dict[str, str]:
    """The correction's id and time, kept on the example: what makes "newer" decidable."""
    if feedback is None:
        return {}
    at = feedback.modified_at or feedback.created_at
    return {"feedback_id": str(feedback.id), "feedback_at": at.isoformat()}


def _supersedes(example: dict, existing: Any) -> bool:
    """Whether ``example`` (from a correction) should replace the stored one: its outputs
    differ and its correction is newer (or the stored one does not say when it was made)."""
    ours = example["metadata"].get("feedback_at")
    if ours is None or example["reference_outputs"] == existing.outputs:
        return False
    theirs = (existing.metadata or {}).get("feedback_at")
    return theirs is None or datetime.fromisoformat(ours) > datetime.fromisoformat(theirs)


def write_examples(
    client: Any, dataset_id: uuid.UUID, examples: list[dict]
) -> tuple[int, int, int]:
    """Create the examples that do not exist yet, and update those a newer correction
    changed; return (created, already present, updated)."""
    from langsmith.utils import LangSmithConflictError

    created = present = updated = 0
    for chunk in chunked(examples, EXAMPLES_PER_REQUEST):
        try:
            client.create_examples(dataset_id=dataset_id, examples=list(chunk))
            created += len(chunk)
            continue
        except LangSmithConflictError:
            pass  # some already exist (a redelivery, a retry, a later correction)
        ids = [example["id"] for example in chunk]
        existing = {
            example.id: example
            for id_chunk in chunked(ids, EXAMPLE_IDS_PER_REQUEST)
            for example in client.list_examples(dataset_id=dataset_id, example_ids=list(id_chunk))
        }
        missing = [example for example in chunk if example["id"] not in existing]
        if missing:
            client.create_examples(dataset_id=dataset_id, examples=missing)
        changed = [
            {"id": e["id"], "outputs": e["reference_outputs"], "metadata": e["metadata"]}
            for e in chunk
            if e["id"] in existing and _supersedes(e, existing[e["id"]])
        ]
        if changed:
            client.update_examples(dataset_id=dataset_id, updates=changed)
        created += len(missing)
        updated += len(changed)
        present += len(chunk) - len(missing) - len(changed)
    return created, present, updated


def handle(payload: RulePayload, context: HandlerContext) -> None:
    """Create one dataset example per corrected run of the delivery."""
    options = context.options
    client = shared_client(context.settings)
    data = RunData(client, context.settings)
    run_ids = list(dict.fromkeys(run.id for run in payload.runs))
    feedback = relevant_feedback(client, run_ids, options)
    skipped: Counter[str] = Counter()
    candidates = choose(payload.runs, feedback, options, skipped)
    created = present = updated = 0
    if candidates:
        dataset_id = ensure_dataset(client, options.dataset_name)

        def build(candidate: Candidate) -> dict | str:
            try:
                return build_example(candidate, dataset_id, payload.rule_id, options, data)
            except (BlobError, ExampleTooLarge) as exc:
                context.logger.warning("run %s skipped: %s", candidate.run.id, exc)
                return str(exc)

        examples = []
        with ThreadPoolExecutor(BLOB_FETCHERS) as pool:
            for result in pool.map(build, candidates):
                if isinstance(result, str):
                    skipped[result] += 1
                else:
                    examples.append(result)
        if examples:
            created, present, updated = write_examples(client, dataset_id, examples)
    context.logger.info(
        "corrections: runs=%d corrected=%d created=%d updated=%d already_present=%d skipped=%d%s"
        " dataset=%s",
        len(payload.runs),
        len(candidates),
        created,
        updated,
        present,
        sum(skipped.values()),
        "".join(f" [{count}x {reason}]" for reason, count in skipped.items()),
        options.dataset_name,
    )
