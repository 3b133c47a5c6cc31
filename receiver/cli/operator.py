"""What the operator scripts share: opening the right store and showing deliveries.

store = open_store(settings, on_modal=False)
print(render_table(await store.recent(20)))
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from receiver.delivery import DeliveryRecord
from receiver.settings import Settings
from receiver.stores import DeliveryStore
from receiver.stores.sqlite import SqliteStore


def open_store(
    settings: Settings, *, on_modal: bool, environment: str | None = None, serving: bool = False
) -> DeliveryStore:
    """The local SQLite store, or the Modal app's ``modal.Dict`` (needs a Modal token): the
    deployed app's, or with ``serving`` the one ``modal serve`` records into, in
    ``environment`` (default: the active Modal environment)."""
    if not on_modal:
        return SqliteStore(settings.store_path, busy_timeout=settings.store_busy_seconds)
    import modal

    from receiver.stores.modal_dict import ModalDictStore

    return ModalDictStore(
        modal.Dict.from_name(
            settings.deliveries_dict_name(serving=serving), environment_name=environment
        ),
        modal.Queue.from_name(
            settings.deliveries_index_name(serving=serving), environment_name=environment
        ),
    )


def add_modal_arguments(parser: argparse.ArgumentParser) -> None:
    """``--modal``, ``-e/--env`` and ``--serve``: which Modal Dict an operator script reads."""
    parser.add_argument("--modal", action="store_true", help="use the Modal app's modal.Dict")
    parser.add_argument("-e", "--env", help="Modal environment (default: your active one)")
    parser.add_argument(
        "--serve", action="store_true", help="with --modal: the `modal serve` dev loop's Dict"
    )


def render_table(records: list[DeliveryRecord]) -> str:
    """One line per delivery, then one indented line per handler."""
    if not records:
        return "no deliveries"
    lines = []
    for record in records:
        when = datetime.fromtimestamp(record.received_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        about = f"{record.source} {record.subject}".strip()
        runs = f"  {record.runs} runs" if record.source == "rule" else ""
        routes = ",".join(record.routes) or "(no route)"
        lines.append(f"{record.id}  {when}Z  {record.status.value:<7}  {about}{runs}  {routes}")
        for name, state in record.handlers.items():
            error = f"  {state.last_error}" if state.last_error else ""
            lines.append(f"    {name:<40} {state.status.value:<7} attempts={state.attempts}{error}")
    return "\n".join(lines)
