"""The Avro envelope codec: round trips, wire format, bad input, stable ids, evolution and
the Confluent Schema Registry client (against a small local HTTP server). The embedded
registry's memory in PostgreSQL: tests/integration/test_schema_store.py."""

from __future__ import annotations

import copy
import json
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastavro.schema import load_schema

from contactstream.adapters.avro import (
    PAYLOAD_RECORDS,
    SCHEMA_DIR,
    ConfluentSchemaRegistry,
    DecodeError,
    EmbeddedSchemaRegistry,
    EnvelopeCodec,
    build_registry,
    schema_json,
    stable_id,
)
from contactstream.domain.interactions import EVENT_TYPES

PAYLOADS: dict[str, dict[str, Any]] = {
    "call.started": {"direction": "inbound"},
    "call.ended": {"direction": "inbound", "outcome": "abandoned", "duration_s": 0.0,
                   "wait_s": 95.5},
    "email.received": {"subject": "Számla — kétszer terheltek", "body": "Üdvözlettel, Ödön"},
    "email.sent": {"subject": "پاسخ: سفارش شما"},
    "chat.message": {"direction": "outbound", "text": "您好，我们正在处理您的订单。"},
    "web.visit": {"url": "https://example.com/ár", "referrer": "https://search.example/",
                  "session_id": "s-9", "duration_s": 42.0},
    "complaint.filed": {"category": "billing", "priority": "urgent",
                        "description": "Charged twice"},
    "survey.answered": {"kind": "csat", "score": 5, "comment": "خیلی خوب بود"},
    "purchase.completed": {"amount": "1249.90", "currency": "HUF", "order_id": "o-1"},
    "consent.changed": {"channel": "email", "granted": False, "purpose": "marketing"},
}


def envelope(type_: str = "complaint.filed", **changes: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "event_id": f"e-{type_}",
        "type": type_,
        "occurred_at": "2026-11-22T09:15:00+01:00",
        "source": "test",
        "customer": {"id": "c-1001", "email": "anna@example.com", "name": "王小明"},
        "channel": "web",
        "agent_id": "agent-7",
        "queue": None,
        "case_id": None,
        "payload": copy.deepcopy(PAYLOADS[type_]),
        "received_at": 1_795_000_000_000,
    }
    env.update(changes)
    return env


@pytest.fixture(scope="module")
def registry() -> EmbeddedSchemaRegistry:
    return EmbeddedSchemaRegistry()


@pytest.fixture(scope="module")
def codec(registry: EmbeddedSchemaRegistry) -> EnvelopeCodec:
    return EnvelopeCodec(registry)


def test_the_codec_covers_every_event_type() -> None:
    assert set(PAYLOAD_RECORDS) == set(EVENT_TYPES) == set(PAYLOADS)


@pytest.mark.parametrize("type_", sorted(PAYLOADS))
def test_every_event_type_round_trips(codec: EnvelopeCodec, type_: str) -> None:
    env = envelope(type_)
    assert codec.decode(codec.encode(env)) == env


def test_unicode_round_trips_unchanged(codec: EnvelopeCodec) -> None:
    env = envelope("chat.message", customer={"phone": "+989121234567", "name": "زهرا محمدی"})
    env["payload"]["text"] = "Árvíztűrő tükörfúrógép 🚀 سلام 你好"
    assert codec.decode(codec.encode(env)) == env


def test_unknown_payload_keys_survive_in_extra(codec: EnvelopeCodec) -> None:
    env = envelope("call.started")
    env["payload"].update({"ivr_path": ["1", "3"], "meta": {"lang": "hu", "n": 2},
                           "note": "Köszönöm", "flag": None})
    data = codec.encode(env)
    assert codec.decode(data) == env


