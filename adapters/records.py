"""Avro codec for flat records (case events, alerts) in the Confluent wire format."""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer

from .avro import SCHEMA_DIR, DecodeError, SchemaRegistry, load_schema, parse_schema

_HEADER = struct.Struct(">bI")


class RecordCodec:
    def __init__(self, registry: SchemaRegistry, name: str, subject: str) -> None:
        self.registry = registry
        self.schema = parse_schema(load_schema(str(SCHEMA_DIR / f"contactstream.v1.{name}.avsc")))
        self.schema_id = registry.register(subject, self.schema)
        self._header = _HEADER.pack(0, self.schema_id)
        self._writers: dict[int, Any] = {self.schema_id: None}

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = BytesIO()
        buf.write(self._header)
        schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise DecodeError("tombstone: a record without a value")
        if len(data) < 5 or data[0] != 0:
            raise DecodeError("not Confluent wire format")
        sid = _HEADER.unpack_from(data)[1]
        if sid not in self._writers:
            try:
                self._writers[sid] = self.registry.get(sid)
            except KeyError as exc:
                raise DecodeError(f"unknown schema id {sid}") from exc
        writer = self._writers[sid]
        body = BytesIO(data)
        body.seek(5)
        try:
            record = schemaless_reader(body, writer or self.schema,  # type: ignore
                                       self.schema if writer else None)
        except Exception as exc:  # noqa: BLE001
            raise DecodeError(f"avro: {exc}") from exc
        if body.tell() != len(data):
            raise DecodeError(f"trailing bytes: {len(data) - body.tell()} after the Avro body")
        return cast(dict[str, Any], record)
