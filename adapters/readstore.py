"""The read store: projections the API serves, kept in SQLite (WAL).

The worker writes it (an erasure, adapters/erasure.py, is the one write from the API). Each
batch's projection rows, the raw records it consumed
(the local archive, see adapters/journal.py) and the next offsets commit in one
transaction, so a crash never leaves projections and offsets apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..projections.identifiers import normalize
from ..projections.timeline import TimelineState
from ..streams.identity import SCHEMA as IDENTITY_SCHEMA
from ..streams.identity import write as write_identity
from .sqlite import ThreadLocalStore, connect

if TYPE_CHECKING:
    from .privacy import Privacy

SCHEMA = """
CREATE TABLE IF NOT EXISTS timeline (
  event_id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  occurred_ms INTEGER NOT NULL,
  occurred_at TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  type TEXT NOT NULL,
  channel TEXT NOT NULL,
  source TEXT NOT NULL,
  agent_id TEXT, queue TEXT, case_id TEXT,
  payload TEXT NOT NULL,
  key_id TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS timeline_by_customer
  ON timeline (customer_id, occurred_ms DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS timeline_by_type ON timeline (type, occurred_ms);
CREATE TABLE IF NOT EXISTS identifiers (
  kind TEXT NOT NULL, value TEXT NOT NULL, customer_id TEXT NOT NULL,
  strong INTEGER NOT NULL DEFAULT 0,
  display TEXT,
  PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identifiers_by_customer ON identifiers (customer_id);
CREATE TABLE IF NOT EXISTS customers (
  customer_id TEXT PRIMARY KEY, name TEXT, name_ms INTEGER, name_event TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cases (
  case_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,
  priority TEXT NOT NULL, channel TEXT NOT NULL, queue TEXT, agent_id TEXT, policy TEXT,
  opened_at TEXT NOT NULL, opened_ms INTEGER NOT NULL,
  first_response_ms INTEGER, resolved_ms INTEGER,
  version INTEGER NOT NULL, updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cases_by_customer ON cases (customer_id, status);
CREATE INDEX IF NOT EXISTS cases_by_status ON cases (status, updated_ms);
CREATE TABLE IF NOT EXISTS offsets (
  consumer TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  PRIMARY KEY (consumer, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS archive (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
  key BLOB, value BLOB, headers TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,
  PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
"""

# what a replay rebuilds; identity_separations stay: they are people's decisions (unmerges)
PROJECTION_TABLES = ("timeline", "identifiers", "customers", "cases", "customer_links",
                     "identity_edges", "identity_bases")


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int

    def row(self) -> tuple[Any, ...]:
        hdrs = json.dumps([[k, v.decode("latin-1")] for k, v in self.headers])
        return (self.topic, self.partition, self.offset, self.key, self.value, hdrs,
                self.timestamp_ms)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def decode_headers(text: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1")) for k, v in json.loads(text)]


class ReadStoreWriter:
    """The worker's side: load identifiers, commit batches, remember offsets."""

    def __init__(self, path: Path, consumer: str = "projector") -> None:
        self.conn = connect(path)
        self.conn.executescript(SCHEMA)
        self.conn.executescript(IDENTITY_SCHEMA)
        self.consumer = consumer

    def close(self) -> None:
        self.conn.close()

    def offsets(self, topic: str) -> dict[int, int]:
        rows = self.conn.execute(
            "SELECT partition, next_offset FROM offsets WHERE consumer=? AND topic=?",
            (self.consumer, topic))
        return dict(rows.fetchall())

    def known_identifiers(self, idents: Iterable[tuple[str, str]],
                          ) -> dict[tuple[str, str], tuple[str, bool]]:
        by_kind: dict[str, list[str]] = {}
        for kind, value in idents:
            by_kind.setdefault(kind, []).append(value)
        found: dict[tuple[str, str], tuple[str, bool]] = {}
        for kind, values in by_kind.items():
            for i in range(0, len(values), 500):
                chunk = values[i:i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    f"SELECT value, customer_id, strong FROM identifiers"
                    f" WHERE kind=? AND value IN ({marks})", (kind, *chunk))
                for value, cid, strong in rows:
                    found[(kind, value)] = (cid, bool(strong))
        return found

    def commit(self, state: TimelineState | None, archive: Sequence[ArchivedRecord],
               offsets: dict[tuple[str, int], int],
               case_rows: Sequence[dict[str, Any]] = (), identity: Any = None) -> None:
        c = self.conn
        c.execute("BEGIN")
        try:
            if state is not None:
                self._write_projection(state)
            if identity is not None:
                write_identity(c, identity, state.displays if state is not None else {})
            if case_rows:
                self._write_cases(case_rows)
            if archive:
                c.executemany("INSERT OR IGNORE INTO archive VALUES (?,?,?,?,?,?,?)",
                              [r.row() for r in archive])
            c.executemany(
                "INSERT INTO offsets VALUES (?,?,?,?) ON CONFLICT (consumer, topic, partition)"
                " DO UPDATE SET next_offset=excluded.next_offset",
                [(self.consumer, t, p, o) for (t, p), o in offsets.items()])
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _write_projection(self, state: TimelineState) -> None:
        c = self.conn
        c.executemany(
            "INSERT INTO identifiers VALUES (?,?,?,?,?) ON CONFLICT (kind, value) DO UPDATE SET"
            " customer_id=excluded.customer_id, strong=1 WHERE excluded.strong=1 AND strong=0",
            [(k, v, cid, int(strong), state.displays.get((k, v)))
             for (k, v), (cid, strong) in state.new_identifiers.items()])
        c.executemany(
            "INSERT OR IGNORE INTO timeline VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(e.event_id, e.customer_id, e.occurred_ms, e.occurred_at, e.received_at, e.type,
              e.channel, e.source, e.agent_id, e.queue, e.case_id,
              json.dumps(e.payload, ensure_ascii=False, separators=(",", ":")), e.key_id)
             for e in state.entries])
        c.executemany(
            "INSERT INTO customers VALUES (?,?,?,?) ON CONFLICT (customer_id) DO UPDATE SET"
            " name=excluded.name, name_ms=excluded.name_ms, name_event=excluded.name_event"
            " WHERE (excluded.name_ms, excluded.name_event) > (name_ms, name_event)",
            [(cid, name, ms, ev) for cid, (ms, ev, name) in state.names.items()])

    def _write_cases(self, rows: Sequence[dict[str, Any]]) -> None:
        """The newest state of each case; an older event never overwrites a newer one."""
        self.conn.executemany(
            "INSERT INTO cases VALUES (:case_id, :customer_id, :status, :priority, :channel,"
            " :queue, :agent_id, :policy, :opened_at, :opened_ms, :first_response_ms,"
            " :resolved_ms, :version, :occurred_ms) ON CONFLICT (case_id) DO UPDATE SET"
            " status=excluded.status, priority=excluded.priority, queue=excluded.queue,"
            " agent_id=excluded.agent_id, first_response_ms=excluded.first_response_ms,"
            " resolved_ms=excluded.resolved_ms, version=excluded.version,"
            " updated_ms=excluded.updated_ms WHERE excluded.version > cases.version",
            [{**r, "opened_at": r["data"].get("opened_at", r["occurred_at"]),
              "opened_ms": int(r["data"].get("opened_ms", r["occurred_ms"])),
              "first_response_ms": _int_or_none(r["data"].get("first_response_ms")),
              "resolved_ms": _int_or_none(r["data"].get("resolved_ms"))} for r in rows])

    def reset_projections(self) -> None:
        """Forget every projection row and this consumer's offsets (for a replay)."""
        c = self.conn
        c.execute("BEGIN")
        for table in PROJECTION_TABLES:
            c.execute(f"DELETE FROM {table}")
        c.execute("DELETE FROM offsets WHERE consumer=?", (self.consumer,))
        c.execute("COMMIT")

    def archived(self) -> Iterable[ArchivedRecord]:
        rows = self.conn.execute("SELECT * FROM archive ORDER BY topic, partition, offset")
        for t, p, o, k, v, h, ts in rows:
            yield ArchivedRecord(t, p, o, k, v, decode_headers(h), ts)


class ReadStore(ThreadLocalStore):
    """The API's side: read-only queries, one connection per thread."""

    def __init__(self, path: Path, privacy: Privacy | None = None) -> None:
        self.path = path
        # opens the tokens of encrypted fields for the reader (adapters/privacy.py)
        self.privacy = privacy
        # the schema exists at once, so a fresh API can answer before the worker wrote
        super().__init__(path, SCHEMA, IDENTITY_SCHEMA)

    def resolve(self, customer_id: str) -> str | None:
        """The customer (survivor of merges) behind any id it was ever known by."""
        c = self.conn
        row = c.execute("SELECT survivor FROM customer_links WHERE base=?",
                        (customer_id,)).fetchone()
        if row:
            return str(row[0])
        if c.execute("SELECT 1 FROM customer_links WHERE survivor=? LIMIT 1",
                     (customer_id,)).fetchone():
            return customer_id
        row = c.execute("SELECT customer_id FROM identifiers WHERE kind='id' AND value=?",
                        (customer_id,)).fetchone()
        return row[0] if row else None

    def members(self, cid: str) -> list[str]:
        """The base customers merged into ``cid``: rows are keyed by these."""
        bases = [b for (b,) in self.conn.execute(
            "SELECT base FROM customer_links WHERE survivor=? ORDER BY base", (cid,))]
        return bases or [cid]

    def _in(self, cid: str) -> tuple[str, list[str]]:
        bases = self.members(cid)
        return f"({','.join('?' * len(bases))})", bases

    def lookup(self, kind: str, value: str) -> str | None:
        row = self.conn.execute(
            "SELECT customer_id FROM identifiers WHERE kind=? AND value=?", (kind, value)
        ).fetchone()
        return row[0] if row else None

    def customer(self, cid: str) -> dict[str, Any]:
        c = self.conn
        identifiers: dict[str, list[str]] = {}
        for kind, value, display in c.execute(
                "SELECT kind, value, display FROM identifiers WHERE customer_id=? AND"
                " kind!='id' ORDER BY kind, value", (cid,)):
            shown = self._open(display) if display is not None else value
            if shown is not None:
                identifiers.setdefault(kind, []).append(
                    normalize(kind, shown) if display is not None else shown)
        marks, bases = self._in(cid)
        counts = dict(c.execute(
            f"SELECT channel, COUNT(*) FROM timeline WHERE customer_id IN {marks} AND type NOT"
            " LIKE 'case.%' GROUP BY channel", bases).fetchall())
        last = c.execute(
            f"SELECT occurred_at FROM timeline WHERE customer_id IN {marks} AND type NOT LIKE"
            " 'case.%' ORDER BY occurred_ms DESC, event_id DESC LIMIT 1", bases).fetchone()
        name = c.execute(f"SELECT name FROM customers WHERE customer_id IN {marks}"
                         " ORDER BY name_ms DESC, name_event DESC LIMIT 1", bases).fetchone()
        ids = [v for (v,) in c.execute(
            "SELECT value FROM identifiers WHERE customer_id=? AND kind='id' ORDER BY value",
            (cid,))]
        return {
            "id": cid,
            "identifiers": {"id": ids, **identifiers},
            "name": self._open(name[0]) if name else None,
            "interaction_counts": counts,
            "interactions_total": sum(counts.values()),
            "last_contact_at": last[0] if last else None,
        }

    def timeline(self, cid: str, *, limit: int, before: tuple[int, str] | None,
                 channels: list[str], types: list[str], as_of_ms: int | None,
                 ) -> list[dict[str, Any]]:
        marks, bases = self._in(cid)
        sql = ["SELECT event_id, occurred_ms, occurred_at, received_at, type, channel, source,"
               f" agent_id, queue, case_id, payload FROM timeline WHERE customer_id IN {marks}"]
        args: list[Any] = list(bases)
        if before is not None:
            sql.append("AND (occurred_ms, event_id) < (?, ?)")
            args += [before[0], before[1]]
        if channels:
            sql.append(f"AND channel IN ({','.join('?' * len(channels))})")
            args += channels
        if types:
            sql.append(f"AND type IN ({','.join('?' * len(types))})")
            args += types
        if as_of_ms is not None:
            sql.append("AND received_at <= ?")
            args.append(as_of_ms)
        sql.append("ORDER BY occurred_ms DESC, event_id DESC LIMIT ?")
        args.append(limit)
        out = []
        for (eid, ms, at, recv, typ, ch, src, agent, queue, case, payload) in self.conn.execute(
                " ".join(sql), args):
            out.append({"event_id": eid, "occurred_ms": ms, "occurred_at": at,
                        "received_at": recv, "type": typ, "channel": ch, "source": src,
                        "agent_id": agent, "queue": queue, "case_id": case,
                        "payload": self._open_payload(json.loads(payload))})
        return out

    def _open(self, value: Any) -> Any:
        return self.privacy.open(value) if self.privacy is not None else value

    def _open_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.privacy.open_payload(payload) if self.privacy is not None else payload

    def open_cases(self, cid: str) -> list[dict[str, Any]]:
        marks, bases = self._in(cid)
        rows = self.conn.execute(
            "SELECT case_id, status, priority, channel, queue, agent_id, opened_at FROM cases"
            f" WHERE customer_id IN {marks} AND status!='resolved' ORDER BY opened_ms DESC",
            bases)
        return [{"id": c, "status": s, "priority": p, "channel": ch, "queue": q,
                 "agent_id": a, "opened_at": o} for c, s, p, ch, q, a, o in rows]

    def count_events(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM timeline").fetchone()[0])

    def has_event(self, event_id: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM timeline WHERE event_id=?", (event_id,)).fetchone() is not None