def test_none_optionals_and_missing_received_at(codec: EnvelopeCodec) -> None:
    env = envelope("web.visit", customer={"visitor_id": "v-1", "email": None})
    env["payload"] = {"url": "https://example.com", "referrer": None}
    del env["received_at"]
    decoded = codec.decode(codec.encode(env))
    assert decoded["payload"] == {"url": "https://example.com"}
    assert decoded["customer"] == {"visitor_id": "v-1"}
    assert decoded["received_at"] == 0
    assert "extra" not in decoded


def test_wire_format(codec: EnvelopeCodec) -> None:
    data = codec.encode(envelope())
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == codec.schema_id


def test_encode_refuses_an_unknown_type(codec: EnvelopeCodec) -> None:
    with pytest.raises(ValueError):
        codec.encode(envelope(type="foo.bar"))


@pytest.mark.parametrize("data", [b"", b"\x00\x01", b"{\"event_id\": 1}", b"\x01" + b"\x00" * 20])
def test_not_wire_format(codec: EnvelopeCodec, data: bytes) -> None:
    with pytest.raises(DecodeError, match="not Confluent wire format"):
        codec.decode(data)


def test_garbage_body(codec: EnvelopeCodec) -> None:
    header = struct.pack(">bI", 0, codec.schema_id)
    for body in (b"", b"\xff" * 40, codec.encode(envelope())[5:30]):
        with pytest.raises(DecodeError, match="^avro: "):
            codec.decode(header + body)


def test_unknown_schema_id(codec: EnvelopeCodec) -> None:
    data = struct.pack(">bI", 0, 12345) + codec.encode(envelope())[5:]
    with pytest.raises(DecodeError, match="unknown schema id 12345"):
        codec.decode(data)


def test_ids_are_stable_across_registries() -> None:
    a, b = EmbeddedSchemaRegistry(), EmbeddedSchemaRegistry()
    assert EnvelopeCodec(a).schema_id == EnvelopeCodec(b).schema_id
    envelope_schema = load_schema(str(SCHEMA_DIR / "contactstream.v1.Envelope.avsc"))
    assert a.register("x", envelope_schema) == b.register("y", envelope_schema)
    assert stable_id(envelope_schema) == stable_id(schema_json(envelope_schema))
    assert 0 < stable_id(envelope_schema) < 2**31


def test_the_embedded_registry_knows_every_schema_file(registry: EmbeddedSchemaRegistry) -> None:
    for path in SCHEMA_DIR.glob("*.avsc"):
        schema = load_schema(str(path))
        assert registry.get(stable_id(schema))["name"] == path.name[: -len(".avsc")]


def evolved_schema(codec: EnvelopeCodec) -> dict[str, Any]:
    schema = schema_json(codec.schema)
    schema["fields"].append({"name": "priority_hint", "type": "string", "default": ""})
    return schema


def test_old_records_are_read_by_the_new_schema(registry: EmbeddedSchemaRegistry,
                                                 codec: EnvelopeCodec) -> None:
    new = EnvelopeCodec(registry, schema=evolved_schema(codec))
    assert new.schema_id != codec.schema_id
    env = envelope("survey.answered")
    decoded = new.decode(codec.encode(env))
    assert decoded == {**env, "priority_hint": ""}


def test_new_records_are_read_by_the_old_schema(codec: EnvelopeCodec) -> None:
    registry = EmbeddedSchemaRegistry()  # the old reader has never seen the new schema
    old = EnvelopeCodec(registry)
    new = EnvelopeCodec(registry, schema=evolved_schema(codec))
    env = envelope("purchase.completed")
    data = new.encode({**env, "priority_hint": "vip"})
    assert new.decode(data) == {**env, "priority_hint": "vip"}
    assert old.decode(data) == env


def test_the_same_schema_under_another_id_needs_no_resolution(codec: EnvelopeCodec) -> None:
    registry = EmbeddedSchemaRegistry()
    reader = EnvelopeCodec(registry)
    header = struct.pack(">bI", 0, 4242)
    registry._by_id[4242] = codec.schema  # as a real registry may number it
    env = envelope()
    assert reader.decode(header + codec.encode(env)[5:]) == env


