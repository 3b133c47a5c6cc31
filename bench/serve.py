"""Serve one of the benchmarked apps with uvicorn, the same way for all of them.

    python bench/serve.py ours|reference|ceiling|emulator --port 8000

One process, one worker, uvicorn's defaults (h11, asyncio), access log off, log level
warning for every app (so the receiver's INFO lines are not written either).
"""

import argparse
import sys
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]


def build(name: str):
    if name == "ours":  # as scripts/serve_local.py builds it
        from receiver.runtimes.local import create_local_app, tune_garbage_collector
        from receiver.settings import Settings

        app = create_local_app(Settings.from_env())
        tune_garbage_collector()
        return app
    if name == "reference":
        from reference_app import app

        return app
    if name == "ceiling":
        from ceiling_app import app

        return app
    if name == "emulator":
        from support.langsmith_emulator import Emulator

        return Emulator().build_app()
    raise SystemExit(f"unknown app {name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["ours", "reference", "ceiling", "emulator"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(args.app),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        # The emulator accepts the reference's 1,000-id feedback URLs (real servers may not).
        h11_max_incomplete_event_size=1 << 20,
    )


if __name__ == "__main__":
    main()
