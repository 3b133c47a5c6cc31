"""What the operator scripts share: opening the right store and showing deliveries.

store = open_store(settings, on_modal=False)
print(render_table(store.recent(20)))
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from receiver.delivery import DeliveryRecord
from receiver.settings import Settings
from receiver.store import DeliveryStore, SqliteStore

DEFAULT_APP_NAME = "langsmith-webhooks"
DEFAULT_DICT_NAME = "langsmith-webhook-deliveries"


def app_name() -> str:
    """The deployed Modal app's name (``WEBHOOK_APP_NAME``, as in ``webhook_app.py``)."""
    return os.environ.get("WEBHOOK_APP_NAME", DEFAULT_APP_NAME)


def deliveries_dict_name() -> str:
    """The ``modal.Dict`` of deliveries (``WEBHOOK_DICT_NAME``, as in ``webhook_app.py``)."""
    return os.environ.get("WEBHOOK_DICT_NAME", DEFAULT_DICT_NAME)


def open_store(settings: Settings, *, on_modal: bool) -> DeliveryStore:
    """The local SQLite store, or the deployed app's ``modal.Dict`` (needs a Modal token)."""
    if not on_modal:
        return SqliteStore(settings.store_path, busy_timeout=settings.store_busy_seconds)
    import modal

    from receiver.modal_runtime import ModalDictStore

    return ModalDictStore(modal.Dict.from_name(deliveries_dict_name()))


def render_table(records: list[DeliveryRecord]) -> str:
    """One line per delivery, then one indented line per handler."""
    if not records:
        return "no deliveries"
    lines = []
    for record in records:
        when = datetime.fromtimestamp(record.received_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"{record.id}  {when}Z  {record.status.value:<7}  "
            f"rule {record.rule_id}  {record.runs} runs"
        )
        for name, state in record.handlers.items():
            error = f"  {state.last_error}" if state.last_error else ""
            lines.append(f"    {name:<40} {state.status.value:<7} attempts={state.attempts}{error}")
    return "\n".join(lines)
