"""The LangSmith senders this receiver understands: one module per sender.

A sender module declares, as module attributes:

- ``NAME``: the source's name in routes files, records and listings;
- ``Event``: the pydantic model handlers receive (unknown fields kept: LangSmith adds
  fields over time) and ``Envelope``: the cheaper model the edge validates before answering
  (often the same class). An ``Event`` that is not also the ``Envelope`` (and the models
  only it uses) is declared with ``defer_build=True``: built by the worker on first use,
  never by the web container, which does not validate one;
- ``claims(body)``: whether a JSON object is this sender's, from its keys;
- ``subject(envelope)``: one line saying what the delivery is about, for listings;
- ``MATCH`` and ``facts(envelope)``: the route match keys that apply, and their values;
- optionally ``delivery_key(envelope)`` (LangSmith's own id for the delivery) and, for a
  sender of many runs, ``runs``, ``RUN_FIELDS`` (the run field each run match key reads)
  and ``narrow``.

To add a sender, write such a module and list it in :data:`SOURCES` (before ``unknown``,
which claims every object). ``docs/senders.md`` says how each sender is pointed here.

    found = recognise(body, preferred=[SOURCES["rule"]])
    found.source.name, found.source.subject(found.envelope)  # 'rule', 'd75d7417-...'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import jiter
from pydantic import BaseModel, ValidationError

from receiver.sources import agent_run, alert, context_hub, engine, prompt_commit, rule, unknown
from receiver.sources.agent_run import AgentRunEvent
from receiver.sources.alert import AlertEvent
from receiver.sources.context_hub import ContextHubEvent
from receiver.sources.engine import EngineEvent
from receiver.sources.prompt_commit import PromptCommitEvent
from receiver.sources.rule import FeedbackStat, RuleEnvelope, RulePayload, Run
from receiver.sources.unknown import UnknownEvent

__all__ = [
    "SOURCES",
    "AgentRunEvent",
    "AlertEvent",
    "BodyError",
    "ContextHubEvent",
    "EngineEvent",
    "FeedbackStat",
    "PromptCommitEvent",
    "Recognised",
    "RuleEnvelope",
    "RulePayload",
    "Run",
    "Source",
    "UnknownEvent",
    "recognise",
    "validation_reason",
]


@dataclass(frozen=True)
class RunFacts:
    """The run facts of one delivery: ``columns[key][i]`` is run ``i``'s value for ``key``."""

    count: int
    columns: dict[str, list[Any]]


@dataclass(frozen=True)
class Source:
    """A sender module, read once: what the edge, the routes and the worker ask of it."""

    module: ModuleType

    @property
    def name(self) -> str:
        return self.module.NAME

    @property
    def envelope(self) -> type[BaseModel]:
        return self.module.Envelope

    @property
    def event(self) -> type[BaseModel]:
        return self.module.Event

    @property
    def match_keys(self) -> frozenset[str]:
        """Every route match key that applies to this sender's deliveries."""
        return frozenset(self.module.MATCH) | self.run_keys

    @property
    def run_keys(self) -> frozenset[str]:
        """The match keys that apply to each run (none for a sender without runs)."""
        return frozenset(getattr(self.module, "RUN_FIELDS", ()))

    @property
    def has_runs(self) -> bool:
        return hasattr(self.module, "runs")

    def claims(self, body: dict[str, Any]) -> bool:
        return self.module.claims(body)

    def subject(self, envelope: BaseModel) -> str:
        return self.module.subject(envelope)

    def facts(self, envelope: BaseModel) -> dict[str, Any]:
        return self.module.facts(envelope)

    def delivery_key(self, envelope: BaseModel) -> str | None:
        """LangSmith's own id of this delivery (its retries repeat it), if the sender has one."""
        key = getattr(self.module, "delivery_key", None)
        return key(envelope) if key else None

    def run_count(self, envelope: BaseModel) -> int:
        return len(self.module.runs(envelope)) if self.has_runs else 0

    def run_facts(self, envelope: BaseModel, keys: Iterable[str] | None = None) -> RunFacts | None:
        """What run filters look at (``keys`` of it, every key by default), key by key: one
        column of values per key, a value per run; None for a sender without runs.

        By columns because the edge matches every run of a body before it answers: one list
        comprehension per key instead of a dict per run.
        """
        if not self.has_runs:
            return None
        fields = self.module.RUN_FIELDS
        runs = self.module.runs(envelope)
        # The edge's runs are parsed JSON: anything, though each is a dict in a valid body.
        if not all(type(run) is dict for run in runs):
            runs = [run if type(run) is dict else {} for run in runs]
        columns = {}
        for key in fields if keys is None else keys:
            field = fields[key]
            columns[key] = [run.get(field) for run in runs]
        return RunFacts(len(runs), columns)

    def keeps_every_run(self, conditions: Iterable[str]) -> bool:
        """Whether a route with these match conditions keeps every run of an event it takes
        (none of them is about runs)."""
        return not self.has_runs or self.module.RUN_FIELDS.keys().isdisjoint(conditions)

    def narrow(self, event: BaseModel, keep: Callable[[dict[str, Any]], bool]) -> BaseModel:
        """The event with only the runs ``keep`` selects (the event itself if it has none)."""
        if not self.has_runs:
            return event
        read = list(self.module.RUN_FIELDS.items())
        return self.module.narrow(event, lambda run: keep(_facts(run, read)))


