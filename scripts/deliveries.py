"""List recent deliveries with the status of each handler.

    uv run scripts/deliveries.py             # the local store (WEBHOOK_STORE_PATH)
    uv run scripts/deliveries.py --modal     # the deployed app's modal.Dict
    uv run scripts/deliveries.py --modal --env staging --serve  # `modal serve`'s, in staging
    uv run scripts/deliveries.py --json --limit 5
    uv run scripts/deliveries.py --source engine --route prod-errors

Exit code 0, or 2 when the store cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from receiver.cli.operator import add_modal_arguments, open_store, render_table
from receiver.settings import Settings, SettingsError
from receiver.stores import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_modal_arguments(parser)
    parser.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--source", help="only deliveries of this sender (rule, engine, ...)")
    parser.add_argument("--route", help="only deliveries that matched this route")
    args = parser.parse_args(argv)
    try:
        store = open_store(
            Settings.from_env(), on_modal=args.modal, environment=args.env, serving=args.serve
        )
        records = asyncio.run(store.recent(args.limit, source=args.source, route=args.route))
    except (StoreError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([record.to_json() for record in records], indent=2))
    else:
        print(render_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
