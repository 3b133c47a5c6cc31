"""Re-run the failed handlers of dead deliveries (after fixing what made them fail).

    uv run scripts/replay.py DELIVERY_ID [DELIVERY_ID ...]
    uv run scripts/replay.py --failed            # every dead delivery
    uv run scripts/replay.py --failed --modal    # on the deployed app: spawns `process`
    uv run scripts/replay.py --failed --modal --env staging

Locally the handlers run in this process, with the usual retries, and the outcome is
printed. With ``--modal`` the failed handlers are reset in the app's modal.Dict and the
deployed ``process`` function is spawned for each delivery.
Exit code 0 when every replayed delivery is done (or spawned), 1 when one is still dead,
2 on a usage or store error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from receiver.cli.operator import add_modal_arguments, open_store, render_table
from receiver.cli.replay import ReplayError, replay
from receiver.delivery import DeliveryStatus
from receiver.dispatch import Dispatcher, load_configuration
from receiver.logs import configure_logging
from receiver.registry import HandlerLoadError
from receiver.settings import Settings, SettingsError
from receiver.stores import StoreError
from receiver.stores.modal_dict import ModalDictStore


def replay_on_modal(
    store: ModalDictStore, delivery_ids: list[str], app_name: str, environment: str | None
) -> int:
    """Reset the failed handlers in the Dict and spawn the deployed ``process`` for each
    (noting the call, so that the sweeper does not spawn another while it is queued)."""
    import modal

    process = modal.Function.from_name(app_name, "process", environment_name=environment)
    for delivery_id in delivery_ids:
        reset = asyncio.run(store.reset(delivery_id))
        call = process.spawn(delivery_id)
        asyncio.run(store.record_call(delivery_id, call.object_id))
        print(f"{delivery_id}: reset {', '.join(reset) or 'nothing'}; spawned {call.object_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("delivery_ids", nargs="*", metavar="DELIVERY_ID")
    parser.add_argument("--failed", action="store_true", help="replay every dead delivery")
    add_modal_arguments(parser)
    args = parser.parse_args(argv)
    if bool(args.delivery_ids) == args.failed:
        parser.error("give DELIVERY_ID(s) or --failed (not both)")
    try:
        settings = Settings.from_env()
        configure_logging(settings.redacted_values)
        if args.serve:
            parser.error("replay on Modal runs the deployed `process`: --serve does not apply")
        store = open_store(settings, on_modal=args.modal, environment=args.env)
        delivery_ids = args.delivery_ids or asyncio.run(store.dead())
        if not delivery_ids:
            print("no dead deliveries")
            return 0
        if args.modal:
            assert isinstance(store, ModalDictStore)
            return replay_on_modal(store, delivery_ids, settings.app_name, args.env)
        routes, handlers = load_configuration(settings)
        dispatcher = Dispatcher(store, handlers, settings, routes)
        try:
            records = asyncio.run(replay(dispatcher, delivery_ids))
        finally:
            dispatcher.close()
    except (StoreError, SettingsError, HandlerLoadError, ReplayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_table(records))
    return 1 if any(record.status is DeliveryStatus.DEAD for record in records) else 0


if __name__ == "__main__":
    sys.exit(main())
