"""Avro on Kafka: the envelope codec in the Confluent wire format (magic byte, 4-byte schema
id, schemaless Avro body) and the schema registries it resolves writer schemas from."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
import threading
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol, cast

import httpx
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import load_schema as _load_schema
from fastavro.schema import parse_schema as _parse_schema
from fastavro.schema import to_parsing_canonical_form
from psycopg.types.json import Jsonb

from ..streams.ports import DecodeError as DecodeError  # raised here, defined with the ports
from .database import Database
from .logging import get_logger

log = get_logger(__name__)

def parse_schema(schema: Any) -> dict[str, Any]:
    """fastavro's parse_schema, typed: our schemas are always records (dicts)."""
    return cast(dict[str, Any], _parse_schema(schema))


def load_schema(path: str) -> dict[str, Any]:
    return cast(dict[str, Any], _load_schema(path))


SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
NAMESPACE = "contactstream.v1"
ENVELOPE = f"{NAMESPACE}.Envelope"
DEFAULT_SUBJECT = "contactstream.interactions.v1-value"
_HEADER = struct.Struct(">bI")
_HEADER_SIZE = _HEADER.size

# event type -> payload record (the branch of the envelope's payload union)
PAYLOAD_RECORDS: dict[str, str] = {
    t: f"{NAMESPACE}.{r}" for t, r in {
        "call.started": "CallStarted", "call.ended": "CallEnded",
        "email.received": "EmailReceived", "email.sent": "EmailSent",
        "chat.message": "ChatMessage", "web.visit": "WebVisit",
        "complaint.filed": "ComplaintFiled", "survey.answered": "SurveyAnswered",
        "purchase.completed": "PurchaseCompleted", "consent.changed": "ConsentChanged",
    }.items()
}


class SchemaRegistry(Protocol):
    def register(self, subject: str, schema: dict[str, Any]) -> int: ...

    def get(self, schema_id: int) -> dict[str, Any]:
        """The parsed schema with that id; KeyError when the registry does not know it."""
        ...


def schema_json(schema: dict[str, Any]) -> dict[str, Any]:
    """A parsed schema as plain Avro JSON (fastavro's bookkeeping keys removed); a copy."""
    plain = {k: v for k, v in parse_schema(schema).items() if not k.startswith("__")}
    return copy.deepcopy(plain)


def stable_id(schema: dict[str, Any]) -> int:
    """An id from the Parsing Canonical Form: the same on every machine and process.

    Defaults and docs are not part of it, which is right for writer schemas: a reader
    never uses the writer's defaults.
    """
    canonical = to_parsing_canonical_form(parse_schema(schema))
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:4], "big") & 0x7FFFFFFF


def load_envelope_schema() -> dict[str, Any]:
    return load_schema(str(SCHEMA_DIR / f"{ENVELOPE}.avsc"))


