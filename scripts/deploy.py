"""Deploy the Modal app and print the webhook configuration to paste into LangSmith.

    uv run scripts/deploy.py [-e ENV] [--show-secret]

Runs ``modal deploy webhook_app.py``, then asks Modal for the web function's URL
(``modal.Function.from_name(app, "web").get_web_url()``, not by reading the deploy output),
stores it in ``.webhook-state.json`` for ``connect_langsmith.py`` and prints the URL with the
``X-Webhook-Secret`` header (recommended) and the ``?secret=`` form. The secret itself is
printed only with ``--show-secret``.

Exit codes: 0 deployed, 1 the deploy failed, 2 usage, 3 missing prerequisite (Modal CLI,
Modal token, webhook secret), 4 the deployed app has no web URL.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from receiver.auth import SECRET_HEADER, SECRET_QUERY_PARAM
from receiver.cli.setup import (
    CliError,
    ExitCode,
    State,
    add_common_arguments,
    require_modal_token,
    run_modal,
)
from receiver.settings import Settings, SettingsError

APP_FILE = Path(__file__).resolve().parent.parent / "webhook_app.py"


def lookup_web_url(app: str, env: str | None) -> str | None:
    """The deployed ``web`` function's URL, from Modal's API."""
    import modal

    return modal.Function.from_name(app, "web", environment_name=env).get_web_url()


def webhook_configuration(url: str, secret: str | None) -> str:
    """What to paste into the LangSmith rule's webhook action."""
    shown = secret or "<your webhook secret: see .webhook-state.json, or --show-secret>"
    return "\n".join(
        [
            "Webhook configuration for the LangSmith automation rule:",
            f"  URL:    {url}",
            f"  Header: {SECRET_HEADER}: {shown}   (recommended)",
            f"  or the URL form: {url}?{SECRET_QUERY_PARAM}={shown}",
            "Or let `uv run scripts/connect_langsmith.py --rule NAME` set it for you.",
        ]
    )


def main(
    argv: list[str] | None = None,
    lookup: Callable[[str, str | None], str | None] = lookup_web_url,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, reveal_help="print the secret too")
    args = parser.parse_args(argv)
    try:
        require_modal_token()
        state = State.load(args.state_file)
        secret = state.current_secret
        command = ["deploy", str(APP_FILE), *(["--env", args.env] if args.env else [])]
        # The app links to itself (alerts) through WEBHOOK_PUBLIC_URL: yours if you set one
        # (a custom domain), else the Modal URL, known after the first deploy.
        chosen = os.environ.get("WEBHOOK_PUBLIC_URL")
        public_url = chosen or state.url
        run_modal(command, env={"WEBHOOK_PUBLIC_URL": public_url} if public_url else None)
        app_name = Settings.from_env().app_name
        url = lookup(app_name, args.env)
        if not url:
            raise CliError(
                ExitCode.NOT_FOUND,
                f"app '{app_name}' has no web URL: is WEBHOOK_APP_NAME the deployed app's name?",
            )
        if not chosen and url != public_url:
            run_modal(command, env={"WEBHOOK_PUBLIC_URL": url})  # once, on a first deploy
        state.url = url
        state.save()
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(webhook_configuration(url, secret if args.show_secret else None))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
