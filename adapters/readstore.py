"""The read store: projections the API serves, in PostgreSQL.

The worker writes it (an erasure, adapters/erasure.py, is the one write from the API). Each
batch's projection rows, the raw records it consumed (the local archive, see
adapters/journal.py) and the next offsets commit in one transaction, so a crash never
leaves projections and offsets apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from ..projections.identifiers import normalize
from ..projections.timeline import TimelineState
from ..streams.ports import ArchivedRecord
from .database import Database

if TYPE_CHECKING:
    from .privacy import Privacy

# what a replay rebuilds; identity_separations stay: they are people's decisions (unmerges)
PROJECTION_TABLES = ("timeline", "identifiers", "customers", "cases", "customer_links",
                     "identity_edges", "identity_bases")


def _archive_row(r: ArchivedRecord) -> tuple[Any, ...]:
    hdrs = Jsonb([[k, v.decode("latin-1")] for k, v in r.headers])
    return (r.topic, r.partition, r.offset, r.key, r.value, hdrs, r.timestamp_ms)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def decode_headers(headers: list[list[str]]) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1")) for k, v in headers]


ARCHIVE_INSERT = ('INSERT INTO broker_archive (topic, partition, "offset", key, value, headers,'
                  " timestamp_ms) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING")


def archive(conn: psycopg.Connection[Any], records: Sequence[ArchivedRecord]) -> None:
    """Keep records of the embedded broker (inside the caller's transaction)."""
    if records:
        conn.cursor().executemany(ARCHIVE_INSERT, [_archive_row(r) for r in records])


def archived(db: Database) -> Iterable[ArchivedRecord]:
    """Every archived record, in (topic, partition, offset) order."""
    with db.tx() as conn, conn.cursor(name="archive_scan") as cur:
        cur.execute('SELECT topic, partition, "offset", key, value, headers, timestamp_ms'
                    ' FROM broker_archive ORDER BY topic, partition, "offset"')
        for t, p, o, k, v, h, ts in cur:
            yield ArchivedRecord(t, p, o, k, v, decode_headers(h), ts)


def _payload_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def write_identity(conn: psycopg.Connection[Any], batch: Any,
                   displays: dict[tuple[str, str], str]) -> None:
    """What the identity stage (streams/identity.py) learnt from a batch, inside the
    batch's transaction."""
    cur = conn.cursor()
    cur.executemany(
        "INSERT INTO identity_edges VALUES (%s,%s,%s) ON CONFLICT (edge) DO UPDATE SET"
        " claim_ms=excluded.claim_ms, claim_event=excluded.claim_event"
        " WHERE (excluded.claim_ms, excluded.claim_event)"
        " < (identity_edges.claim_ms, identity_edges.claim_event)",
        [(e, ms, ev) for e, (ms, ev) in batch.edges.items()])
    cur.executemany("INSERT INTO identity_bases VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                    [(b, k, v) for b, (k, v) in batch.new_bases.items()])
    cur.executemany("INSERT INTO identity_separations VALUES (%s,%s,%s,%s)"
                    " ON CONFLICT DO NOTHING",
                    [(a[0], a[1], b[0], b[1]) for a, b in batch.separations])
    cur.executemany(
        "INSERT INTO customer_links VALUES (%s,%s) ON CONFLICT (base) DO UPDATE SET"
        " survivor=excluded.survivor", list(batch.links.items()))
    cur.executemany(
        "INSERT INTO identifiers (kind, value, customer_id, strong, display) VALUES"
        " (%s,%s,%s,TRUE,%s) ON CONFLICT (kind, value) DO UPDATE SET"
        " customer_id=excluded.customer_id,"
        " display=COALESCE(identifiers.display, excluded.display)",
        [(k, v, cid, displays.get((k, v))) for (k, v), cid in batch.identifiers.items()])


class ReadStoreWriter:
    """The worker's side: load identifiers, commit batches, remember offsets."""

    def __init__(self, db: Database, consumer: str = "projector") -> None:
        self.db = db
        self.consumer = consumer

    def close(self) -> None:
        """The database belongs to the composition root, which closes it."""

    def offsets(self, topic: str) -> dict[int, int]:
        rows = self.db.all(
            "SELECT partition, next_offset FROM offsets WHERE consumer=%s AND topic=%s",
            (self.consumer, topic))
        return {int(p): int(o) for p, o in rows}

    def known_identifiers(self, idents: Iterable[tuple[str, str]],
                          ) -> dict[tuple[str, str], tuple[str, bool]]:
        by_kind: dict[str, list[str]] = {}
        for kind, value in idents:
            by_kind.setdefault(kind, []).append(value)
        found: dict[tuple[str, str], tuple[str, bool]] = {}
        with self.db.tx() as conn:
            for kind, values in by_kind.items():
                rows = conn.execute(
                    "SELECT value, customer_id, strong FROM identifiers"
                    " WHERE kind=%s AND value = ANY(%s)", (kind, values))
                for value, cid, strong in rows:
                    found[(kind, value)] = (cid, bool(strong))
        return found

    def identity_rows(self) -> tuple[list[tuple[str, int, str]],
                                     list[tuple[str, str, str, str]],
                                     list[tuple[str, str, str]]]:
        """The identity graph's persistent parts: edges, separations, bases."""
        with self.db.tx() as conn:
            edges = conn.execute("SELECT edge, claim_ms, claim_event FROM identity_edges"
                                 ).fetchall()
            seps = conn.execute("SELECT a_kind, a_value, b_kind, b_value"
                                " FROM identity_separations").fetchall()
            bases = conn.execute("SELECT base, kind, value FROM identity_bases").fetchall()
        return edges, seps, bases  # type: ignore[return-value]

    def commit(self, state: TimelineState | None, archived: Sequence[ArchivedRecord],
               offsets: dict[tuple[str, int], int],
               case_rows: Sequence[dict[str, Any]] = (), identity: Any = None) -> None:
        with self.db.tx() as conn:
            if state is not None:
                self._write_projection(conn, state)
            if identity is not None:
                write_identity(conn, identity, state.displays if state is not None else {})
            if case_rows:
                self._write_cases(conn, case_rows)
            archive(conn, archived)
            conn.cursor().executemany(
                "INSERT INTO offsets VALUES (%s,%s,%s,%s) ON CONFLICT (consumer, topic,"
                " partition) DO UPDATE SET next_offset=excluded.next_offset",
                [(self.consumer, t, p, o) for (t, p), o in offsets.items()])

    def _write_projection(self, conn: psycopg.Connection[Any], state: TimelineState) -> None:
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO identifiers VALUES (%s,%s,%s,%s,%s) ON CONFLICT (kind, value)"
            " DO UPDATE SET customer_id=excluded.customer_id, strong=TRUE"
            " WHERE excluded.strong AND NOT identifiers.strong",
            [(k, v, cid, bool(strong), state.displays.get((k, v)))
             for (k, v), (cid, strong) in state.new_identifiers.items()])
        cur.executemany(
            "INSERT INTO timeline VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb,%s)"
            " ON CONFLICT DO NOTHING",
            [(e.event_id, e.customer_id, e.occurred_ms, e.occurred_at, e.received_at, e.type,
              e.channel, e.source, e.agent_id, e.queue, e.case_id, _payload_json(e.payload),
              e.key_id) for e in state.entries])
        cur.executemany(
            "INSERT INTO customers VALUES (%s,%s,%s,%s) ON CONFLICT (customer_id) DO UPDATE"
            " SET name=excluded.name, name_ms=excluded.name_ms, name_event=excluded.name_event"
            " WHERE (excluded.name_ms, excluded.name_event)"
            " > (customers.name_ms, customers.name_event)",
            [(cid, name, ms, ev) for cid, (ms, ev, name) in state.names.items()])

    def _write_cases(self, conn: psycopg.Connection[Any],
                     rows: Sequence[dict[str, Any]]) -> None:
        """The newest state of each case; an older event never overwrites a newer one."""
        conn.cursor().executemany(
            "INSERT INTO cases VALUES (%(case_id)s, %(customer_id)s, %(status)s, %(priority)s,"
            " %(channel)s, %(queue)s, %(agent_id)s, %(policy)s, %(opened_at)s, %(opened_ms)s,"
            " %(first_response_ms)s, %(resolved_ms)s, %(version)s, %(occurred_ms)s)"
            " ON CONFLICT (case_id) DO UPDATE SET"
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
        with self.db.tx() as conn:
            conn.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}")
            conn.execute("DELETE FROM offsets WHERE consumer=%s", (self.consumer,))

    def archived(self) -> Iterable[ArchivedRecord]:
        return archived(self.db)


class ReadStore:
    """The API's side: read-only queries."""

    def __init__(self, db: Database, privacy: Privacy | None = None) -> None:
        self.db = db
        # opens the tokens of encrypted fields for the reader (adapters/privacy.py)
        self.privacy = privacy

    def resolve(self, customer_id: str) -> str | None:
        """The customer (survivor of merges) behind any id it was ever known by."""
        with self.db.tx() as c:
            row = c.execute("SELECT survivor FROM customer_links WHERE base=%s",
                            (customer_id,)).fetchone()
            if row:
                return str(row[0])
            if c.execute("SELECT 1 FROM customer_links WHERE survivor=%s LIMIT 1",
                         (customer_id,)).fetchone():
                return customer_id
            row = c.execute("SELECT customer_id FROM identifiers WHERE kind='id' AND value=%s",
                            (customer_id,)).fetchone()
            return row[0] if row else None

    def members(self, cid: str) -> list[str]:
        """The base customers merged into ``cid``: rows are keyed by these."""
        bases = [b for (b,) in self.db.all(
            "SELECT base FROM customer_links WHERE survivor=%s ORDER BY base", (cid,))]
        return bases or [cid]

    def lookup(self, kind: str, value: str) -> str | None:
        return self.db.scalar("SELECT customer_id FROM identifiers WHERE kind=%s AND value=%s",
                              (kind, value))

    def customer(self, cid: str) -> dict[str, Any]:
        bases = self.members(cid)
        with self.db.tx() as c:
            identifiers: dict[str, list[str]] = {}
            for kind, value, display in c.execute(
                    "SELECT kind, value, display FROM identifiers WHERE customer_id=%s AND"
                    " kind<>'id' ORDER BY kind, value", (cid,)):
                shown = self._open(display) if display is not None else value
                if shown is not None:
                    identifiers.setdefault(kind, []).append(
                        normalize(kind, shown) if display is not None else shown)
            counts = {ch: int(n) for ch, n in c.execute(
                "SELECT channel, COUNT(*) FROM timeline WHERE customer_id = ANY(%s) AND type"
                " NOT LIKE 'case.%%' GROUP BY channel ORDER BY channel", (bases,))}
            last = c.execute(
                "SELECT occurred_at FROM timeline WHERE customer_id = ANY(%s) AND type NOT LIKE"
                " 'case.%%' ORDER BY occurred_ms DESC, event_id DESC LIMIT 1",
                (bases,)).fetchone()
            name = c.execute("SELECT name FROM customers WHERE customer_id = ANY(%s)"
                             " ORDER BY name_ms DESC, name_event DESC LIMIT 1",
                             (bases,)).fetchone()
            ids = [v for (v,) in c.execute(
                "SELECT value FROM identifiers WHERE customer_id=%s AND kind='id'"
                " ORDER BY value", (cid,))]
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
        bases = self.members(cid)
        sql = ["SELECT event_id, occurred_ms, occurred_at, received_at, type, channel, source,"
               " agent_id, queue, case_id, payload FROM timeline WHERE customer_id = ANY(%s)"]
        args: list[Any] = [bases]
        if before is not None:
            sql.append("AND (occurred_ms, event_id) < (%s, %s)")
            args += [before[0], before[1]]
        if channels:
            sql.append("AND channel = ANY(%s)")
            args.append(channels)
        if types:
            sql.append("AND type = ANY(%s)")
            args.append(types)
        if as_of_ms is not None:
            sql.append("AND received_at <= %s")
            args.append(as_of_ms)
        sql.append("ORDER BY occurred_ms DESC, event_id DESC LIMIT %s")
        args.append(limit)
        out = []
        for (eid, ms, at, recv, typ, ch, src, agent, queue, case, payload) in self.db.all(
                " ".join(sql), args):
            out.append({"event_id": eid, "occurred_ms": ms, "occurred_at": at,
                        "received_at": recv, "type": typ, "channel": ch, "source": src,
                        "agent_id": agent, "queue": queue, "case_id": case,
                        "payload": self._open_payload(payload)})
        return out

    def _open(self, value: Any) -> Any:
        return self.privacy.open(value) if self.privacy is not None else value

    def _open_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.privacy.open_payload(payload) if self.privacy is not None else payload

    def open_cases(self, cid: str) -> list[dict[str, Any]]:
        rows = self.db.all(
            "SELECT case_id, status, priority, channel, queue, agent_id, opened_at FROM cases"
            " WHERE customer_id = ANY(%s) AND status<>'resolved'"
            " ORDER BY opened_ms DESC, case_id", (self.members(cid),))
        return [{"id": c, "status": s, "priority": p, "channel": ch, "queue": q,
                 "agent_id": a, "opened_at": o} for c, s, p, ch, q, a, o in rows]

    def count_events(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM timeline"))

    def has_event(self, event_id: str) -> bool:
        return self.db.one("SELECT 1 FROM timeline WHERE event_id=%s", (event_id,)) is not None
