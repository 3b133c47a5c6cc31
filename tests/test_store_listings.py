"""Both stores list deliveries newest first, filtered by source and by route alike."""

import asyncio

import pytest
from support.memory_modal import memory_store

from receiver.delivery import DeliveryRecord, HandlerState
from receiver.stores.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "modal_dict"])
def store(request, tmp_path):
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "deliveries.sqlite3")
        yield store
        store.close()
    else:
        yield memory_store()


DELIVERIES = [
    ("a", "rule", ("prod-errors", "everything")),
    ("b", "engine", ("issues",)),
    ("c", "rule", ("everything",)),
    ("d", "alert", ()),
    ("e", "rule", ("prod-errors-2",)),  # a name that contains another route's name
]


def test_recent_filters_by_source_and_by_route_and_keeps_what_matched(store):
    for when, (delivery_id, source, routes) in enumerate(DELIVERIES):
        record = DeliveryRecord(
            delivery_id,
            float(when),
            source,
            f"about {delivery_id}",
            0,
            routes,
            {"h": HandlerState()},
        )
        assert asyncio.run(store.accept(record, b"{}"))

    def ids(**filters):
        return [record.id for record in asyncio.run(store.recent(10, **filters))]

    assert ids() == ["e", "d", "c", "b", "a"]
    assert ids(source="rule") == ["e", "c", "a"]
    assert ids(route="prod-errors") == ["a"]
    assert ids(route="everything", source="rule") == ["c", "a"]
    assert ids(source="context_hub") == []
    [engine] = asyncio.run(store.recent(1, source="engine"))
    assert (engine.source, engine.subject, engine.routes) == ("engine", "about b", ("issues",))
