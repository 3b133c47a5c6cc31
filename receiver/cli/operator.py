"""What the operator scripts share: opening the right store and showing deliveries.

store = open_store(settings, on_modal=False)
print(render_table(await store.recent(20)))
"""

from __future__ import annotations

from datetime import UTC, datetime

from receiver.delivery import DeliveryRecord
from receiver.settings import Settings
from receiver.stores import DeliveryStore
from receiver.stores.sqlite import SqliteStore


def open_store(settings: Settings, *, on_modal: bool) -> DeliveryStore:
    """The local SQLite store, or the deployed app's ``modal.Dict`` (needs a Modal token)."""
    if not on_modal:
        return SqliteStore(settings.store_path, busy_timeout=settings.store_busy_seconds)
    import modal

    from receiver.stores.modal_dict import ModalDictStore

    return ModalDictStore(modal.Dict.from_name(settings.dict_name))


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
