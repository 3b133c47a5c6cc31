"""Routes: which deliveries reach which handlers, declared in a TOML file (``WEBHOOK_ROUTES``).

A route takes deliveries POSTed to its ``path`` from the senders in its ``sources``, when
every condition of its ``match`` table holds, and hands them to its ``handlers``. Run
conditions (``run_status``, ``tags``, ...) select runs: a rule delivery matches when one of
its runs passes them, and the route's handlers see only the runs that do. Without a routes
file there is one route, ``default``: ``/``, rule deliveries, ``WEBHOOK_HANDLERS``.
``docs/routes.md`` is the reference.

    table = load_routes(settings, SOURCES)
    [route.name for route in table.matching("/", source, facts, run_facts)]  # ['prod-errors']

Nothing here knows a sender: which match keys apply to which source is read from the
sources passed in, so adding a sender needs no change here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from receiver.settings import Duration, ModulePath, Settings, SettingsError

RouteName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
RoutePath = Annotated[str, StringConstraints(pattern=r"^/([A-Za-z0-9._~-]+/)*[A-Za-z0-9._~-]*$")]
Values = tuple[Annotated[str, StringConstraints(min_length=1)], ...]


class SourceInfo(Protocol):
    """What routes need of a sender (``receiver.sources.Source`` provides it)."""

    @property
    def match_keys(self) -> frozenset[str]: ...


class RunFactsLike(Protocol):
    """A delivery's run facts by column (``receiver.sources.RunFacts`` provides it)."""

    count: int
    columns: dict[str, list[Any]]


class HandlerInfo(Protocol):
    """What routes need of a loaded handler (``receiver.registry.Handler`` provides it)."""

    name: str
    sources: tuple[str, ...]


class Match(BaseModel):
    """Conditions on a delivery, all AND-ed; a list means "any of these"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_id: Values | None = None
    run_status: Values | None = None
    run_type: Values | None = None
    run_name: Values | None = None
    tags: Values | None = None  # a run with any of these tags
    feedback_key: Values | None = None  # a run with feedback under any of these keys
    event_type: Values | None = None
    max_severity: int | None = None  # Engine: severity 1 is the most severe
    alert_rule_id: Values | None = None
    project_name: Values | None = None
    prompt_name: Values | None = None
    repo_handle: Values | None = None
    assistant_id: Values | None = None

    @cached_property
    def conditions(self) -> dict[str, Any]:
        """The conditions set, by key: lower-cased values (matching ignores case) or a number."""
        return {
            key: value if isinstance(value, int) else frozenset(v.lower() for v in value)
            for key, value in self
            if value is not None
        }


def _holds(key: str, fact: Any, wanted: Any) -> bool:
    if fact is None:
        return False
    if type(fact) is str:  # the common case first: this runs per run, per route
        return fact.lower() in wanted
    if key == "max_severity":
        return fact <= wanted
    if isinstance(fact, list | tuple | dict):  # tags; feedback_stats (its keys)
        return any(str(item).lower() in wanted for item in fact)
    return str(fact).lower() in wanted


def _passing(key: str, column: list[Any], wanted: Any) -> list[bool]:
    """Per run, whether its value in ``column`` meets the condition (strings inline: this
    runs per run, per condition, before the 202)."""
    return [
        fact.lower() in wanted if type(fact) is str else _holds(key, fact, wanted)
        for fact in column
    ]


def _keeps(run: Mapping[str, Any], conditions: Iterable[tuple[str, Any]]) -> bool:
    # A loop rather than all(<generator>): this runs per run, per route, before the 202.
    for key, wanted in conditions:  # noqa: SIM110
        if key in run and not _holds(key, run[key], wanted):
            return False
    return True


class Route(BaseModel):
    """One ``[[routes]]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RouteName
    path: RoutePath = "/"
    sources: tuple[str, ...] = Field(("rule",), min_length=1)
    handlers: tuple[ModulePath, ...] = Field(min_length=1)
    match: Match = Match()
    # Alert once when no delivery arrived within this long ("6h"): a rule disabled, or its
    # URL changed, is otherwise silent.
    expect_every: Duration | None = None

    def accepts(self, source: str, facts: Mapping[str, Any], runs: RunFactsLike | None) -> bool:
        """True when a delivery of ``source`` with these facts is this route's: one of its
        runs, if the route has run conditions, passes all of them."""
        if source not in self.sources:
            return False
        on_runs = []
        for key, wanted in self.match.conditions.items():
            if key not in facts:
                on_runs.append((key, wanted))
            elif not _holds(key, facts[key], wanted):
                return False
        if not on_runs:
            return True
        if runs is None:
            return False
        passing = [
            _passing(key, runs.columns[key], wanted)
            for key, wanted in on_runs
            if key in runs.columns
        ]
        if not passing:
            return runs.count > 0
        return any(passing[0]) if len(passing) == 1 else any(map(all, zip(*passing, strict=True)))

    def keeps_run(self, run: Mapping[str, Any]) -> bool:
        """True when ``run`` passes every run condition (``run_status``, ...) of this route."""
        return _keeps(run, self.match.conditions.items())


class RoutesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routes: list[Route] = Field(min_length=1)


class RouteTable:
    """The routes in force, by path; built once at start-up."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        self.by_name = {route.name: route for route in self.routes}
        self.paths: dict[str, list[Route]] = {}
        for route in self.routes:
            self.paths.setdefault(route.path, []).append(route)

    @property
    def handler_names(self) -> tuple[str, ...]:
        """Every handler some route names, each once, in order of appearance."""
        return tuple(dict.fromkeys(name for route in self.routes for name in route.handlers))

    def condition_keys(self, path: str) -> frozenset[str]:
        """Every match key some route at ``path`` sets: the run facts worth reading there."""
        return frozenset(key for route in self.paths[path] for key in route.match.conditions)

    def sources_at(self, path: str) -> tuple[str, ...]:
        """The senders the routes at ``path`` take, in order: what to try a body as first."""
        return tuple(dict.fromkeys(s for route in self.paths[path] for s in route.sources))

    def matching(
        self,
        path: str,
        source: str,
        facts: Mapping[str, Any],
        runs: RunFactsLike | None,
    ) -> list[Route]:
        return [route for route in self.paths[path] if route.accepts(source, facts, runs)]

    def handlers_of(self, routes: Iterable[Route]) -> tuple[str, ...]:
        """The handlers of ``routes``, each once (a handler on two matching routes runs once)."""
        return tuple(dict.fromkeys(name for route in routes for name in route.handlers))

    def check_handlers(self, handlers: Iterable[HandlerInfo]) -> None:
        """Refuse a route that sends a handler a source its ``SOURCES`` does not list."""
        declared = {handler.name: handler.sources for handler in handlers}
        for route in self.routes:
            for name in route.handlers:
                refused = [s for s in route.sources if s not in declared.get(name, route.sources)]
                if refused:
                    raise SettingsError(
                        f"route {route.name!r} sends {', '.join(refused)} deliveries to"
                        f" {name}, whose SOURCES is {declared[name]}"
                    )


def load_routes(settings: Settings, sources: Mapping[str, SourceInfo]) -> RouteTable:
    """The routes file named by ``WEBHOOK_ROUTES``, checked; or the one default route.

    Raises :class:`SettingsError` naming the file, the route and the key at fault.
    """
    if settings.routes_file is None:
        return RouteTable([Route(name="default", handlers=settings.handlers)])
    path = settings.routes_file
    if "handlers" in settings.model_fields_set:
        raise SettingsError(
            f"WEBHOOK_HANDLERS and WEBHOOK_ROUTES are both set: with a routes file ({path}),"
            " list each route's handlers there"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"routes file {path} (WEBHOOK_ROUTES): {exc}") from None
    try:
        routes = RoutesFile.model_validate(raw).routes
    except ValidationError as exc:
        raise SettingsError(_describe(path, raw, exc)) from None
    for route in routes:
        _check(path, route, sources)
    names = [route.name for route in routes]
    if len(set(names)) < len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise SettingsError(f"routes file {path}: route names used twice: {', '.join(twice)}")
    return RouteTable(routes)


def _check(path: Path, route: Route, sources: Mapping[str, SourceInfo]) -> None:
    where = f"routes file {path}, route {route.name!r}"
    for name in route.sources:
        if name not in sources:
            raise SettingsError(
                f"{where}: sources: unknown source {name!r} (known: {', '.join(sources)})"
            )
    for key in route.match.conditions:
        applies = [name for name in sources if key in sources[name].match_keys]
        for name in route.sources:
            if name not in applies:
                raise SettingsError(
                    f"{where}: match.{key} does not apply to {name} deliveries"
                    f" (it applies to: {', '.join(applies)})"
                )


def _describe(path: Path, raw: dict[str, Any], exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        where = f"routes file {path}"
        if len(loc) >= 2 and loc[0] == "routes" and isinstance(loc[1], int):
            table = raw["routes"][loc[1]]
            name = table.get("name") if isinstance(table, dict) else None
            where += f", route {name!r}" if name else f", route #{loc[1] + 1}"
            loc = loc[2:]
        key = ".".join(str(part) for part in loc) or "routes"
        parts.append(f"{where}: {key}: {error['msg']}")
    return "; ".join(parts)
