"""What the set-up scripts share: exit codes, clear errors, the Modal CLI, the local state file.

The local state file (``.webhook-state.json``, gitignored, mode 0600) keeps the webhook
secret(s) and the deployed URL between ``create_secrets.py``, ``deploy.py`` and
``connect_langsmith.py``, so that no step needs a secret pasted on a command line.

    state = State.load()
    state.secrets  # ['new-secret', 'old-secret'] during a rotation
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

DEFAULT_STATE_PATH = Path(".webhook-state.json")


class ExitCode(IntEnum):
    """Exit codes every set-up script uses, so that other scripts can rely on them."""

    OK = 0
    FAILED = 1  # the operation itself failed (the Modal CLI or LangSmith said no)
    USAGE = 2  # wrong arguments (argparse uses 2 as well)
    MISSING_PREREQUISITE = 3  # no Modal CLI, no Modal token, no LangSmith key, no state
    NOT_FOUND = 4  # the rule (or deployed app) named does not exist


class CliError(Exception):
    """An error to print (with the fix to apply) before exiting with ``code``."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def add_common_arguments(parser: argparse.ArgumentParser, *, reveal_help: str) -> None:
    """The options every Modal set-up script takes: environment, state file, --show-secret."""
    parser.add_argument("-e", "--env", help="Modal environment (default: your active one)")
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_PATH)
    parser.add_argument("--show-secret", action="store_true", help=reveal_help)


def find_modal_cli() -> str:
    """The path of the ``modal`` executable, or a :class:`CliError` saying how to get it."""
    path = shutil.which("modal")
    if path is None:
        raise CliError(
            ExitCode.MISSING_PREREQUISITE,
            "the Modal CLI (`modal`) is not on PATH: run this script with `uv run`"
            " (the project installs it), or `pip install modal`",
        )
    return path


def require_modal_token() -> None:
    """Fail early, with the fix, when no Modal token is configured."""
    from modal.config import config

    if not (config.get("token_id") and config.get("token_secret")):
        raise CliError(
            ExitCode.MISSING_PREREQUISITE,
            "no Modal token: run `uv run modal token new` (or set MODAL_TOKEN_ID and"
            " MODAL_TOKEN_SECRET)",
        )


def run_modal(
    args: Sequence[str], *, capture: bool = False, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``modal ARGS...`` (with ``env`` added to this process's environment); a non-zero
    exit becomes a :class:`CliError`."""
    command = [find_modal_cli(), *args]
    environment = {**os.environ, **env} if env else None
    # The command is the modal CLI and arguments built by our scripts, never a shell string.
    result = subprocess.run(  # noqa: S603
        command, capture_output=capture, text=True, check=False, env=environment
    )
    if result.returncode != 0:
        detail = f": {result.stderr.strip()}" if capture and result.stderr else ""
        raise CliError(
            ExitCode.FAILED, f"`modal {' '.join(args[:2])}` failed ({result.returncode}){detail}"
        )
    return result


@dataclass
class State:
    """The local state file's content: webhook secrets (current first), LangSmith's signing
    secrets (current first), the deployed URL, the console token, the Slack alerts URL."""

    path: Path = DEFAULT_STATE_PATH
    secrets: list[str] = field(default_factory=list, repr=False)
    url: str | None = None
    signing_secrets: list[str] = field(default_factory=list, repr=False)
    # Kept in the webhook Modal secret too (it is rewritten whole each time).
    console_token: str | None = field(default=None, repr=False)
    slack_alerts_url: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: Path = DEFAULT_STATE_PATH) -> State:
        """The state at ``path`` (empty if the file does not exist)."""
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(
            path,
            list(data.get("secrets", [])),
            data.get("url"),
            list(data.get("signing_secrets", [])),
            data.get("console_token"),
            data.get("slack_alerts_url"),
        )

    @property
    def current_secret(self) -> str:
        """The secret to configure in LangSmith (the newest one)."""
        if not self.secrets:
            raise CliError(
                ExitCode.MISSING_PREREQUISITE,
                f"no webhook secret in {self.path}: run `uv run scripts/create_secrets.py` first",
            )
        return self.secrets[0]

    def save(self) -> None:
        """Write the file with mode 0600 (created so, never readable by others even briefly)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            content = {"secrets": self.secrets, "url": self.url}
            if self.signing_secrets:
                content["signing_secrets"] = self.signing_secrets
            if self.console_token:
                content["console_token"] = self.console_token
            if self.slack_alerts_url:
                content["slack_alerts_url"] = self.slack_alerts_url
            json.dump(content, out, indent=2)
        os.chmod(self.path, 0o600)
