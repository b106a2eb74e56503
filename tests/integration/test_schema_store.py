"""The embedded schema registry's memory in PostgreSQL (table ``avro_schemas``): records
written under an older schema stay readable after an upgrade and a restart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from contactstream.adapters.avro import (
    DecodeError,
    EmbeddedSchemaRegistry,
    EnvelopeCodec,
    build_registry,
    load_envelope_schema,
    schema_json,
    stable_id,
)
from contactstream.adapters.database import Database

pytestmark = pytest.mark.integration


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, max_size=2)
    yield database
    database.close()


def _old_envelope_schema() -> dict[str, Any]:
    """The envelope as it was before ``received_at``: a writer schema no .avsc holds."""
    old = schema_json(load_envelope_schema())
    old["fields"] = [f for f in old["fields"] if f["name"] != "received_at"]
    return old


def _event() -> dict[str, Any]:
    return {"event_id": "persist-1", "type": "call.started",
            "occurred_at": "2026-11-22T09:00:00+01:00", "source": "pbx",
            "customer": {"id": "c-1"}, "channel": "voice", "payload": {"direction": "inbound"}}


def test_a_record_under_an_old_schema_is_read_after_a_restart(database_url: str) -> None:
    before = Database(database_url, max_size=2)
    try:
        writer = EnvelopeCodec(EmbeddedSchemaRegistry(db=before), schema=_old_envelope_schema())
        data = writer.encode(_event())
    finally:
        before.close()
    after = Database(database_url, max_size=2)  # a new process, after the upgrade
    try:
        decoded = EnvelopeCodec(build_registry(None, after)).decode(data)
        assert decoded["event_id"] == "persist-1" and decoded["received_at"] == 0
    finally:
        after.close()
    with pytest.raises(DecodeError, match="unknown schema id"):  # without the database
        EnvelopeCodec(EmbeddedSchemaRegistry()).decode(data)


def test_each_schema_is_stored_once_by_its_stable_id(db: Database) -> None:
    old = _old_envelope_schema()
    for _ in range(3):  # many processes starting at once register the same schemas
        registry = EmbeddedSchemaRegistry(db=db)
        EnvelopeCodec(registry)
        EnvelopeCodec(registry, schema=old)
    rows = dict(db.all("SELECT id, schema FROM avro_schemas"))
    current = stable_id(load_envelope_schema())
    assert set(rows) == {current, stable_id(old)}
    assert rows[stable_id(old)] == old  # plain Avro JSON, no fastavro bookkeeping
    assert stable_id(rows[current]) == current


def test_schemas_are_only_stored_when_registered(db: Database) -> None:
    """Loading the schema files is not registering them: only what a codec wrote with."""
    EmbeddedSchemaRegistry(db=db)
    assert db.scalar("SELECT COUNT(*) FROM avro_schemas") == 0
