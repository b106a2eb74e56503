"""The alert's `queue` (issue 13): in the API's and webhooks' alert body, and on Kafka as a
defaulted field, so alert records written before it still decode."""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

from fastavro import schemaless_writer

from contactstream.adapters.avro import SCHEMA_DIR, EmbeddedSchemaRegistry, load_schema
from contactstream.adapters.records import RecordCodec
from contactstream.streams.webhooks import alert_json

ROW: dict[str, Any] = {
    "seq": 7, "id": "case-1:first_response:breach:0", "kind": "sla.breached",
    "case_id": "case-1", "customer_id": "c-1", "metric": "first_response",
    "due_at": "2026-11-22T09:15:00+00:00", "at": "2026-11-22T09:15:00.2+00:00",
    "level": "critical", "detail": {"priority": "high", "queue": "billing", "cycle": "0"}}


def test_the_alert_body_names_its_queue_and_null_when_it_has_none() -> None:
    assert alert_json(ROW)["queue"] == "billing"
    assert alert_json({**ROW, "detail": {"queue": ""}})["queue"] is None
    assert alert_json({**ROW, "detail": {}})["queue"] is None


def test_an_alert_record_written_before_the_queue_field_decodes_with_null() -> None:
    registry = EmbeddedSchemaRegistry()
    codec = RecordCodec(registry, "Alert", "alerts-value")
    old = load_schema(str(SCHEMA_DIR / "contactstream.v1.Alert.avsc"))
    old["fields"] = [f for f in old["fields"] if f["name"] != "queue"]
    old_id = registry.register("alerts-value", old)
    assert old_id != codec.schema_id
    buf = BytesIO()
    buf.write(struct.pack(">bI", 0, old_id))
    schemaless_writer(buf, registry.get(old_id), ROW)
    decoded = codec.decode(buf.getvalue())
    assert decoded["queue"] is None
    assert decoded["case_id"] == "case-1"
    # and a new record carries it
    assert codec.decode(codec.encode({**ROW, "queue": "billing"}))["queue"] == "billing"
