"""The routes file: what a route matches, and every mistake stopping the start with its place."""

import pytest

from receiver import testing
from receiver.dispatch import load_configuration
from receiver.registry import HandlerLoadError
from receiver.routes import load_routes
from receiver.settings import Settings, SettingsError
from receiver.sources import SOURCES, recognise

WATCHER = "handlers_for_tests.watcher"


def settings_for(tmp_path, text: str, **env: str) -> Settings:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    return Settings.from_env({"WEBHOOK_ROUTES": str(path), **env})


def test_without_a_routes_file_one_default_route_takes_rules_at_the_root():
    table = load_routes(Settings.from_env({"WEBHOOK_HANDLERS": "handlers.log_runs"}), SOURCES)
    [route] = table.routes
    assert (route.name, route.path, route.sources, route.handlers) == (
        "default",
        "/",
        ("rule",),
        ("handlers.log_runs",),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[routes]\nname = 'x'", "Expected ']]'"),
        ("[[routes]]\nname = 'a'", "route 'a': handlers: Field required"),
        ("[[routes]]\nname = 'a'\nhandlers = ['h.x']\ncolour = 1", "route 'a': colour: Extra"),
        ("[[routes]]\nname = 'a b'\nhandlers = ['h.x']", "route 'a b': name: String should"),
        ("[[routes]]\nhandlers = ['h.x']", "route #1: name: Field required"),
        (
            "[[routes]]\nname = 'a'\npath = 'hooks'\nhandlers = ['h.x']",
            "route 'a': path: String should match",
        ),
        (
            "[[routes]]\nname = 'a'\nsources = ['rules']\nhandlers = ['h.x']",
            "route 'a': sources: unknown source 'rules'",
        ),
        (
            "[[routes]]\nname = 'a'\nhandlers = ['h.x']\n[routes.match]\nmax_severity = 1",
            "route 'a': match.max_severity does not apply to rule deliveries"
            " (it applies to: engine)",
        ),
        (
            "[[routes]]\nname = 'a'\nhandlers = ['h.x']\n[routes.match]\nrun_colour = ['red']",
            "route 'a': match.run_colour: Extra inputs are not permitted",
        ),
        (
            "[[routes]]\nname = 'a'\nsources = ['rule', 'engine']\nhandlers = ['h.x']\n"
            "[routes.match]\nrun_status = ['error']",
            "match.run_status does not apply to engine deliveries",
        ),
        (
            "[[routes]]\nname = 'a'\nhandlers = ['h.x']\n"
            "[[routes]]\nname = 'a'\nhandlers = ['h.y']",
            "route names used twice: a",
        ),
        (
            "[[routes]]\nname = 'a'\nhandlers = ['h.x']\nexpect_every = 'six hours'",
            "route 'a': expect_every: Value error, 'six hours' is no duration: write 30s",
        ),
        (
            "[[routes]]\nname = 'a'\nhandlers = ['h.x']\nexpect_every = '0s'",
            "route 'a': expect_every: Input should be greater than 0",
        ),
    ],
)
def test_a_bad_routes_file_stops_the_start_naming_the_file_route_and_key(tmp_path, text, message):
    with pytest.raises(SettingsError) as error:
        load_configuration(settings_for(tmp_path, text))
    assert message in str(error.value)
    assert str(tmp_path / "routes.toml") in str(error.value)


def test_a_missing_routes_file_names_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="WEBHOOK_ROUTES"):
        load_routes(Settings.from_env({"WEBHOOK_ROUTES": str(tmp_path / "nope.toml")}), SOURCES)


def test_handlers_and_routes_together_are_refused_rather_than_one_silently_ignored(tmp_path):
    settings = settings_for(
        tmp_path, f"[[routes]]\nname='a'\nhandlers=['{WATCHER}']", WEBHOOK_HANDLERS="x.y"
    )
    with pytest.raises(SettingsError, match="WEBHOOK_HANDLERS and WEBHOOK_ROUTES"):
        load_routes(settings, SOURCES)


def test_an_unknown_handler_module_stops_the_start(tmp_path):
    settings = settings_for(tmp_path, "[[routes]]\nname='a'\nhandlers=['nowhere.at_all']")
    with pytest.raises(HandlerLoadError, match=r"'nowhere\.at_all'"):
        load_configuration(settings)


