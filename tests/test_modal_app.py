"""The Modal definition, checked with the real ``modal`` package, offline."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import modal
import pytest
from conftest import HEADER, SECRET, read_calls
from fastapi import FastAPI
from modal.app import LocalEntrypoint
from starlette.testclient import TestClient
from support.memory_modal import Spawner, memory_store, offline_process
from support.payloads import unique_body

import webhook_app
from receiver.delivery import DeliveryStatus
from receiver.runtimes.modal import create_modal_app, process_delivery
from receiver.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_app_defines_exactly_the_web_process_and_sweep_functions():
    functions = {
        name for name, value in vars(webhook_app).items() if isinstance(value, modal.Function)
    }
    assert functions == {"web", "process", "sweep"}
    assert isinstance(webhook_app.app, modal.App)
    assert webhook_app.app.name == "langsmith-webhooks"


def test_only_process_holds_the_langsmith_key():
    web_secrets = " ".join(webhook_app.web.info().secrets)
    process_secrets = " ".join(webhook_app.process.info().secrets)
    assert "'ls-webhook'" in web_secrets
    assert "'langsmith'" not in web_secrets
    assert "'ls-webhook'" in process_secrets
    assert "'langsmith'" in process_secrets


def test_the_sweeper_runs_every_minute_and_holds_only_the_webhook_secret():
    """It posts alerts (SLACK_ALERTS_WEBHOOK_URL is in the webhook secret), never the key."""
    sweep = webhook_app.sweep.info()
    assert sweep.schedule == "Period(minutes=1)"
    assert sweep.secrets == ["modal.Secret.from_name('ls-webhook')"] and sweep.web_info is None


def test_web_is_a_concurrent_web_endpoint_and_process_is_not():
    web, process = webhook_app.web.info(), webhook_app.process.info()
    assert web.web_info is not None
    assert web.concurrency_info.max_inputs == 100
    assert process.web_info is None
    assert process.max_retries == 3


def _import_in_fresh_interpreter(code: str, **env: str) -> str:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **clean_env,
            "HOME": "/nonexistent",
            "MODAL_CONFIG_PATH": "/nonexistent/.modal.toml",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_app_needs_no_token_and_keeps_the_langsmith_sdk_out():
    out = _import_in_fresh_interpreter("import sys, webhook_app; print('langsmith' in sys.modules)")
    assert out == "False"


def test_the_langsmith_secret_name_and_extra_handler_packages_come_from_the_deploy_environment():
    out = _import_in_fresh_interpreter(
        "import webhook_app as w; print(w.process.info().secrets, w.local_packages)",
        LANGSMITH_SECRET_NAME="ls-prod",
        WEBHOOK_HANDLERS="handlers.log_runs,handlers_for_tests.recording",
        TEST_RECORD_PATH="/tmp/calls.log",
        PYTHONPATH=str(ROOT / "tests"),
    )
    assert "'ls-prod'" in out
    assert "['handlers', 'handlers_for_tests', 'receiver']" in out


def test_the_modules_a_handler_names_in_its_options_travel_in_the_image():
    """An evaluator lives in its own package: without it in the image, every delivery to
    handlers.remote_evaluator would fail on Modal while passing locally."""
    out = _import_in_fresh_interpreter(
        "import webhook_app as w; print(w.local_packages)",
        WEBHOOK_HANDLERS="handlers.remote_evaluator",
        REMOTE_EVALUATORS="evaluators.examples:has_output,handlers_for_tests.evaluators:constant",
        PYTHONPATH=str(ROOT / "tests"),
    )
    assert out == "['evaluators', 'handlers', 'handlers_for_tests', 'receiver']"


def test_a_handler_that_cannot_load_fails_the_deploy_naming_it():
    result = subprocess.run(
        [sys.executable, "-c", "import webhook_app"],
        cwd=ROOT,
        env={**os.environ, "WEBHOOK_HANDLERS": "handlers.log_runs,acme.hooks"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "handler module 'acme.hooks' (from WEBHOOK_HANDLERS) cannot be imported" in result.stderr


def test_declared_options_reach_both_functions_and_secrets_never_do():
    out = _import_in_fresh_interpreter(
        "import webhook_app as w, json; print(json.dumps(w.runtime_env))",
        WEBHOOK_HANDLERS="handlers.notify_slack,handlers.corrections_to_dataset",
        SLACK_NOTIFY_ONLY_ERRORS="true",
        SLACK_WEBHOOK_URL="https://hooks.slack.test/secret-path",
        LS_DATASET_NAME="prod-corrections",
        LS_WEBHOOK="webhook-secret-value",
        LANGSMITH_API_KEY="lsv2_secret_key",
        WEBHOOK_MAX_ATTEMPTS="7",
        UNRELATED_VARIABLE="x",
    )
    assert json.loads(out) == {
        "LS_DATASET_NAME": "prod-corrections",
        "SLACK_NOTIFY_ONLY_ERRORS": "true",
        "WEBHOOK_HANDLERS": "handlers.notify_slack,handlers.corrections_to_dataset",
        "WEBHOOK_MAX_ATTEMPTS": "7",
    }


def test_a_warm_container_and_modal_proxy_auth_are_opt_in():
    assert webhook_app.web.info().web_info.unauthenticated is True
    assert webhook_app.web_scaling["min_containers"] == 0
    out = _import_in_fresh_interpreter(
        "import webhook_app as w, json;"
        " print(json.dumps([w.web.info().web_info.unauthenticated, w.web_scaling]))",
        WEBHOOK_PROXY_AUTH="true",
        WEBHOOK_MIN_CONTAINERS="1",
    )
    assert json.loads(out) == [False, {"min_containers": 1, "max_containers": 10}]


def test_modal_serve_records_into_a_dict_of_its_own_and_deploy_into_productions():
    code = (
        "import sys; sys.argv = ['modal', '{verb}', 'webhook_app.py']\n"
        "import webhook_app as w, json\n"
        "print(json.dumps([w.serving, w.runtime_env.get('WEBHOOK_DICT_NAME')]))"
    )
    served = _import_in_fresh_interpreter(code.format(verb="serve"))
    assert json.loads(served) == [True, "langsmith-webhook-deliveries-serve"]
    deployed = _import_in_fresh_interpreter(code.format(verb="deploy"))
    assert json.loads(deployed) == [False, None]
    in_container = _import_in_fresh_interpreter(
        "import sys; sys.argv = ['modal', 'serve']\n"
        "import modal; modal.is_local = lambda: False\n"  # as inside a container
        "import webhook_app as w; print(w.serving, w.settings.dict_name)",
        WEBHOOK_DICT_NAME="langsmith-webhook-deliveries-serve",  # forwarded by the serve run
    )
    assert in_container == "False langsmith-webhook-deliveries-serve"


def test_the_routes_file_travels_in_the_image_and_both_functions_read_it_there(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text(
        "[[routes]]\nname = 'issues'\npath = '/engine'\nsources = ['engine']\n"
        "handlers = ['handlers_for_tests.watcher']\n"
    )
    out = _import_in_fresh_interpreter(
        "import webhook_app as w, json\n"
        "from modal._utils.async_utils import synchronizer\n"
        "base, mount = synchronizer._translate_in(w.image)._deps()\n"  # the last layer
        "files = [(str(e.local_file), str(e.remote_path)) for e in mount._entries]\n"
        "print(json.dumps([w.runtime_env['WEBHOOK_ROUTES'], files,"
        " [r.name for r in w.routes.routes], [h.name for h in w.handlers]]))",
        WEBHOOK_ROUTES=str(routes),
        TEST_EVENTS_PATH="/tmp/events.jsonl",
        PYTHONPATH=str(ROOT / "tests"),
    )
    in_image = webhook_app.ROUTES_IN_IMAGE
    assert json.loads(out) == [
        in_image,
        [[str(routes), in_image]],
        ["issues"],
        ["handlers_for_tests.watcher"],
    ]


def test_the_web_function_loads_no_sqlite_store_no_local_worker_no_cli_code_no_pydantic_v1():
    """pydantic.v1 is what FastAPI imports to check response models and typed parameters:
    60-100 ms of every cold start the edge avoids (documented by schema references)."""
    out = _import_in_fresh_interpreter(
        "import sys, webhook_app; webhook_app.web.local().openapi();"
        " print(sorted(m for m in sys.modules if m.startswith(('receiver.stores.sqlite',"
        " 'receiver.runtimes.local', 'receiver.runtimes.worker', 'receiver.cli', 'sqlite3',"
        " 'pydantic.v1'))))",
        LS_WEBHOOK="s",
    )
    assert out == "[]"


def test_the_web_function_builds_no_model_only_the_worker_validates():
    """The events handlers get (a rule's every run, a prompt's manifest) are validated by
    the worker alone: the web container does not build their validators at start-up, nor
    to answer a delivery; the worker builds them on first use."""
    out = _import_in_fresh_interpreter(
        "import asyncio, sys; sys.path.insert(0, 'tests')\n"
        "from support.memory_modal import memory_store, offline_process\n"
        "from fastapi.testclient import TestClient\n"
        "import webhook_app\n"
        "from receiver.sources import SOURCES\n"
        "webhook_app.store = memory_store()\n"
        "webhook_app.process = offline_process()\n"
        "body = open('tests/data/langsmith_rule_payload.json', 'rb').read()\n"
        "answer = TestClient(webhook_app.web.local()).post(\n"
        "    '/', content=body, headers={'X-Webhook-Secret': 's'})\n"
        "workers = [s.event for s in SOURCES.values() if s.event is not s.envelope]\n"
        "built = [m.__name__ for m in workers if m.__pydantic_complete__]\n"
        "print(answer.status_code, len(workers), built)\n"
        "SOURCES['rule'].event.model_validate_json(body)  # the worker: built on first use\n",
        LS_WEBHOOK="s",
    )
    assert out == "202 3 []"


def test_the_page_templates_are_added_to_the_image_with_the_code():
    skipped = webhook_app.not_source  # what add_local_python_source leaves out
    for path in (ROOT / "receiver").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".html"):
            assert not skipped(path.relative_to(ROOT)), path
    assert skipped(Path("receiver/__pycache__/edge.cpython-311.pyc"))


@pytest.fixture
def modal_offline(monkeypatch, record_path):
    """``web.local()`` with the store and ``process.spawn`` replaced (they need Modal's servers)."""
    store, spawner = memory_store(), Spawner()
    monkeypatch.setattr(webhook_app, "store", store)
    monkeypatch.setattr(webhook_app, "process", offline_process(spawner))
    monkeypatch.setenv("LS_WEBHOOK", SECRET)
    monkeypatch.setenv("WEBHOOK_HANDLERS", "handlers_for_tests.recording")
    monkeypatch.setenv("TEST_RECORD_PATH", str(record_path))
    return store, spawner.spawned


def test_the_web_function_serves_the_factory_app_which_records_and_spawns(
    modal_offline, record_path
):
    store, spawned = modal_offline
    app = webhook_app.web.local()
    assert isinstance(app, FastAPI)
    assert app.openapi()["paths"]["/"]["post"]["requestBody"]
    reference = create_modal_app(Settings.from_env(), store, spawn=None)
    assert [r.path for r in app.routes] == [r.path for r in reference.routes]

    body = unique_body()
    with TestClient(app) as client:
        first = client.post("/", content=body, headers=HEADER)
        again = client.post("/", content=body, headers=HEADER)
        assert client.post("/", content=body).status_code == 401
    assert first.status_code == again.status_code == 202
    delivery_id = first.json()["delivery_id"]
    assert again.json() == {
        "delivery_id": delivery_id,
        "duplicate": True,
        "source": "rule",
        "routes": ["default"],
    }
    assert spawned == [delivery_id]

    result = asyncio.run(process_delivery(Settings.from_env(), store, delivery_id, "fc-1"))
    assert result["status"] == "done"
    assert read_calls(record_path) == [("handlers_for_tests.recording", delivery_id, 1, "ok")]
    assert asyncio.run(store.get(delivery_id)).status is DeliveryStatus.DONE
    assert asyncio.run(store.call_of(delivery_id)) == "fc-1"  # for the sweeper


def test_loading_every_shipped_handler_keeps_heavy_imports_out_of_the_web_path():
    out = _import_in_fresh_interpreter(
        "import sys; from receiver.registry import load_handlers;"
        " load_handlers(['handlers.log_runs', 'handlers.corrections_to_dataset',"
        " 'handlers.notify_slack', 'handlers._template']);"
        " print(sorted(m for m in ('langsmith', 'httpx', 'fastapi') if m in sys.modules))"
    )
    assert out == "[]"


def test_a_retried_process_call_takes_over_a_handler_from_the_container_that_died(
    modal_offline, record_path
):
    """The container running a handler dies; Modal retries ``process``. The dead
    container's claim still stands: the retry waits for it to expire, then runs the handler,
    instead of returning with the handler pending and no call left to run it."""
    store, _ = modal_offline
    with TestClient(webhook_app.web.local()) as client:
        delivery_id = client.post("/", content=unique_body(), headers=HEADER).json()["delivery_id"]
    handler = "handlers_for_tests.recording"
    asyncio.run(store.start_attempt(delivery_id, handler, "dead-container", time.time() + 0.3))
    settings = Settings.from_env({"WEBHOOK_LEASE_SECONDS": "1"})
    result = asyncio.run(process_delivery(settings, store, delivery_id))
    assert result["status"] == "done"
    assert read_calls(record_path) == [(handler, delivery_id, 2, "ok")]


def test_replay_is_a_local_entrypoint_that_resets_and_runs_process(modal_offline, capsys):
    """`modal run webhook_app.py::replay --failed`: the failed handlers are reset in the Dict
    and `process` runs for each delivery (here its body, `.local()`: offline `.remote()`
    needs Modal's servers)."""
    store, _ = modal_offline
    assert isinstance(webhook_app.replay, LocalEntrypoint)
    with TestClient(webhook_app.web.local()) as client:
        delivery_id = client.post("/", content=unique_body(), headers=HEADER).json()["delivery_id"]
    handler = "handlers_for_tests.recording"
    asyncio.run(store.start_attempt(delivery_id, handler, "earlier", time.time() + 30))
    asyncio.run(store.finish_attempt(delivery_id, handler, "earlier", "boom", final=True))
    assert asyncio.run(store.dead()) == [delivery_id]

    class LocalProcess:
        @staticmethod
        def remote(delivery_id):
            return asyncio.run(process_delivery(Settings.from_env(), store, delivery_id))

    webhook_app.process = LocalProcess()  # modal_offline's monkeypatch restores it
    webhook_app.replay.info.raw_f(failed=True)
    assert f"{delivery_id}: reset {handler}; now done" in capsys.readouterr().out
    assert asyncio.run(store.dead()) == []
    with pytest.raises(SystemExit, match="not both"):
        webhook_app.replay.info.raw_f(failed=True, ids=delivery_id)
