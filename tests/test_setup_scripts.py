"""create_secrets.py, deploy.py and connect_langsmith.py: offline, against a fake modal CLI
and the LangSmith API emulator."""

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support import fake_modal
from support.langsmith_emulator import running_emulator

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "lsv2_pt_test_key_123"


@pytest.fixture
def workdir(tmp_path):
    """A directory to run the scripts in (they keep their state file in the cwd)."""
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.fixture
def modal_env(tmp_path):
    log = tmp_path / "modal-calls.jsonl"
    fake_modal.install(tmp_path / "bin")
    env = fake_modal.environment(tmp_path / "bin", log)
    return env, log


def run(script, *args, cwd, env, stdin=subprocess.DEVNULL):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "MODAL_"))}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), "HOME": str(cwd), **env},
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def state(workdir):
    return json.loads((workdir / ".webhook-state.json").read_text())


@pytest.mark.parametrize(
    "script",
    [
        "create_secrets.py",
        "deploy.py",
        "connect_langsmith.py",
        "send_test_payload.py",
        "deliveries.py",
        "replay.py",
        "serve_local.py",
    ],
)
def test_every_script_has_help(script, workdir):
    result = run(script, "--help", cwd=workdir, env={})
    assert result.returncode == 0
    assert "usage:" in result.stdout


# --- create_secrets.py ---------------------------------------------------------------


def test_create_secrets_creates_both_secrets_through_a_private_temp_file(workdir, modal_env):
    env, log = modal_env
    result = run("create_secrets.py", cwd=workdir, env={**env, "LANGSMITH_API_KEY": API_KEY})
    assert result.returncode == 0, result.stderr
    webhook_call, langsmith_call = fake_modal.calls(log)

    assert webhook_call["argv"][:3] == ["secret", "create", "ls-webhook"]
    assert "--force" in webhook_call["argv"]
    secret = webhook_call["json"]["LS_WEBHOOK"]
    assert len(secret) >= 43 and set(secret) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert langsmith_call["argv"][:3] == ["secret", "create", "langsmith"]
    assert langsmith_call["json"] == {"LANGSMITH_API_KEY": API_KEY}

    for call in (webhook_call, langsmith_call):
        assert call["json_mode"] == "0o600"
        assert not Path(call["json_path"]).exists()  # deleted afterwards
        assert secret not in " ".join(call["argv"]) and API_KEY not in " ".join(call["argv"])
    assert secret not in result.stdout + result.stderr
    assert API_KEY not in result.stdout + result.stderr

    assert state(workdir)["secrets"] == [secret]
    assert stat.S_IMODE((workdir / ".webhook-state.json").stat().st_mode) == 0o600


def test_create_secrets_stores_the_workspace_of_an_organization_scoped_key(workdir, modal_env):
    env, log = modal_env
    workspace = "0b2c6f4e-8a55-4b8e-9d7c-2f6a1c3e5d70"
    langsmith = {"LANGSMITH_API_KEY": API_KEY, "LANGSMITH_WORKSPACE_ID": workspace}
    result = run("create_secrets.py", cwd=workdir, env={**env, **langsmith})
    assert result.returncode == 0, result.stderr
    _, langsmith_call = fake_modal.calls(log)
    assert langsmith_call["json"] == langsmith


def test_two_runs_make_two_different_secrets(workdir, modal_env):
    env, log = modal_env
    for _ in range(2):
        assert run("create_secrets.py", "--skip-langsmith", cwd=workdir, env=env).returncode == 0
    first, second = (call["json"]["LS_WEBHOOK"] for call in fake_modal.calls(log))
    assert first != second