def test_a_route_may_not_send_a_handler_a_source_it_does_not_declare(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_EVENTS_PATH", str(tmp_path / "events.jsonl"))
    text = "[[routes]]\nname='issues'\nsources=['engine']\nhandlers=['handlers.log_runs']"
    with pytest.raises(SettingsError, match="route 'issues' sends engine deliveries to handlers"):
        load_configuration(settings_for(tmp_path, text))
    text = f"[[routes]]\nname='issues'\nsources=['engine']\nhandlers=['{WATCHER}']"
    routes, [handler] = load_configuration(settings_for(tmp_path, text))
    assert routes.by_name["issues"].handlers == (handler.name,)
    assert "engine" in handler.sources


def matched(tmp_path, match: str, event, path: str = "/", sources: str = "['rule']") -> bool:
    text = f"[[routes]]\nname='r'\nsources={sources}\nhandlers=['{WATCHER}']\n[routes.match]\n"
    table = load_routes(settings_for(tmp_path, text + match), SOURCES)
    found = recognise(event.model_dump_json().encode())
    source, envelope = found.source, found.envelope
    runs = source.run_facts(envelope)
    return bool(table.matching(path, source.name, source.facts(envelope), runs))


def test_match_conditions_on_runs_and_on_deliveries(tmp_path):
    payload = testing.rule_payload(
        testing.run(status="error", tags=["prod"], feedback_stats={"correctness": {"n": 1}}),
        testing.run(name="Retriever", run_type="retriever"),
    )
    assert matched(tmp_path, "run_status=['error']", payload)
    assert not matched(tmp_path, "run_status=['timeout']", payload)
    assert matched(tmp_path, "run_type=['retriever']\nrun_name=['retriever']", payload)
    assert not matched(tmp_path, "run_type=['retriever']\nrun_status=['error']", payload)
    assert matched(tmp_path, "tags=['prod', 'dev']", payload)
    assert matched(tmp_path, "feedback_key=['correctness']", payload)
    assert matched(tmp_path, f"rule_id=['{str(payload.rule_id).upper()}']", payload)
    assert not matched(tmp_path, "rule_id=['d75d7417-0c57-4655-88fe-1db3cda3a47a']", payload)
    assert not matched(tmp_path, "run_status=['error']", testing.rule_payload(runs=[]))
    engine = "['engine']"
    assert matched(tmp_path, "max_severity=2", testing.engine_event(severity=1), sources=engine)
    assert not matched(tmp_path, "max_severity=2", testing.engine_event(severity=3), "/", engine)
    assert not matched(tmp_path, "max_severity=2", testing.engine_event(severity=None), "/", engine)
    agent = "['agent_run']"
    assert matched(tmp_path, "run_status=['error']", testing.agent_run(status="error"), "/", agent)
    alert = "['alert']"
    assert matched(tmp_path, "project_name=['prod-api']", testing.alert(), "/", alert)
    assert not matched(tmp_path, "project_name=['dev']", testing.alert(), "/", alert)


@pytest.mark.parametrize(
    ("factory", "source"),
    [
        (testing.rule_payload, "rule"),
        (testing.alert, "alert"),
        (testing.prompt_commit, "prompt_commit"),
        (testing.engine_event, "engine"),
        (testing.context_hub_commit, "context_hub"),
        (testing.agent_run, "agent_run"),
    ],
)
def test_the_test_kit_builds_events_the_edge_recognises_as_their_sender(factory, source):
    body = factory().model_dump_json().encode()
    assert recognise(body).source.name == source
    assert recognise(body, [SOURCES[source]]).source.name == source


def test_the_test_kit_context_reads_the_handlers_options_as_the_server_would(tmp_path):
    import handlers_for_tests.watcher as watcher

    events = tmp_path / "events.jsonl"
    watcher.handle(testing.alert(), testing.context(watcher, {"TEST_EVENTS_PATH": str(events)}))
    assert '"event": "AlertEvent"' in events.read_text()
    with pytest.raises(HandlerLoadError, match="TEST_EVENTS_PATH"):
        testing.context(watcher)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("6h", 21600), ("1d", 86400), ("1.5h", 5400)]
)
def test_expect_every_takes_durations(tmp_path, text, seconds):
    routes = load_routes(
        settings_for(
            tmp_path, f"[[routes]]\nname = 'a'\nhandlers = ['h.x']\nexpect_every = '{text}'"
        ),
        SOURCES,
    )
    assert routes.routes[0].expect_every == seconds
