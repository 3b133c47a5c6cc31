"""The Modal app: receive LangSmith automation webhooks, acknowledge fast, process after.

    modal deploy webhook_app.py   # a persistent URL to paste into the LangSmith rule
    modal serve webhook_app.py    # the dev loop: a temporary URL, reloaded on save

Two functions. ``web`` is the internet-facing endpoint: it holds only the webhook secret,
checks it, validates the body, records the delivery and spawns ``process`` and answers
``202`` within milliseconds (LangSmith gives up after 5 s and does not retry). ``process``
holds the LangSmith API key and runs the handlers, with retries. All logic lives in the
plain-Python ``receiver`` package; this file only declares infrastructure.
"""

import os

import modal

from receiver.operator import app_name, deliveries_dict_name
from receiver.settings import Settings

# Deploy-time configuration, read from your shell when you run `modal deploy` (the names
# come from the same helpers the operator scripts use, so both agree).
APP_NAME = app_name()
WEBHOOK_SECRET_NAME = os.environ.get("WEBHOOK_SECRET_NAME", "ls-webhook")
LANGSMITH_SECRET_NAME = os.environ.get("LANGSMITH_SECRET_NAME", "langsmith")
# More Modal secrets for the handlers, e.g. one holding SLACK_WEBHOOK_URL.
EXTRA_SECRET_NAMES = [
    n.strip() for n in os.environ.get("WEBHOOK_EXTRA_SECRETS", "").split(",") if n.strip()
]
DELIVERIES_DICT_NAME = deliveries_dict_name()
HANDLERS = Settings.from_env().handlers

# Settings forwarded into both functions' environment: the handler list, limits, retry
# policy and handler options. Secrets do not travel this way; they come from Modal secrets.
FORWARDED_PREFIXES = (
    "WEBHOOK_",
    "LANGSMITH_WEB_URL",
    "LS_DATASET_",
    "CORRECTIONS_",
    "SLACK_NOTIFY_",
)
runtime_env = {
    name: value for name, value in os.environ.items() if name.startswith(FORWARDED_PREFIXES)
}
runtime_env["WEBHOOK_HANDLERS"] = ",".join(HANDLERS)

# The image: dependencies exactly as locked in uv.lock (without the dev group), then our
# own code. Modal 1.x mounts nothing implicitly, so the `receiver` package, `handlers/` and
# the top-level package of every configured handler module are added explicitly, last.
local_packages = sorted({"receiver", "handlers"} | {path.split(".")[0] for path in HANDLERS})
image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_sync(os.path.dirname(os.path.abspath(__file__)), extra_options="--no-dev")
    .add_local_python_source(*local_packages)
)

app = modal.App(APP_NAME, image=image)

# Secrets: the shared webhook secret (comma-separated for rotation) and the LangSmith key.
webhook_secret = modal.Secret.from_name(WEBHOOK_SECRET_NAME, required_keys=["LS_WEBHOOK"])
langsmith_secret = modal.Secret.from_name(
    LANGSMITH_SECRET_NAME, required_keys=["LANGSMITH_API_KEY"]
)
handler_secrets = [modal.Secret.from_name(name) for name in EXTRA_SECRET_NAMES]

# Accepted deliveries and per-handler status: the first `put(..., skip_if_exists=True)` of a
# delivery id wins, so a redelivered body is recognised across containers.
deliveries = modal.Dict.from_name(DELIVERIES_DICT_NAME, create_if_missing=True)


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
    from receiver.logs import configure_logging
    from receiver.modal_runtime import process_delivery
    from receiver.settings import Settings

    settings = Settings.from_env()
    configure_logging(settings.secrets)
    return await process_delivery(settings, deliveries, delivery_id)


# The endpoint. One container answers many deliveries at once (the work per request is a
# secret check, a validation and two small Dict writes); more containers start for bursts.
@app.function(secrets=[webhook_secret], env=runtime_env, max_containers=10, scaledown_window=300)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web():
    from receiver.logs import configure_logging
    from receiver.modal_runtime import create_modal_app
    from receiver.settings import Settings

    settings = Settings.from_env()
    configure_logging(settings.secrets)
    return create_modal_app(settings, deliveries, spawn=process.spawn.aio)
