"""Re-run handlers of deliveries: dead ones after a fix, or any, even those that succeeded.

    uv run scripts/replay.py DELIVERY_ID [DELIVERY_ID ...]
    uv run scripts/replay.py --failed                       # every dead delivery
    uv run scripts/replay.py --since 2h --route prod        # the dead ones of a range
    uv run scripts/replay.py --since 2026-11-29T08:00Z --include-done --dry-run
    uv run scripts/replay.py --failed --modal --env staging # on the deployed app

Deliveries are chosen as on the console: ``--status``, ``--source``, ``--route``,
``--rule``, ``--run``, ``--since``/``--until`` (ISO-8601, UTC unless it says, or a duration
ago: ``30m``, ``2h``, ``1d``). A delivery's failed handlers run again; with
``--include-done`` its succeeded ones too (handlers are idempotent by contract).
``--dry-run`` prints what would run and changes nothing.

Locally the handlers run in this process, with the usual retries, and the outcome is
printed. With ``--modal`` the handlers are reset in the app's modal.Dict and the deployed
``process`` function is spawned for each delivery. Exit code 0 when every replayed
delivery is done (or spawned), 1 when one is still dead, 2 on a usage or store error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from receiver.cli.operator import add_modal_arguments, open_store, render_table
from receiver.cli.replay import ReplayError, plan_for, run_here
from receiver.delivery import DeliveryStatus
from receiver.dispatch import Dispatcher, load_configuration
from receiver.logs import configure_logging
from receiver.registry import HandlerLoadError
from receiver.replays import Plan, carry_out
from receiver.selection import FILTERS, Selection
from receiver.settings import Settings, SettingsError
from receiver.stores import StoreError
from receiver.stores.modal_dict import ModalDictStore


def replay_on_modal(store: ModalDictStore, plan: Plan, app_name: str, env: str | None) -> int:
    """Reset the planned handlers in the Dict and spawn the deployed ``process`` for each
    (noting the call, so that the sweeper does not spawn another while it is queued)."""
    import modal

    process = modal.Function.from_name(app_name, "process", environment_name=env)
    names = dict(plan.items)

    async def spawn(delivery_id: str) -> None:
        call = await process.spawn.aio(delivery_id)
        await store.record_call(delivery_id, call.object_id)
        print(f"{delivery_id}: reset {', '.join(names[delivery_id])}; spawned {call.object_id}")

    asyncio.run(carry_out(store, plan, spawn))
    return 0


def describe(plan: Plan) -> str:
    lines = [f"{plan.deliveries} deliveries, {plan.handlers} handlers would run again:"]
    lines += [f"{delivery_id}  {', '.join(names)}" for delivery_id, names in plan.items]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("delivery_ids", nargs="*", metavar="DELIVERY_ID")
    parser.add_argument("--failed", action="store_true", help="every dead delivery")
    for name in FILTERS:
        parser.add_argument(f"--{name}", help=f"only deliveries with this {name}")
    parser.add_argument(
        "--include-done", action="store_true", help="run succeeded handlers again too"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    add_modal_arguments(parser)
    args = parser.parse_args(argv)
    filtered = args.failed or any(getattr(args, name) for name in FILTERS)
    if bool(args.delivery_ids) == filtered:
        parser.error("give DELIVERY_ID(s), or --failed or filters such as --since 2h (not both)")
    if args.serve:
        parser.error("replay on Modal runs the deployed `process`: --serve does not apply")
    try:
        raw = {name: getattr(args, name) for name in FILTERS}
        if args.failed:
            raw["status"] = raw["status"] or DeliveryStatus.DEAD.value
        selection = Selection.parse(**raw)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        settings = Settings.from_env()
        configure_logging(settings.redacted_values)
        store = open_store(settings, on_modal=args.modal, environment=args.env)
        plan = asyncio.run(
            plan_for(
                store, ids=args.delivery_ids, selection=selection, include_done=args.include_done
            )
        )
        if args.dry_run:
            print(describe(plan))
            return 0
        if not plan.items:
            print("no dead deliveries" if not args.include_done else "nothing to replay")
            return 0
        if args.modal:
            assert isinstance(store, ModalDictStore)
            return replay_on_modal(store, plan, settings.app_name, args.env)
        routes, handlers = load_configuration(settings)
        dispatcher = Dispatcher(store, handlers, settings, routes)
        try:
            records = asyncio.run(run_here(dispatcher, plan))
        finally:
            dispatcher.close()
    except (StoreError, SettingsError, HandlerLoadError, ReplayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_table(records))
    return 1 if any(record.status is DeliveryStatus.DEAD for record in records) else 0


if __name__ == "__main__":
    sys.exit(main())
