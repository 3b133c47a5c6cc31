"""scripts/deliveries.py and scripts/replay.py, run as a user runs them."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HEADER, drain
from support.payloads import unique_body

ROOT = Path(__file__).resolve().parents[1]
BROKEN = "handlers_for_tests.broken_until_fixed"
RECORDING = "handlers_for_tests.recording"


def run_script(name, *args, env):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def dead_deliveries(count, make_settings, open_client, tmp_path, record_path):
    """A store holding ``count`` dead deliveries; their ids, the fix marker, and the
    environment that points the scripts at the store."""
    marker = tmp_path / "fixed"
    settings = make_settings(
        handlers=(BROKEN, RECORDING), max_attempts=2, env={"FIX_MARKER": str(marker)}
    )
    with open_client(settings) as client:
        ids = [
            client.post("/", content=unique_body(), headers=HEADER).json()["delivery_id"]
            for _ in range(count)
        ]
        drain(client)
    env = {
        "WEBHOOK_STORE_PATH": str(settings.store_path),
        "WEBHOOK_HANDLERS": f"{BROKEN},{RECORDING}",
        "WEBHOOK_RETRY_BASE_SECONDS": "0.01",
        "WEBHOOK_MAX_ATTEMPTS": "2",
        "FIX_MARKER": str(marker),
        "TEST_RECORD_PATH": str(record_path),
    }
    return ids, marker, env


@pytest.fixture
def dead_delivery(make_settings, open_client, tmp_path, record_path):
    """A store holding one dead delivery, and the environment that points the scripts at it."""
    [delivery_id], marker, env = dead_deliveries(
        1, make_settings, open_client, tmp_path, record_path
    )
    return delivery_id, marker, env


def test_deliveries_lists_the_dead_delivery_with_each_handler(dead_delivery):
    delivery_id, _, env = dead_delivery
    table = run_script("deliveries.py", env=env)
    assert table.returncode == 0, table.stderr
    assert f"{delivery_id}" in table.stdout and "dead" in table.stdout
    assert "downstream rejected the payload" in table.stdout
    listed = json.loads(run_script("deliveries.py", "--json", env=env).stdout)
    state = listed[0]["handlers"][BROKEN]
    assert state.pop("finished_at") > listed[0]["received_at"]
    failures = state.pop("failures")
    assert [(f["attempt"], f["error"]) for f in failures] == [
        (1, "RuntimeError: downstream rejected the payload"),
        (2, "RuntimeError: downstream rejected the payload"),
    ]
    assert state == {
        "status": "failed",
        "attempts": 2,
        "last_error": "RuntimeError: downstream rejected the payload",
    }


def test_replay_before_the_fix_exits_1_and_after_the_fix_completes(dead_delivery):
    delivery_id, marker, env = dead_delivery
    still_broken = run_script("replay.py", delivery_id, env=env)
    assert still_broken.returncode == 1
    marker.touch()
    fixed = run_script("replay.py", "--failed", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert "done" in fixed.stdout
    assert run_script("replay.py", "--failed", env=env).stdout.strip() == "no dead deliveries"


def test_replay_of_an_unknown_delivery_exits_2_with_the_reason(dead_delivery):
    _, _, env = dead_delivery
    result = run_script("replay.py", "no-such-id", env=env)
    assert result.returncode == 2
    assert "no delivery no-such-id" in result.stderr


def test_replay_needs_ids_or_failed(dead_delivery):
    _, _, env = dead_delivery
    assert run_script("replay.py", env=env).returncode == 2


def load_script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def deployed_dict(monkeypatch):
    """The deployed app's modal.Dict and process function, replaced by in-memory stand-ins."""
    import modal
    from support.memory_modal import memory_store

    from receiver.delivery import DeliveryRecord, HandlerState, HandlerStatus

    store, spawned = memory_store(), []

    async def dead_delivery() -> None:
        await store.accept(
            DeliveryRecord("dead-1", time.time(), runs=3, handlers={BROKEN: HandlerState()}), b"{}"
        )
        await store.start_attempt("dead-1", BROKEN, "test", time.time() + 30)
        await store.finish_attempt("dead-1", BROKEN, "test", "RuntimeError: boom", final=True)

    asyncio.run(dead_delivery())
    assert asyncio.run(store.get("dead-1")).handlers[BROKEN].status is HandlerStatus.FAILED

    class Process:
        def __init__(self, app, name, environment_name=None):
            looked_up.append((app, name, environment_name))

        @property
        def spawn(self):  # modal's spawn, and its async interface spawn.aio
            def spawn(delivery_id):
                spawned.append(delivery_id)
                return type("Call", (), {"object_id": "fc-1"})()

            async def aio(delivery_id):
                return spawn(delivery_id)

            spawn.aio = aio
            return spawn

    looked_up = []

    def dict_named(name, environment_name=None):
        looked_up.append((name, environment_name))
        return store.entries

    def queue_named(name, environment_name=None):
        looked_up.append((name, environment_name))
        return store.index_queue

    monkeypatch.setattr(modal.Dict, "from_name", dict_named)
    monkeypatch.setattr(modal.Queue, "from_name", queue_named)
    monkeypatch.setattr(modal.Function, "from_name", Process)
    return store, spawned, looked_up