def _facts(run: Any, read: list[tuple[str, str]]) -> dict[str, Any]:
    """``{match key: the run's field}`` of one of the worker's runs (a model, or a dict)."""
    fields = run if type(run) is dict else vars(run) if isinstance(run, BaseModel) else {}
    return {key: fields.get(field) for key, field in read}


SOURCES: dict[str, Source] = {
    module.NAME: Source(module)
    for module in (rule, alert, prompt_commit, engine, context_hub, agent_run, unknown)
}


class BodyError(ValueError):
    """The body is not a JSON object (any object is recognised, as ``unknown`` at worst)."""


@dataclass(frozen=True)
class Recognised:
    """The sender of a body and its envelope; ``problem`` says why a body that looked like a
    sender's (it has its keys) is kept as ``unknown`` instead."""

    source: Source
    envelope: BaseModel
    problem: str = ""


def validation_reason(exc: ValidationError, limit: int = 3) -> str:
    """A short, readable summary of what is wrong with a body."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def recognise(body: bytes | bytearray, preferred: Sequence[Source] = ()) -> Recognised:
    """Which sender's body this is, and its envelope: one parse.

    The body is parsed once (jiter, refusing a key repeated in any object: parsers differ
    on which copy wins, so a repeated ``runs`` could show handlers other runs than a proxy
    or an auditor saw), then the first source that claims the object validates it: the
    ``preferred`` ones (the route's senders) first. An object no sender claims is
    ``unknown``; so is one a sender claims (by its keys) whose fields are wrong, with the
    reason in ``problem``: LangSmith never retries a refused delivery, so it is kept.
    Raises :class:`BodyError` for a body that is not a JSON object, or repeats a key.
    """
    try:
        obj = jiter.from_json(bytes(body), catch_duplicate_keys=True)
    except ValueError as exc:
        raise BodyError(_parse_error(exc)) from None
    if not isinstance(obj, dict):
        raise BodyError(f"body: a JSON object is expected, not {_JSON_TYPES[type(obj)]}")
    claiming = (*preferred, *SOURCES.values())
    source = next(source for source in claiming if source.claims(obj))
    try:
        return Recognised(source, source.envelope.model_validate(obj))
    except ValidationError as exc:
        problem = f"not a valid {source.name} body: {validation_reason(exc)}"
    unknown = SOURCES["unknown"]
    return Recognised(unknown, unknown.envelope.model_validate(obj), problem)


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number"}
_JSON_TYPES |= {bool: "a boolean", type(None): "null"}


def _parse_error(exc: ValueError) -> str:
    """jiter's message, said for a sender: which key is repeated, or what is not JSON."""
    message = str(exc)
    if message.startswith("Detected duplicate key"):
        return f"body: {message.replace('Detected duplicate key', 'repeated key', 1)}"
    return f"body: not valid JSON: {message}"
