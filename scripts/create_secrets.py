"""Create the Modal secrets the app needs: the webhook secret and the LangSmith key.

    uv run scripts/create_secrets.py                    # first time: both secrets
    uv run scripts/create_secrets.py --rotate           # a new secret; the old one still works
    uv run scripts/create_secrets.py --finish-rotation  # drop the old one
    uv run scripts/create_secrets.py --signing-secret   # add LangSmith's signing secret
    uv run scripts/create_secrets.py --console          # turn the delivery console on
    uv run scripts/create_secrets.py --slack-alerts     # alerts to SLACK_ALERTS_WEBHOOK_URL

The webhook secret is 256 random bits, URL-safe. ``--signing-secret`` stores the signing
secret LangSmith shows for an Engine or Context Hub subscription (from
``LS_SIGNING_SECRET``, or asked for without echo) as ``LS_SIGNING_SECRETS`` in the webhook
Modal secret, next to ``LS_WEBHOOK``; after "Roll signing secret" in LangSmith, run it again
with the new one: the previous one is kept beside it (one previous at most). ``--console``
makes a console token (``WEBHOOK_CONSOLE_TOKEN``, as random as the webhook secret, shown
once) and ``--slack-alerts`` stores ``SLACK_ALERTS_WEBHOOK_URL``; both live in the webhook
Modal secret and in the state file, and are kept by every later run.
``LANGSMITH_API_KEY`` is read from the environment, or asked for without echo. Values reach
the ``modal`` CLI through a temporary JSON file of mode 0600 (``--from-json``), never on its
command line, and the file is deleted afterwards. A copy of the secrets stays in
``.webhook-state.json`` (mode 0600, gitignored) for ``deploy.py`` and
``connect_langsmith.py``.

Exit codes: 0 done, 1 the Modal CLI failed, 2 usage, 3 missing prerequisite (Modal CLI,
Modal token, LangSmith key, or no secret to rotate).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

from receiver.cli.setup import (
    CliError,
    ExitCode,
    State,
    add_common_arguments,
    require_modal_token,
    run_modal,
)
from receiver.settings import is_signing_secret

SECRET_BYTES = 32  # 256 bits


def new_webhook_secret() -> str:
    """A fresh webhook secret: 256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def create_modal_secret(name: str, values: dict[str, str], env: str | None) -> None:
    """``modal secret create NAME --from-json FILE --force``, FILE being 0600 and deleted after."""
    fd, path = tempfile.mkstemp(prefix="modal-secret-", suffix=".json")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(values, out)
        args = ["secret", "create", name, "--from-json", path, "--force"]
        run_modal([*args, "--env", env] if env else args)
    finally:
        Path(path).unlink(missing_ok=True)


def secret_from_user(variable: str, prompt: str, missing: str) -> str:
    """``variable`` from the environment, or typed by the user without echo; ``missing``
    (the fix to apply) when neither gives a value."""
    value = os.environ.get(variable, "").strip()
    if not value and sys.stdin.isatty():
        value = getpass.getpass(f"{prompt} (input hidden): ").strip()
    if not value:
        raise CliError(ExitCode.MISSING_PREREQUISITE, missing)
    return value


def langsmith_key() -> str:
    """``LANGSMITH_API_KEY`` from the environment, or typed by the user without echo."""
    return secret_from_user(
        "LANGSMITH_API_KEY",
        "LangSmith API key",
        "no LangSmith API key: export LANGSMITH_API_KEY=lsv2_... (or run this in a"
        " terminal to be asked for it), or pass --skip-langsmith",
    )


def signing_secret() -> str:
    """LangSmith's signing secret: ``LS_SIGNING_SECRET``, or typed without echo; checked
    by the rule the receiver applies at start-up."""
    value = secret_from_user(
        "LS_SIGNING_SECRET",
        "LangSmith signing secret",
        "no signing secret: export LS_SIGNING_SECRET=... (LangSmith shows it on the"
        " webhook subscription), or run this in a terminal to be asked for it",
    )
    if not is_signing_secret(value):
        raise CliError(
            ExitCode.USAGE, "a signing secret is printable ASCII without spaces or commas"
        )
    return value