def test_environment_names_and_endpoint_flags_reach_the_cli(workdir, modal_env):
    env, log = modal_env
    result = run(
        "create_secrets.py",
        "-e", "staging",
        "--webhook-secret-name", "hook",
        "--langsmith-secret-name", "ls-eu",
        "--langsmith-endpoint", "https://eu.api.smith.langchain.com",
        cwd=workdir,
        env={**env, "LANGSMITH_API_KEY": API_KEY},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    webhook_call, langsmith_call = fake_modal.calls(log)
    assert webhook_call["argv"][2] == "hook" and langsmith_call["argv"][2] == "ls-eu"
    assert webhook_call["argv"][-2:] == ["--env", "staging"]
    assert langsmith_call["json"]["LANGSMITH_ENDPOINT"] == "https://eu.api.smith.langchain.com"


def test_rotation_keeps_the_old_secret_until_finished(workdir, modal_env):
    env, log = modal_env
    run("create_secrets.py", "--skip-langsmith", cwd=workdir, env=env)
    [old] = state(workdir)["secrets"]
    rotated = run("create_secrets.py", "--rotate", cwd=workdir, env=env)
    assert rotated.returncode == 0, rotated.stderr
    new, kept = fake_modal.calls(log)[-1]["json"]["LS_WEBHOOK"].split(",")
    assert kept == old and new != old
    assert len(fake_modal.calls(log)) == 2  # the LangSmith secret is left alone
    finished = run("create_secrets.py", "--finish-rotation", cwd=workdir, env=env)
    assert finished.returncode == 0
    assert fake_modal.calls(log)[-1]["json"] == {"LS_WEBHOOK": new}
    assert state(workdir)["secrets"] == [new]


def test_signing_secrets_sit_beside_the_webhook_secret_and_survive_a_rotation(workdir, modal_env):
    env, log = modal_env
    run("create_secrets.py", "--skip-langsmith", cwd=workdir, env=env)
    [webhook] = state(workdir)["secrets"]
    for value in ("whsec-one", "whsec-two", "whsec-three"):
        added = run(
            "create_secrets.py",
            "--signing-secret",
            cwd=workdir,
            env={**env, "LS_SIGNING_SECRET": value},
        )
        assert added.returncode == 0, added.stderr
        assert value not in added.stdout + added.stderr + " ".join(
            fake_modal.calls(log)[-1]["argv"]
        )
    assert fake_modal.calls(log)[-1]["json"] == {
        "LS_WEBHOOK": webhook,  # unchanged
        "LS_SIGNING_SECRETS": "whsec-three,whsec-two",  # the new one and the previous one
    }
    assert len(fake_modal.calls(log)) == 4  # the LangSmith secret is left alone
    run("create_secrets.py", "--rotate", cwd=workdir, env=env)
    assert fake_modal.calls(log)[-1]["json"]["LS_SIGNING_SECRETS"] == "whsec-three,whsec-two"
    refused = run(
        "create_secrets.py",
        "--signing-secret",
        cwd=workdir,
        env={**env, "LS_SIGNING_SECRET": "a,b"},
    )
    assert refused.returncode == 2
    missing = run("create_secrets.py", "--signing-secret", cwd=workdir, env=env)
    assert missing.returncode == 3 and "LS_SIGNING_SECRET" in missing.stderr


def test_rotation_without_a_secret_says_to_create_one_first(workdir, modal_env):
    env, _ = modal_env
    result = run("create_secrets.py", "--rotate", cwd=workdir, env=env)
    assert result.returncode == 3
    assert "run without --rotate first" in result.stderr


def test_no_langsmith_key_and_no_terminal_exits_3_with_the_fix(workdir, modal_env):
    env, log = modal_env
    result = run("create_secrets.py", cwd=workdir, env=env)
    assert result.returncode == 3
    assert "export LANGSMITH_API_KEY" in result.stderr
    assert fake_modal.calls(log) == []  # nothing half-done


def test_no_modal_token_exits_3_with_the_fix(workdir, modal_env):
    env, _ = modal_env
    env = {k: v for k, v in env.items() if not k.startswith("MODAL_TOKEN")}
    result = run("create_secrets.py", cwd=workdir, env={**env, "LANGSMITH_API_KEY": API_KEY})
    assert result.returncode == 3
    assert "modal token new" in result.stderr


def test_no_modal_cli_exits_3_with_the_fix(workdir, tmp_path):
    python_only = tmp_path / "python-only"
    python_only.mkdir()
    (python_only / "python3").symlink_to(sys.executable)
    env = {"PATH": str(python_only), "MODAL_TOKEN_ID": "ak", "MODAL_TOKEN_SECRET": "as"}
    result = run("create_secrets.py", "--skip-langsmith", cwd=workdir, env=env)
    assert result.returncode == 3
    assert "Modal CLI (`modal`) is not on PATH" in result.stderr


def test_a_failing_modal_cli_exits_1(workdir, modal_env):
    env, _ = modal_env
    result = run(
        "create_secrets.py", "--skip-langsmith", cwd=workdir, env={**env, "FAKE_MODAL_EXIT": "1"}
    )
    assert result.returncode == 1
    assert "`modal secret create` failed" in result.stderr
    assert not (workdir / ".webhook-state.json").exists()


# --- deploy.py -------------------------------------------------------------------------


def deploy_main(monkeypatch, workdir, env, lookup, *args):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import deploy
    finally:
        sys.path.pop(0)
    monkeypatch.chdir(workdir)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return deploy.main(list(args), lookup=lookup)


def test_deploy_runs_modal_deploy_and_prints_the_configuration(
    workdir, modal_env, monkeypatch, capsys
):
    env, log = modal_env
    run("create_secrets.py", "--skip-langsmith", cwd=workdir, env=env)
    [secret] = state(workdir)["secrets"]
    asked = []

    def lookup(app, environment):
        asked.append((app, environment))
        return "https://acme--langsmith-webhooks-web.modal.run"

    code = deploy_main(monkeypatch, workdir, env, lookup, "-e", "prod")
    out = capsys.readouterr().out
    assert code == 0
    assert fake_modal.calls(log)[-1]["argv"] == [
        "deploy",
        str(ROOT / "webhook_app.py"),
        "--env",
        "prod",
    ]
    assert asked == [("langsmith-webhooks", "prod")]
    assert "URL:    https://acme--langsmith-webhooks-web.modal.run" in out
    assert "X-Webhook-Secret: <your webhook secret" in out
    assert secret not in out
    assert state(workdir)["url"] == "https://acme--langsmith-webhooks-web.modal.run"

    deploy_main(monkeypatch, workdir, env, lookup, "--show-secret")
    assert f"X-Webhook-Secret: {secret}" in capsys.readouterr().out


def test_deploy_gives_the_app_its_own_url_as_webhook_public_url(
    workdir, modal_env, monkeypatch, capsys
):
    """Alerts link to the console: the app must know its URL, known after a first deploy."""
    env, log = modal_env
    run("create_secrets.py", "--skip-langsmith", cwd=workdir, env=env)
    url = "https://acme--langsmith-webhooks-web.modal.run"
    assert deploy_main(monkeypatch, workdir, env, lambda *_: url) == 0
    first = [c["public_url"] for c in fake_modal.calls(log) if c["argv"][0] == "deploy"]
    assert first == [None, url]  # the first deploy learns its URL, then deploys with it
    assert deploy_main(monkeypatch, workdir, env, lambda *_: url) == 0
    second = [c["public_url"] for c in fake_modal.calls(log) if c["argv"][0] == "deploy"]
    assert second == [None, url, url]  # known from then on: one deploy
    custom = {**env, "WEBHOOK_PUBLIC_URL": "https://hooks.acme.com"}
    assert deploy_main(monkeypatch, workdir, custom, lambda *_: url) == 0
    assert fake_modal.calls(log)[-1]["public_url"] == "https://hooks.acme.com"


def test_console_token_and_slack_alerts_url_live_in_the_webhook_secret(workdir, modal_env):
    env, log = modal_env
    made = run("create_secrets.py", "--skip-langsmith", "--console", cwd=workdir, env=env)
    assert made.returncode == 0, made.stderr
    token = state(workdir)["console_token"]
    assert (
        len(token) >= 43 and f"Console token (log in at <your URL>/console): {token}" in made.stdout
    )
    assert fake_modal.calls(log)[-1]["json"]["WEBHOOK_CONSOLE_TOKEN"] == token
    slack = "https://hooks.slack.com/services/T/B/secret"
    added = run(
        "create_secrets.py",
        "--skip-langsmith",
        "--slack-alerts",
        cwd=workdir,
        env={**env, "SLACK_ALERTS_WEBHOOK_URL": slack},
    )
    assert added.returncode == 0 and slack not in added.stdout + added.stderr
    stored = fake_modal.calls(log)[-1]["json"]
    assert stored["SLACK_ALERTS_WEBHOOK_URL"] == slack
    assert stored["WEBHOOK_CONSOLE_TOKEN"] == token  # kept: the secret is rewritten whole
    assert token not in added.stdout  # shown once, when made
    run("create_secrets.py", "--rotate", cwd=workdir, env=env)
    kept = fake_modal.calls(log)[-1]["json"]
    assert kept["WEBHOOK_CONSOLE_TOKEN"] == token and kept["SLACK_ALERTS_WEBHOOK_URL"] == slack


def test_deploy_without_a_secret_says_to_create_one(workdir, modal_env, monkeypatch, capsys):
    env, log = modal_env
    code = deploy_main(monkeypatch, workdir, env, lambda *_: "https://x")
    assert code == 3
    assert "create_secrets.py" in capsys.readouterr().err
    assert fake_modal.calls(log) == []


def test_deploy_with_no_web_url_exits_4(workdir, modal_env, monkeypatch, capsys):
    env, _ = modal_env
    run("create_secrets.py", "--skip-langsmith", cwd=workdir, env=env)
    assert deploy_main(monkeypatch, workdir, env, lambda *_: None) == 4


# --- connect_langsmith.py ----------------------------------------------------------------


@pytest.fixture
def langsmith(workdir):
    with running_emulator() as emulator:
        (workdir / ".webhook-state.json").write_text(
            json.dumps({"secrets": ["s3cret-new"], "url": "https://acme--hooks-web.modal.run"})
        )
        yield emulator, {"LANGSMITH_API_KEY": API_KEY, "LANGSMITH_ENDPOINT": emulator.api_url}


def test_list_shows_the_rules_and_their_webhook_hosts(workdir, langsmith):
    emulator, env = langsmith
    emulator.add_rule("errors to slack", [{"url": "https://hooks.example.com/x"}])
    result = run("connect_langsmith.py", "--list", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert "'errors to slack'  webhooks: hooks.example.com" in result.stdout


@pytest.mark.parametrize("endpoint_path", ["", "/api/v1"])
def test_list_reads_every_page_of_the_v2_listing(workdir, langsmith, endpoint_path):
    """The v1 listing is deprecated; v2 is cursor-paginated, so one page is not all rules."""
    emulator, env = langsmith
    for number in range(250):
        emulator.add_rule(f"rule {number}")
    env = {**env, "LANGSMITH_ENDPOINT": emulator.api_url + endpoint_path}
    result = run("connect_langsmith.py", "--list", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 250
    assert [call[1] for call in emulator.calls("GET", "/api/v2/runs/rules")] == [
        "/api/v2/runs/rules"
    ] * 3
    assert not emulator.calls("GET", "/runs/rules")


def test_an_instance_without_the_v2_listing_is_listed_through_v1(workdir, langsmith):
    emulator, env = langsmith
    emulator.rules_v2 = False
    emulator.add_rule("older instance")
    result = run("connect_langsmith.py", "--rule", "older instance", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert emulator.calls("GET", "/runs/rules")


def test_connect_adds_our_webhook_keeps_the_others_and_is_idempotent(workdir, langsmith):
    emulator, env = langsmith
    other = {"url": "https://hooks.example.com/x", "headers": {"A": "b"}}
    rule = emulator.add_rule("corrections", [other])
    first = run("connect_langsmith.py", "--rule", "corrections", cwd=workdir, env=env)
    assert first.returncode == 0, first.stderr
    assert emulator.rules[rule["id"]]["webhooks"] == [
        other,
        {"url": "https://acme--hooks-web.modal.run", "headers": {"X-Webhook-Secret": "s3cret-new"}},
    ]
    assert emulator.rules[rule["id"]]["filter"] == rule["filter"]  # the rest is unchanged
    assert "s3cret-new" not in first.stdout

    second = run("connect_langsmith.py", "--rule", rule["id"], cwd=workdir, env=env)
    assert second.returncode == 0
    assert "already connected" in second.stdout
    assert len(emulator.calls("PATCH")) == 1


def test_connect_keeps_evaluators_group_by_and_spend_limit_of_a_rule(workdir, langsmith):
    """The rules PATCH replaces the rule: a field not sent takes its default. All of the
    update schema's fields the rule carries are sent back, and the rule is read again."""
    emulator, env = langsmith
    evaluator = str(uuid.uuid4())
    fields = {
        "evaluator_id": evaluator,
        "evaluators": [{"structured": {"prompt": [["system", "grade it"]], "model": {}}}],
        "group_by": "thread_id",
        "spend_limit": {"amount_usd": 25, "period": "week"},
        "is_enabled": False,
    }
    rule = emulator.add_rule("graded", [], **fields)
    result = run("connect_langsmith.py", "--rule", "graded", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    after = emulator.rules[rule["id"]]
    assert {name: after[name] for name in fields} == fields
    assert [hook["url"] for hook in after["webhooks"]] == ["https://acme--hooks-web.modal.run"]


def test_connect_fails_loudly_when_the_update_changed_more_than_the_webhooks(workdir, langsmith):
    """A LangSmith whose update schema lost a field resets it: the re-read catches it."""
    emulator, env = langsmith
    emulator.add_rule("graded", [], group_by="thread_id")
    emulator.rule_fields_ignored.add("group_by")
    result = run("connect_langsmith.py", "--rule", "graded", cwd=workdir, env=env)
    assert result.returncode == 1
    assert "the rule changed beyond its webhooks: group_by" in result.stderr


def test_connect_replaces_our_old_webhook_after_a_rotation(workdir, langsmith):
    emulator, env = langsmith
    old = {"url": "https://acme--hooks-web.modal.run", "headers": {"X-Webhook-Secret": "old"}}
    rule = emulator.add_rule("r", [old])
    assert run("connect_langsmith.py", "--rule", "r", cwd=workdir, env=env).returncode == 0
    [hook] = emulator.rules[rule["id"]]["webhooks"]
    assert hook["headers"] == {"X-Webhook-Secret": "s3cret-new"}


def test_connect_to_a_route_uses_the_routes_path(workdir, langsmith):
    emulator, env = langsmith
    rule = emulator.add_rule("r")
    (workdir / "routes.toml").write_text(
        "[[routes]]\nname = 'prod-errors'\npath = '/hooks/prod-errors'\n"
        "handlers = ['handlers.log_runs']\n"
        "[[routes]]\nname = 'issues'\npath = '/engine'\nsources = ['engine']\n"
        "handlers = ['handlers.log_runs']\n"
    )
    env = {**env, "WEBHOOK_ROUTES": "routes.toml"}
    result = run(
        "connect_langsmith.py", "--rule", "r", "--route", "prod-errors", cwd=workdir, env=env
    )
    assert result.returncode == 0, result.stderr
    [hook] = emulator.rules[rule["id"]]["webhooks"]
    assert hook["url"] == "https://acme--hooks-web.modal.run/hooks/prod-errors"
    wrong = run("connect_langsmith.py", "--rule", "r", "--route", "issues", cwd=workdir, env=env)
    assert (wrong.returncode, wrong.stderr.strip()) == (
        2,
        "error: route 'issues' takes no rule deliveries",
    )
    typo = run("connect_langsmith.py", "--rule", "r", "--route", "prod", cwd=workdir, env=env)
    assert typo.returncode == 4 and "routes: prod-errors, issues" in typo.stderr


def test_with_proxy_auth_the_webhook_carries_the_modal_proxy_token(workdir, langsmith):
    emulator, env = langsmith
    rule = emulator.add_rule("r")
    env = {**env, "WEBHOOK_PROXY_AUTH": "true"}
    missing = run("connect_langsmith.py", "--rule", "r", cwd=workdir, env=env)
    assert missing.returncode == 3 and "proxy-tokens create" in missing.stderr
    token = {"MODAL_PROXY_KEY": "wk-abc123", "MODAL_PROXY_SECRET": "ws-secret456"}
    result = run("connect_langsmith.py", "--rule", "r", cwd=workdir, env={**env, **token})
    assert result.returncode == 0, result.stderr
    [hook] = emulator.rules[rule["id"]]["webhooks"]
    assert hook["headers"] == {
        "X-Webhook-Secret": "s3cret-new",
        "Modal-Key": "wk-abc123",
        "Modal-Secret": "ws-secret456",
    }
    assert "ws-secret456" not in result.stdout + result.stderr


def test_trigger_fires_the_rule(workdir, langsmith):
    emulator, env = langsmith
    rule = emulator.add_rule("r")
    result = run("connect_langsmith.py", "--rule", "r", "--trigger", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert emulator.triggered == [rule["id"]]


def test_an_unknown_rule_exits_4_and_names_the_rules(workdir, langsmith):
    emulator, env = langsmith
    emulator.add_rule("real one")
    result = run("connect_langsmith.py", "--rule", "typo", cwd=workdir, env=env)
    assert result.returncode == 4
    assert "'typo' matches no rule; rules: 'real one'" in result.stderr


def test_no_langsmith_key_exits_3(workdir, langsmith):
    _, env = langsmith
    result = run(
        "connect_langsmith.py", "--list", cwd=workdir, env={**env, "LANGSMITH_API_KEY": ""}
    )
    assert result.returncode == 3
    assert "LANGSMITH_API_KEY is not set" in result.stderr


def test_connect_without_a_deployed_url_says_to_deploy(workdir, langsmith):
    emulator, env = langsmith
    emulator.add_rule("r")
    (workdir / ".webhook-state.json").write_text(json.dumps({"secrets": ["s"], "url": None}))
    result = run("connect_langsmith.py", "--rule", "r", cwd=workdir, env=env)
    assert result.returncode == 3
    assert "scripts/deploy.py" in result.stderr
