"""A fake ``modal`` executable for the set-up scripts' tests (no Modal account offline).

It records its arguments, its stdin, ``WEBHOOK_PUBLIC_URL`` and, for ``--from-json FILE``,
the file's content and permissions at the moment it was called, one JSON line per call, in
``FAKE_MODAL_LOG``; it exits with ``FAKE_MODAL_EXIT`` (default 0).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

SCRIPT = """#!{python}
import json, os, stat, sys
args = sys.argv[1:]
entry = {{"argv": args, "stdin": sys.stdin.read() if not sys.stdin.isatty() else ""}}
entry["public_url"] = os.environ.get("WEBHOOK_PUBLIC_URL")
if "--from-json" in args:
    path = args[args.index("--from-json") + 1]
    entry["json_path"] = path
    entry["json_mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
    with open(path) as f:
        entry["json"] = json.load(f)
with open(os.environ["FAKE_MODAL_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
sys.exit(int(os.environ.get("FAKE_MODAL_EXIT", "0")))
"""


def install(bin_dir: Path) -> Path:
    """Write the fake ``modal`` into ``bin_dir`` and return its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "modal"
    path.write_text(SCRIPT.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(log_path: Path) -> list[dict]:
    """The recorded calls, in order."""
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def environment(bin_dir: Path, log_path: Path) -> dict[str, str]:
    """Env vars that put the fake first on PATH, with a (fake) Modal token."""
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_MODAL_LOG": str(log_path),
        "MODAL_TOKEN_ID": "ak-test",
        "MODAL_TOKEN_SECRET": "as-test",
    }