def next_secrets(state: State, *, rotate: bool, finish: bool) -> list[str]:
    """The webhook secrets to store: new, new + old (rotation) or the newest only (finish)."""
    if rotate or finish:
        if not state.secrets:
            raise CliError(
                ExitCode.MISSING_PREREQUISITE,
                f"nothing to rotate: {state.path} holds no webhook secret"
                " (run without --rotate first)",
            )
        return [new_webhook_secret(), state.secrets[0]] if rotate else state.secrets[:1]
    return [new_webhook_secret()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rotate", action="store_true", help="add a new secret, keep the old")
    mode.add_argument("--finish-rotation", action="store_true", help="keep only the newest")
    mode.add_argument(
        "--signing-secret",
        action="store_true",
        help="store LangSmith's signing secret (LS_SIGNING_SECRET, or asked); keeps the last one",
    )
    parser.add_argument(
        "--console",
        action="store_true",
        help="turn the delivery console on: a new WEBHOOK_CONSOLE_TOKEN (printed once)",
    )
    parser.add_argument(
        "--slack-alerts",
        action="store_true",
        help="store SLACK_ALERTS_WEBHOOK_URL (from the environment, or asked) for alerts",
    )
    parser.add_argument("--webhook-secret-name", default="ls-webhook")
    parser.add_argument(
        "--langsmith-secret-name", default=os.environ.get("LANGSMITH_SECRET_NAME", "langsmith")
    )
    parser.add_argument(
        "--langsmith-workspace-id",
        default=os.environ.get("LANGSMITH_WORKSPACE_ID"),
        help="the workspace of an organization-scoped key, stored as LANGSMITH_WORKSPACE_ID",
    )
    parser.add_argument(
        "--langsmith-endpoint",
        default=os.environ.get("LANGSMITH_ENDPOINT"),
        help="self-hosted or EU API URL, stored as LANGSMITH_ENDPOINT (default: cloud, US)",
    )
    parser.add_argument(
        "--skip-langsmith", action="store_true", help="do not (re)create the LangSmith secret"
    )
    add_common_arguments(parser, reveal_help="print the new webhook secret")
    args = parser.parse_args(argv)

    try:
        require_modal_token()
        state = State.load(args.state_file)
        rotating = args.rotate or args.finish_rotation
        if args.signing_secret:  # the webhook secrets stay as they are
            state.signing_secrets = [signing_secret(), *state.signing_secrets[:1]]
            webhook_secrets = state.secrets or [new_webhook_secret()]
        else:
            webhook_secrets = next_secrets(state, rotate=args.rotate, finish=args.finish_rotation)
        langsmith = None
        if not (rotating or args.signing_secret or args.skip_langsmith):
            langsmith = {"LANGSMITH_API_KEY": langsmith_key()}
            if args.langsmith_endpoint:
                langsmith["LANGSMITH_ENDPOINT"] = args.langsmith_endpoint
            if args.langsmith_workspace_id:
                langsmith["LANGSMITH_WORKSPACE_ID"] = args.langsmith_workspace_id
        if args.console:
            state.console_token = new_webhook_secret()
        if args.slack_alerts:
            state.slack_alerts_url = secret_from_user(
                "SLACK_ALERTS_WEBHOOK_URL",
                "Slack incoming webhook URL for alerts",
                "no Slack URL: export SLACK_ALERTS_WEBHOOK_URL=https://hooks.slack.com/...",
            )
        values = {"LS_WEBHOOK": ",".join(webhook_secrets)}
        # The secret is replaced as a whole: everything it held goes back in.
        if state.signing_secrets:
            values["LS_SIGNING_SECRETS"] = ",".join(state.signing_secrets)
        if state.console_token:
            values["WEBHOOK_CONSOLE_TOKEN"] = state.console_token
        if state.slack_alerts_url:
            values["SLACK_ALERTS_WEBHOOK_URL"] = state.slack_alerts_url
        create_modal_secret(args.webhook_secret_name, values, args.env)
        state.secrets = webhook_secrets
        state.save()
        print(
            f"Modal secret '{args.webhook_secret_name}' holds {len(webhook_secrets)} webhook"
            f" secret(s) and {len(state.signing_secrets)} signing secret(s); a copy is in"
            f" {args.state_file} (mode 0600)."
        )
        if langsmith:
            create_modal_secret(args.langsmith_secret_name, langsmith, args.env)
            print(f"Modal secret '{args.langsmith_secret_name}' holds {', '.join(langsmith)}.")
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    if args.show_secret:
        print(f"Webhook secret: {webhook_secrets[0]}")
    if args.console:  # typed once into the console's login form: shown now, kept in the state
        print(f"Console token (log in at <your URL>/console): {state.console_token}")
    # Containers read secrets when they start: a redeploy makes the change take effect now.
    print("Next: `uv run scripts/deploy.py`.")
    if args.rotate:
        print(
            "Then `uv run scripts/connect_langsmith.py --rule ...` to give LangSmith the new"
            " secret, and `uv run scripts/create_secrets.py --finish-rotation`."
        )
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