def test_build_registry_embedded_by_default() -> None:
    assert isinstance(build_registry(None), EmbeddedSchemaRegistry)
    assert isinstance(build_registry(""), EmbeddedSchemaRegistry)
    assert isinstance(build_registry("http://127.0.0.1:1"), ConfluentSchemaRegistry)


class _FakeConfluent(BaseHTTPRequestHandler):
    """The two Schema Registry endpoints the client uses, ids numbered from 1."""

    schemas: list[str] = []
    content_types: list[str] = []

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
            return self._reply(404, {"error_code": 404, "message": "no such endpoint"})
        self.content_types.append(self.headers["Content-Type"])
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        schema = body["schema"]
        json.loads(schema)  # must be a JSON string
        if schema not in self.schemas:
            self.schemas.append(schema)
        self._reply(200, {"id": self.schemas.index(schema) + 1})

    def do_GET(self) -> None:  # noqa: N802
        prefix = "/schemas/ids/"
        if self.path.startswith(prefix):
            sid = int(self.path[len(prefix):])
            if 1 <= sid <= len(self.schemas):
                return self._reply(200, {"schema": self.schemas[sid - 1]})
        self._reply(404, {"error_code": 40403, "message": "Schema not found"})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def confluent_url() -> Iterator[str]:
    _FakeConfluent.schemas = []
    _FakeConfluent.content_types = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeConfluent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_confluent_registry_register_then_fetch(confluent_url: str) -> None:
    writer_side = ConfluentSchemaRegistry(confluent_url)
    codec = EnvelopeCodec(writer_side)
    assert codec.schema_id == 1
    assert _FakeConfluent.content_types == ["application/vnd.schemaregistry.v1+json"]
    assert EnvelopeCodec(writer_side).schema_id == 1  # cached, not registered again
    assert len(_FakeConfluent.content_types) == 1

    # a fresh client fetches the writer schema by id from the server
    reader_side = ConfluentSchemaRegistry(confluent_url)
    fetched = reader_side.get(1)
    assert fetched["name"] == "contactstream.v1.Envelope"
    with pytest.raises(KeyError):
        reader_side.get(99)

    new = EnvelopeCodec(reader_side, schema=evolved_schema(codec))
    assert new.schema_id == 2
    env = envelope("email.received")
    assert new.decode(codec.encode(env)) == {**env, "priority_hint": ""}
    assert codec.decode(new.encode(env)) == env
    writer_side.close()
    reader_side.close()


def schema_without_consent() -> dict[str, Any]:
    """The Envelope schema as it was before consent.changed: its payload branch removed."""
    from contactstream.adapters.avro import load_envelope_schema

    old = schema_json(load_envelope_schema())
    payload = next(f for f in old["fields"] if f["name"] == "payload")
    branches = payload["type"]
    assert isinstance(branches[-1], dict) and branches[-1]["name"].endswith("ConsentChanged")
    payload["type"] = branches[:-1]  # the new branch is the last one: older ones keep places
    return old


def test_records_written_before_consent_changed_existed_are_still_read() -> None:
    registry = EmbeddedSchemaRegistry()
    old_writer = EnvelopeCodec(registry, schema=schema_without_consent())
    new = EnvelopeCodec(registry)
    assert old_writer.schema_id != new.schema_id
    for type_ in sorted(set(PAYLOADS) - {"consent.changed"}):
        env = envelope(type_)
        assert new.decode(old_writer.encode(env)) == env, type_
    with pytest.raises(ValueError):
        old_writer.encode(envelope("consent.changed"))


def test_consent_changed_keeps_granted_a_boolean(codec: EnvelopeCodec) -> None:
    for granted in (True, False):
        env = envelope("consent.changed")
        env["payload"]["granted"] = granted
        decoded = codec.decode(codec.encode(env))
        assert decoded["payload"]["granted"] is granted
        assert decoded["payload"] == env["payload"]