def test_deliveries_with_modal_reads_the_deployed_dict(deployed_dict, capsys):
    _, _, looked_up = deployed_dict
    assert load_script("deliveries").main(["--modal"]) == 0
    out = capsys.readouterr().out
    assert "dead-1" in out and "dead" in out and "RuntimeError: boom" in out
    assert looked_up == [
        ("langsmith-webhook-deliveries", None),
        ("langsmith-webhook-deliveries-index", None),
    ]


def test_deliveries_reads_the_dict_of_an_environment_or_of_the_serve_loop(deployed_dict):
    _, _, looked_up = deployed_dict
    assert load_script("deliveries").main(["--modal", "--env", "staging", "--serve"]) == 0
    assert looked_up == [
        ("langsmith-webhook-deliveries-serve", "staging"),
        ("langsmith-webhook-deliveries-serve-index", "staging"),
    ]


def test_replay_with_modal_resets_the_failed_handlers_and_spawns_process(deployed_dict, capsys):
    store, spawned, looked_up = deployed_dict
    assert load_script("replay").main(["--failed", "--modal", "-e", "prod"]) == 0
    assert spawned == ["dead-1"]
    assert looked_up == [
        ("langsmith-webhook-deliveries", "prod"),
        ("langsmith-webhook-deliveries-index", "prod"),
        ("langsmith-webhooks", "process", "prod"),
    ]
    assert asyncio.run(store.get("dead-1")).handlers[BROKEN].status.value == "pending"
    assert asyncio.run(store.call_of("dead-1")) == "fc-1"  # the sweeper will not spawn again
    assert (
        "dead-1: reset handlers_for_tests.broken_until_fixed; spawned fc-1"
        in capsys.readouterr().out
    )


@pytest.fixture
def three_dead(make_settings, open_client, tmp_path, record_path):
    """Three dead deliveries, the first moved 3 hours back; returns
    (old id, [new ids], marker, env)."""
    import sqlite3

    (old, *new), marker, env = dead_deliveries(3, make_settings, open_client, tmp_path, record_path)
    with sqlite3.connect(env["WEBHOOK_STORE_PATH"]) as db:
        db.execute("UPDATE deliveries SET received_at = received_at - 10800 WHERE id = ?", (old,))
    return old, new, marker, env


def test_replay_of_a_time_range_dry_run_reports_and_changes_nothing(three_dead):
    old, new, marker, env = three_dead
    marker.touch()
    dry = run_script("replay.py", "--since", "2h", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "2 deliveries, 2 handlers would run again" in dry.stdout
    assert all(delivery_id in dry.stdout for delivery_id in new) and old not in dry.stdout
    listed = json.loads(run_script("deliveries.py", "--json", env=env).stdout)
    assert {d["status"] for d in listed} == {"dead"}  # nothing changed


def test_replay_of_a_time_range_reruns_exactly_those(three_dead):
    old, new, marker, env = three_dead
    marker.touch()
    result = run_script("replay.py", "--since", "2h", env=env)
    assert result.returncode == 0, result.stderr
    listed = {
        d["id"]: d["status"]
        for d in json.loads(run_script("deliveries.py", "--json", env=env).stdout)
    }
    assert listed == {old: "dead", new[0]: "done", new[1]: "done"}


def test_replay_include_done_runs_succeeded_handlers_again(three_dead):
    _, new, marker, env = three_dead
    marker.touch()
    run_script("replay.py", new[0], env=env)  # now done
    again = run_script("replay.py", new[0], "--include-done", "--dry-run", env=env)
    assert "1 deliveries, 2 handlers would run again" in again.stdout  # both, done
    plain = run_script("replay.py", new[0], "--dry-run", env=env)
    assert "0 deliveries, 0 handlers" in plain.stdout


def test_replay_refuses_a_bad_time_naming_it(dead_delivery):
    _, _, env = dead_delivery
    result = run_script("replay.py", "--since", "yesterday", env=env)
    assert result.returncode == 2 and "since" in result.stderr
