"""``modal deploy webhook_app.py`` through Modal's real client against a fake control plane.

Opt-in (``-m deploy``; ``.ci/run`` runs it): each case deploys in a fresh interpreter
(``tests/support/deploy_offline.py``) and reads back what the deploy asked Modal for.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SECRET

pytestmark = pytest.mark.deploy
ROOT = Path(__file__).resolve().parents[1]


def deploy(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOK_", "MODAL_"))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "deploy_offline.py")],
        env={**clean, "LS_WEBHOOK": SECRET, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_deploy_creates_the_web_and_process_functions_as_declared():
    deployed = deploy()
    assert deployed["published"]["name"] == "langsmith-webhooks"
    assert set(deployed["published"]["function_ids"]) == {"web", "process", "sweep"}
    web, process = deployed["functions"]["web"], deployed["functions"]["process"]
    sweep = deployed["functions"]["sweep"]

    assert web["webhook_config"]["type"] == "WEBHOOK_TYPE_ASGI_APP"
    assert not web["webhook_config"].get("requires_proxy_auth")
    assert web["checkpointing_enabled"] is True  # the memory snapshot
    assert web["max_concurrent_inputs"] == 100
    assert web["resources"]["milli_cpu"] == 1000 and web["resources"]["memory_mb"] == 1024
    assert web["autoscaler_settings"] == {
        "min_containers": 0,
        "max_containers": 10,
        "scaledown_window": 300,
    }
    assert "webhook_config" not in process and not process.get("checkpointing_enabled")
    assert process["timeout_secs"] == 1800
    assert process["retry_policy"]["retries"] == 3
    assert process["autoscaler_settings"] == {"max_containers": 20}

    assert sweep["schedule"] == {"period": {"minutes": 1}}
    assert sweep["autoscaler_settings"] == {"max_containers": 1}  # one sweeper at a time
    assert "webhook_config" not in sweep

    secrets = {s["name"]: s for s in deployed["secrets"]}
    assert secrets["ls-webhook"]["required_keys"] == ["LS_WEBHOOK"]
    assert secrets["langsmith"]["required_keys"] == ["LANGSMITH_API_KEY"]
    assert len(web["secret_ids"]) == 1 and len(process["secret_ids"]) == 2  # no key on web
    # it reads the Dict, spawns and posts alerts: the webhook secret (the Slack alerts URL)
    assert sweep["secret_ids"] == web["secret_ids"]

    uv_step = [command for image in deployed["images"] for command in image if "uv sync" in command]
    assert uv_step and "--frozen" in uv_step[0] and "--compile-bytecode" in uv_step[0]
    assert "--no-dev" in uv_step[0]
    assert any("astral-sh/uv:0.13.9" in c for image in deployed["images"] for c in image)

    files = {name for mount in deployed["mounts"] for name in mount}
    assert {"/root/receiver/edge.py", "/root/receiver/templates/index.html"} <= files
    assert {"/root/handlers/log_runs.py", "/root/webhook_app.py"} <= files
    assert not [name for name in files if not name.endswith((".py", ".html"))]


def test_opt_ins_and_settings_reach_the_deployed_definition():
    deployed = deploy(
        WEBHOOK_PROXY_AUTH="true", WEBHOOK_MIN_CONTAINERS="1", WEBHOOK_MAX_ATTEMPTS="7"
    )
    web = deployed["functions"]["web"]
    assert web["webhook_config"]["requires_proxy_auth"] is True
    assert web["autoscaler_settings"]["min_containers"] == 1
    envs = [s["env"] for s in deployed["secrets"] if not s["name"]]
    assert envs and all(env.get("WEBHOOK_MAX_ATTEMPTS") == "7" for env in envs)
    assert all("LS_WEBHOOK" not in env for env in envs)  # a secret never travels as config