class EmbeddedSchemaRegistry:
    """In-process registry holding every schema in schemas/, with stable ids.

    With ``db`` every schema ever registered is kept in table ``avro_schemas`` too, and
    all of them are loaded at construction, so records written before a schema changed
    stay readable after an upgrade, on restore and on replay, in every process.
    """

    def __init__(self, schema_dir: Path = SCHEMA_DIR, db: Database | None = None) -> None:
        self._by_id: dict[int, dict[str, Any]] = {}
        self.subjects: dict[str, list[int]] = {}
        self.db = db
        self._stored: set[int] = set()  # ids known to be in avro_schemas: no insert again
        if db is not None:
            for sid, schema in db.all("SELECT id, schema FROM avro_schemas"):
                # under the id records carry, even if a later fastavro computed another
                parsed = parse_schema(schema)
                self._by_id.setdefault(int(sid), parsed)
                self._stored.add(int(sid))
        for path in sorted(schema_dir.glob("*.avsc")):
            try:
                self._add(load_schema(str(path)))
            except Exception as exc:  # noqa: BLE001 - one broken file must not hide the rest
                log.warning("avro.schema_unloadable", file=path.name, error=str(exc))

    def _add(self, schema: dict[str, Any]) -> int:
        parsed = parse_schema(schema)
        sid = stable_id(parsed)
        self._by_id.setdefault(sid, parsed)
        return sid

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        sid = self._add(schema)
        versions = self.subjects.setdefault(subject, [])
        if self.db is not None and sid not in versions:
            self._store(subject, sid, schema)
        if sid not in versions:
            versions.append(sid)
        return sid

    def _store(self, subject: str, sid: int, schema: dict[str, Any]) -> None:
        """The schema under its id (the first insert wins: many processes register the
        same schemas at start) and, if new to the subject, as its next version."""
        assert self.db is not None
        with self.db.tx() as conn:
            if sid not in self._stored:
                conn.execute("INSERT INTO avro_schemas (id, schema) VALUES (%s, %s)"
                             " ON CONFLICT (id) DO NOTHING", (sid, Jsonb(schema_json(schema))))
            # versions are numbered one subject at a time
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (subject,))
            conn.execute("INSERT INTO avro_subjects (subject, version, schema_id) SELECT %s,"
                         " COALESCE(MAX(version), 0) + 1, %s FROM avro_subjects WHERE"
                         " subject = %s ON CONFLICT DO NOTHING", (subject, sid, subject))
        self._stored.add(sid)

    def get(self, schema_id: int) -> dict[str, Any]:
        return self._by_id[schema_id]


