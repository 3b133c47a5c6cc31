"""The Modal app: receive LangSmith webhooks, acknowledge fast, process after.

    modal deploy webhook_app.py   # a persistent URL to paste into LangSmith
    modal serve webhook_app.py    # the dev loop: a temporary URL, reloaded on save
    modal run webhook_app.py::replay --failed          # re-run every dead delivery
    modal run webhook_app.py::replay --ids ID1,ID2     # or these

Two functions. ``web`` is the internet-facing FastAPI app: it holds only the webhook
secrets, checks the sender's credential, recognises the sender, validates what its answer
needs, records the delivery with the routes it matched, spawns ``process`` and answers
``202`` within milliseconds (LangSmith gives up after 5 s). ``process`` holds the LangSmith
API key and runs the handlers of those routes, with retries. All logic lives in the
plain-Python ``receiver`` package; this file only declares infrastructure.
"""

import dataclasses
import os
import sys
from pathlib import Path

import modal

from receiver.dispatch import load_configuration
from receiver.settings import Settings, forwarded_environment

# Deploy-time configuration, read (and checked) from your shell when you run `modal deploy`.
# The routes and their handlers are loaded now too, so a typo in the routes file or
# WEBHOOK_HANDLERS, or a bad handler option, fails the deploy instead of the first delivery.
settings = Settings.from_env()
routes, handlers = load_configuration(settings)

# The variables the receiver and the handlers declare (not secrets: those come from Modal
# secrets) travel from your shell into both functions; no list of names to keep up to date.
runtime_env = forwarded_environment(
    [Settings, *(type(h.options) for h in handlers if h.options is not None)], os.environ
)
# The routes file (WEBHOOK_ROUTES) travels in the image, at a fixed path.
ROUTES_IN_IMAGE = "/root/webhook_routes.toml"
if settings.routes_file is not None:
    runtime_env["WEBHOOK_ROUTES"] = ROUTES_IN_IMAGE

# The uv that builds the image: the version that wrote uv.lock (bump both together).
UV_VERSION = "0.13.9"

# The image: dependencies exactly as locked in uv.lock (without the dev group), then our
# own code. Modal 1.x mounts nothing implicitly, so the `receiver` package (with its page
# templates), `handlers/` and the top-level package of every configured handler module (and
# of the modules their options name, such as an evaluator) are added explicitly, last.
local_modules = [h.name for h in handlers] + [
    module for h in handlers if h.options is not None for module in h.options.local_modules()
]
local_packages = sorted({"receiver", "handlers"} | {name.split(".")[0] for name in local_modules})
not_source = ~modal.FilePatternMatcher("**/*.py", "**/*.html")
image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_sync(str(Path(__file__).resolve().parent), extra_options="--no-dev", uv_version=UV_VERSION)
    .add_local_python_source(*local_packages, ignore=not_source)
)
if settings.routes_file is not None:
    image = image.add_local_file(settings.routes_file, ROUTES_IN_IMAGE)

app = modal.App(settings.app_name, image=image)

# Imported at module scope so that the web function's memory snapshot holds them: a
# restored container starts with FastAPI and the receiver already imported. The app itself
# is built in `web()`, which Modal calls after the restore, so it sees current secrets.
with image.imports():
    from receiver.alerts import check_alerts
    from receiver.logs import configure_logging
    from receiver.runtimes.modal import create_modal_app, process_delivery
    from receiver.runtimes.sweeper import sweep as sweep_deliveries
    from receiver.stores.modal_dict import ModalDictStore

# Secrets: the shared webhook secret (comma-separated for rotation; the same Modal secret may
# hold LS_SIGNING_SECRETS for signed senders) and the LangSmith key.
webhook_secret = modal.Secret.from_name(settings.webhook_secret_name, required_keys=["LS_WEBHOOK"])
langsmith_secret = modal.Secret.from_name(
    settings.langsmith_secret_name, required_keys=["LANGSMITH_API_KEY"]
)
handler_secrets = [modal.Secret.from_name(name) for name in settings.extra_secret_names]

# Accepted deliveries and per-handler status: the first `put(..., skip_if_exists=True)` of a
# delivery id wins, so a redelivered body is recognised across containers. The Queue indexes
# them for the sweeper. `modal serve` records into a Dict and Queue of their own (the
# containers get the name), never production's.
serving = modal.is_local() and sys.argv[1:2] == ["serve"]
if serving:
    runtime_env["WEBHOOK_DICT_NAME"] = settings.deliveries_dict_name(serving=True)
