"""Serve the receiver locally, offline, with the exact ASGI app Modal serves.

    uv run scripts/serve_local.py [--host 127.0.0.1] [--port 8000]

Uses the secret(s) in ``LS_WEBHOOK`` when set; otherwise generates a random one for this
run and prints the full URL to use. Deliveries are recorded in ``WEBHOOK_STORE_PATH``
(default ``data/deliveries.sqlite3``) and processed by a worker process the server starts;
deliveries left unfinished by a previous run are resumed at start.
"""

from __future__ import annotations

import argparse
import secrets
import sys

import uvicorn
from pydantic import SecretStr

from receiver.logs import configure_logging, install_redaction
from receiver.registry import HandlerLoadError
from receiver.runtimes.http_guard import ACCEPT_BACKLOG, guarded_protocol
from receiver.runtimes.local import create_local_app, tune_garbage_collector
from receiver.settings import Settings, SettingsError
from receiver.stores import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    generated = not settings.secrets
    if generated:
        settings = settings.model_copy(update={"secrets": (SecretStr(secrets.token_urlsafe(32)),)})
    configure_logging(settings.redacted_values)
    try:
        app = create_local_app(settings)
    except (HandlerLoadError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    base = f"http://{args.host}:{args.port}/"
    print(f"Receiver on {base} (handlers: {', '.join(settings.handlers)})", flush=True)
    if generated:
        # The one place a secret is printed: the user has to paste it somewhere.
        print("LS_WEBHOOK is not set; generated a secret for this run. Send deliveries to:")
        print(f"  {base}?secret={settings.secret_values[0]}", flush=True)
    else:
        print(f"Send deliveries to {base}?secret=<LS_WEBHOOK> or with the X-Webhook-Secret header")

    tune_garbage_collector()
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        http=guarded_protocol(settings),
        backlog=ACCEPT_BACKLOG,
    )
    install_redaction(settings.redacted_values)  # uvicorn.Config has just set its loggers up
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