class SchemaCatalog:
    """What the embedded registry holds, as the Schema Registry REST API shows it
    (adapters/http_registry.py): subjects, their versions, schemas by id."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def subjects(self) -> list[str]:
        return [s for (s,) in self.db.all(
            "SELECT DISTINCT subject FROM avro_subjects ORDER BY subject")]

    def versions(self, subject: str) -> list[int]:
        return [v for (v,) in self.db.all(
            "SELECT version FROM avro_subjects WHERE subject = %s ORDER BY version",
            (subject,))]

    def version(self, subject: str, version: int | None) -> tuple[int, int, str] | None:
        """(version, schema id, schema text) of ``version``, or of the latest (None)."""
        row = self.db.one(
            "SELECT s.version, s.schema_id, a.schema::text FROM avro_subjects s JOIN"
            " avro_schemas a ON a.id = s.schema_id WHERE s.subject = %s"
            " AND (%s::int IS NULL OR s.version = %s::int) ORDER BY s.version DESC LIMIT 1",
            (subject, version, version))
        return (int(row[0]), int(row[1]), _compact(row[2])) if row else None

    def schema(self, schema_id: int) -> str | None:
        text = self.db.scalar("SELECT schema::text FROM avro_schemas WHERE id = %s",
                              (schema_id,))
        return _compact(text) if text is not None else None

    def subjects_of(self, schema_id: int) -> list[tuple[str, int]]:
        return [(s, int(v)) for s, v in self.db.all(
            "SELECT subject, version FROM avro_subjects WHERE schema_id = %s"
            " ORDER BY subject", (schema_id,))]


def _compact(text: str) -> str:
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


class ConfluentSchemaRegistry:
    """Client of a Confluent Schema Registry (REST); answers are cached per process."""

    CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"Accept": self.CONTENT_TYPE})
        self._lock = threading.Lock()
        self._by_id: dict[int, dict[str, Any]] = {}
        self._registered: dict[tuple[str, str], int] = {}

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        text = json.dumps(schema_json(schema), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            if (subject, text) in self._registered:
                return self._registered[(subject, text)]
            resp = self._http.post(f"/subjects/{subject}/versions",
                                   content=json.dumps({"schema": text}).encode(),
                                   headers={"Content-Type": self.CONTENT_TYPE})
            resp.raise_for_status()
            sid = int(resp.json()["id"])
            self._registered[(subject, text)] = sid
            self._by_id.setdefault(sid, parse_schema(json.loads(text)))
            return sid

    def get(self, schema_id: int) -> dict[str, Any]:
        with self._lock:
            if schema_id in self._by_id:
                return self._by_id[schema_id]
            resp = self._http.get(f"/schemas/ids/{schema_id}")
            if resp.status_code == 404:
                raise KeyError(schema_id)
            resp.raise_for_status()
            parsed = parse_schema(json.loads(resp.json()["schema"]))
            self._by_id[schema_id] = parsed
            return parsed

    def close(self) -> None:
        self._http.close()


def build_registry(url: str | None, db: Database | None = None) -> SchemaRegistry:
    """The Confluent client when a registry URL is configured, else the embedded one
    (keeping every schema it registered in ``db``)."""
    return ConfluentSchemaRegistry(url) if url else EmbeddedSchemaRegistry(db=db)


class EnvelopeCodec:
    """Envelope dicts (the JSON shape of CONTRACT.md) to and from Confluent-framed Avro.

    ``schema`` (parsed or plain) is both the writer schema of ``encode`` and the reader
    schema of ``decode``; records written with any registered version are resolved to it.
    """

    def __init__(self, registry: SchemaRegistry, subject: str = DEFAULT_SUBJECT,
                 schema: dict[str, Any] | None = None) -> None:
        self.registry = registry
        self.subject = subject
        self.schema = parse_schema(schema if schema is not None else load_envelope_schema())
        self.schema_id = registry.register(subject, self.schema)
        self._header = _HEADER.pack(0, self.schema_id)
        self._canonical = to_parsing_canonical_form(self.schema)
        named = self.schema["__named_schemas"]
        self._payload_fields = {t: frozenset(f["name"] for f in named[r]["fields"])
                                for t, r in PAYLOAD_RECORDS.items() if r in named}
        # writer schema per id; None marks our own schema (no resolution needed)
        self._writers: dict[int, dict[str, Any] | None] = {self.schema_id: None}

    def encode(self, envelope: dict[str, Any]) -> bytes:
        etype = envelope["type"]
        fields = self._payload_fields.get(etype)
        if fields is None:
            raise ValueError(f"no payload record for event type {etype!r}")
        payload = envelope["payload"]
        known: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for k, v in payload.items():
            if k in fields:
                known[k] = v
            else:
                extra[k] = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        record = {**envelope, "payload": (PAYLOAD_RECORDS[etype], known), "extra": extra}
        out = BytesIO()
        out.write(self._header)
        schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise DecodeError("tombstone: a record without a value")
        if len(data) < _HEADER_SIZE or data[0] != 0:
            raise DecodeError("not Confluent wire format")
        schema_id = _HEADER.unpack_from(data)[1]
        try:
            writer = self._writers[schema_id]
        except KeyError:
            writer = self._writer(schema_id)
        body = BytesIO(data)
        body.seek(_HEADER_SIZE)
        try:
            if writer is None:
                record = schemaless_reader(body, self.schema, None)
            else:
                record = schemaless_reader(body, writer, self.schema)
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on bad bytes
            raise DecodeError(f"avro: {type(exc).__name__}: {exc}") from exc
        if body.tell() != len(data):
            raise DecodeError(f"trailing bytes: {len(data) - body.tell()} after the Avro body")
        return _to_json_shape(cast(dict[str, Any], record))

    def _writer(self, schema_id: int) -> dict[str, Any] | None:
        try:
            writer = self.registry.get(schema_id)
        except KeyError:
            raise DecodeError(f"unknown schema id {schema_id}") from None
        # the same schema under another id (or with other docs/defaults) needs no resolution
        same = to_parsing_canonical_form(writer) == self._canonical
        self._writers[schema_id] = None if same else writer
        return None if same else writer


def _to_json_shape(record: dict[str, Any]) -> dict[str, Any]:
    payload = {k: v for k, v in record["payload"].items() if v is not None}
    extra = record.pop("extra", None)
    if extra:
        for k, v in extra.items():
            payload[k] = json.loads(v)
    record["payload"] = payload
    record["customer"] = {k: v for k, v in record["customer"].items() if v is not None}
    # an envelope that was never encrypted comes back as it was sent
    if record.get("key_id", "") is None:
        del record["key_id"]
    if record.get("identity_hashes", None) == {}:
        del record["identity_hashes"]
    return record