deliveries = modal.Dict.from_name(
    settings.deliveries_dict_name(serving=serving), create_if_missing=True
)
index = modal.Queue.from_name(
    settings.deliveries_index_name(serving=serving), create_if_missing=True
)
store = ModalDictStore(deliveries, index)


# The worker. Handler failures are retried inside with exponential backoff; `retries`
# covers the container itself dying (the handler state in the Dict says what is left).
@app.function(
    secrets=[webhook_secret, langsmith_secret, *handler_secrets],
    env=runtime_env,
    retries=modal.Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=5.0),
    timeout=30 * 60,
    max_containers=20,
)
async def process(delivery_id: str) -> dict:
    current = Settings.from_env()
    configure_logging(current.redacted_values)
    call_id = modal.current_function_call_id()
    return await process_delivery(current, store, delivery_id, call_id)


# The sweeper: every minute, the deliveries indexed more than 30 s ago are listed, and those
# still pending whose `process` call is gone (never spawned, or ended after its retries) are
# spawned again; dead letters are kept for WEBHOOK_DEAD_RETENTION_DAYS. One at a time.
async def call_alive(call_id: str) -> bool:
    """Whether a `process` call is still queued or running (no result yet)."""
    try:
        await modal.FunctionCall.from_id(call_id).get.aio(timeout=0)
    except TimeoutError:
        return True
    except Exception:  # it failed after its retries, or its result expired: it has ended
        return False
    return False


# It also posts the alerts due (dead, recovered, quiet routes) to SLACK_ALERTS_WEBHOOK_URL,
# which the webhook secret holds: the only secret it gets.
@app.function(
    secrets=[webhook_secret],
    env=runtime_env,
    schedule=modal.Period(minutes=1),
    max_containers=1,
    timeout=10 * 60,
)
async def sweep() -> dict:
    current = Settings.from_env()
    configure_logging(current.redacted_values)
    report = await sweep_deliveries(
        store,
        spawn=process.spawn.aio,
        call_alive=call_alive,
        retention_days=current.dead_retention_days,
    )
    alerts = await check_alerts(current, routes, store)
    return {**dataclasses.asdict(report), "alerts": len(alerts)}


# The endpoint. One container answers many deliveries at once (the work per request is a
# secret check, a small validation and two Dict writes); more containers start for bursts.
# A memory snapshot of the imports above makes its cold start short; WEBHOOK_MIN_CONTAINERS
# keeps that many warm (billed while idle). With WEBHOOK_PROXY_AUTH, Modal's proxy refuses
# requests without the workspace's Modal-Key/Modal-Secret headers before any container
# starts (connect_langsmith.py puts them on the rule's webhook).
web_scaling = {"min_containers": settings.min_containers, "max_containers": 10}
# Body size policy: a body of up to WEBHOOK_MAX_BODY_BYTES (25 MiB) is held once while it is
# read, hashed and written to the Dict; one over 1 MiB is parsed in the container's parser
# process, one at a time (about 10x a body of small runs, freed after). 1 GiB covers a
# handful of the largest bodies at once beside the small ones; Modal gives a container more
# than it requested while the host has it, and one that runs out of memory fails its
# requests with a 5xx, which LangSmith retries. A body the Dict refuses is answered 413.
web_resources = {"cpu": 1.0, "memory": 1024}


@app.function(
    secrets=[webhook_secret],
    env=runtime_env,
    scaledown_window=300,
    enable_memory_snapshot=True,
    **web_resources,
    **web_scaling,
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app(requires_proxy_auth=settings.proxy_auth)
def web():
    current = Settings.from_env()
    configure_logging(current.redacted_values)
    return create_modal_app(current, store, spawn=process.spawn.aio)


# The operator's replay in Modal's own idiom (scripts/replay.py --modal does the same against
# the deployed app): reset the failed handlers in the Dict, then run `process` for each
# delivery and wait for it, so the outcome is printed here.
@app.local_entrypoint()
def replay(failed: bool = False, ids: str = "") -> None:
    import asyncio

    chosen = [each for each in ids.split(",") if each]
    if failed == bool(chosen):
        raise SystemExit("give --failed or --ids ID1,ID2 (not both)")
    chosen = chosen or asyncio.run(store.dead())
    still_dead = 0
    for delivery_id in chosen:
        reset = asyncio.run(store.reset(delivery_id))
        outcome = process.remote(delivery_id)
        still_dead += outcome["status"] == "dead"
        print(f"{delivery_id}: reset {', '.join(reset) or 'nothing'}; now {outcome['status']}")
    if still_dead:
        raise SystemExit(1)
