"""The control store (SQLite, ``control.sqlite``): what supervisors configure (SLA
policies, calendars, webhooks), the case index, complaint history for escalations, the
alert log, and the positions and archive of the outbox relays.

Both the API and the worker open it; every write is a short transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain.calendars import BusinessCalendar
from ..domain.sla import SlaPolicy
from .readstore import ArchivedRecord, decode_headers
from .sqlite import ThreadLocalStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS sla_policies (
  name TEXT PRIMARY KEY, position INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calendars (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS case_index (
  customer_id TEXT NOT NULL, channel TEXT NOT NULL, case_id TEXT NOT NULL,
  PRIMARY KEY (customer_id, channel)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS complaints (
  event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, occurred_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS complaints_by_customer ON complaints (customer_id, occurred_ms);
CREATE TABLE IF NOT EXISTS alerts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
  case_id TEXT, customer_id TEXT, metric TEXT, due_at TEXT, at TEXT NOT NULL,
  level TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS unmerge_requests (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, survivor TEXT NOT NULL, member TEXT NOT NULL,
  by TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL, done_at TEXT, error TEXT,
  kind TEXT NOT NULL DEFAULT 'unmerge', payload TEXT, result TEXT);
CREATE TABLE IF NOT EXISTS erasures (
  customer_id TEXT NOT NULL, at_ms INTEGER NOT NULL, pseudonym TEXT NOT NULL,
  PRIMARY KEY (customer_id, at_ms)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_failures (
  webhook TEXT NOT NULL, alert_seq INTEGER NOT NULL, error TEXT NOT NULL, at TEXT NOT NULL,
  PRIMARY KEY (webhook, alert_seq));
CREATE TABLE IF NOT EXISTS archive (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
  key BLOB, value BLOB, headers TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,
  PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
"""

ALERT_COLUMNS = ("seq", "id", "kind", "case_id", "customer_id", "metric", "due_at", "at",
                 "level", "detail")


@dataclass(frozen=True)
class NewAlert:
    id: str
    kind: str
    at: str
    level: str
    case_id: str | None = None
    customer_id: str | None = None
    metric: str | None = None
    due_at: str | None = None
    detail: dict[str, str] | None = None


class ControlStore(ThreadLocalStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for every write of this thread inside the block."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        self._local.batch = True
        try:
            yield
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        finally:
            self._local.batch = False

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        c = self.conn
        if getattr(self._local, "batch", False):
            return c.execute(sql, args)
        c.execute("BEGIN IMMEDIATE")
        try:
            cur = c.execute(sql, args)
            c.execute("COMMIT")
            return cur
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # -- policies and calendars ----------------------------------------------------------
    def put_policy(self, policy: SlaPolicy) -> None:
        """Insert or replace; a replaced policy keeps its place in the matching order."""
        self._write(
            "INSERT INTO sla_policies VALUES (?, (SELECT COALESCE(MAX(position), 0) + 1 FROM"
            " sla_policies), ?) ON CONFLICT (name) DO UPDATE SET body=excluded.body",
            (policy.name, json.dumps(policy.to_dict())))

    def policies(self) -> list[SlaPolicy]:
        rows = self.conn.execute("SELECT name, body FROM sla_policies ORDER BY position")
        out = []
        for name, body in rows:
            data = json.loads(body)
            data.pop("name", None)
            out.append(SlaPolicy.from_json(name, data))
        return out

    def put_calendar(self, calendar: BusinessCalendar, name: str) -> None:
        self._write("INSERT INTO calendars VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " body=excluded.body", (name, json.dumps(calendar.to_dict())))

    def calendars(self) -> dict[str, BusinessCalendar]:
        return {name: BusinessCalendar.from_json(name, json.loads(body))
                for name, body in self.conn.execute("SELECT name, body FROM calendars")}

    # -- webhooks --------------------------------------------------------------------------
    def put_webhook(self, name: str, body: dict[str, Any]) -> None:
        self._write("INSERT INTO webhooks VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " body=excluded.body", (name, json.dumps(body)))
        # a new webhook starts with the alerts raised from now on
        self._write("INSERT OR IGNORE INTO positions VALUES (?, (SELECT COALESCE(MAX(seq), 0)"
                    " FROM alerts))", (f"webhook:{name}",))

    def webhooks(self) -> dict[str, dict[str, Any]]:
        return {n: json.loads(b) for n, b in self.conn.execute("SELECT name, body FROM webhooks")}

    def record_webhook_failure(self, name: str, seq: int, error: str, at: str) -> None:
        self._write("INSERT OR REPLACE INTO webhook_failures VALUES (?,?,?,?)",
                    (name, seq, error, at))

    # -- cases --------------------------------------------------------------------------------
    def open_case_for(self, customer_id: str, channel: str) -> str | None:
        row = self.conn.execute("SELECT case_id FROM case_index WHERE customer_id=? AND"
                                " channel=?", (customer_id, channel)).fetchone()
        return row[0] if row else None

    def index_case(self, customer_id: str, channel: str, case_id: str) -> None:
        self._write("INSERT INTO case_index VALUES (?,?,?) ON CONFLICT (customer_id, channel)"
                    " DO UPDATE SET case_id=excluded.case_id", (customer_id, channel, case_id))

    def record_complaint(self, event_id: str, customer_id: str, occurred_ms: int) -> None:
        self._write("INSERT OR IGNORE INTO complaints VALUES (?,?,?)",
                    (event_id, customer_id, occurred_ms))

    def complaints_between(self, customer_id: str, start_ms: int, end_ms: int,
                           ) -> list[tuple[int, str]]:
        """(occurred_ms, event_id) of the customer's complaints in (start, end]."""
        return self.conn.execute(
            "SELECT occurred_ms, event_id FROM complaints WHERE customer_id=? AND"
            " occurred_ms > ? AND occurred_ms <= ? ORDER BY occurred_ms, event_id",
            (customer_id, start_ms, end_ms)).fetchall()

    # -- alerts --------------------------------------------------------------------------------
    def add_alert(self, alert: NewAlert) -> int | None:
        """Append to the alert log; None when an alert with this id exists (each once)."""
        cur = self._write(
            "INSERT OR IGNORE INTO alerts (id, kind, case_id, customer_id, metric, due_at, at,"
            " level, detail) VALUES (?,?,?,?,?,?,?,?,?)",
            (alert.id, alert.kind, alert.case_id, alert.customer_id, alert.metric,
             alert.due_at, alert.at, alert.level, json.dumps(alert.detail or {})))
        return cur.lastrowid if cur.rowcount else None

    def alert_ids(self, prefix: str) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT id FROM alerts WHERE id >= ? AND id < ?", (prefix, prefix + "\uffff"))}

    def alerts(self, *, after: int = 0, before: int | None = None, kinds: Iterable[str] = (),
               limit: int = 100, newest_first: bool = False) -> list[dict[str, Any]]:
        sql = [f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE seq > ?"]
        args: list[Any] = [after]
        if before is not None:
            sql.append("AND seq < ?")
            args.append(before)
        kinds = list(kinds)
        if kinds:
            sql.append(f"AND kind IN ({','.join('?' * len(kinds))})")
            args += kinds
        sql.append(f"ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT ?")
        args.append(limit)
        out = []
        for row in self.conn.execute(" ".join(sql), args):
            item = dict(zip(ALERT_COLUMNS, row, strict=True))
            item["detail"] = json.loads(item["detail"])
            out.append(item)
        return out

    def last_alert_seq(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM alerts").fetchone()[0])

    def breached_case_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT case_id FROM alerts WHERE kind='sla.breached'")}

    # -- unmerges: asked for by an admin in the API, carried out by the worker --------------
    def request_unmerge(self, survivor: str, member: str, by: str, reason: str, at: str) -> int:
        cur = self._write("INSERT INTO unmerge_requests (survivor, member, by, reason, at)"
                          " VALUES (?,?,?,?,?)", (survivor, member, by, reason, at))
        return int(cur.lastrowid or 0)

    def request_erasure(self, cid: str, payload: dict[str, Any], by: str, at: str) -> int:
        cur = self._write("INSERT INTO unmerge_requests (survivor, member, by, reason, at,"
                          " kind, payload) VALUES (?, '', ?, 'erasure', ?, 'erase', ?)",
                          (cid, by, at, json.dumps(payload)))
        return int(cur.lastrowid or 0)

    def pending_unmerges(self) -> list[dict[str, Any]]:
        """Identity requests the worker carries out: unmerges and erasures, in order."""
        cols = ("seq", "survivor", "member", "by", "reason", "kind", "payload")
        rows = self.conn.execute(f"SELECT {', '.join(cols)} FROM unmerge_requests"
                                 " WHERE done_at IS NULL ORDER BY seq")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def finish_unmerge(self, seq: int, error: str, result: dict[str, Any] | None = None,
                       ) -> None:
        self._write("UPDATE unmerge_requests SET done_at=datetime('now'), error=?, result=?"
                    " WHERE seq=?", (error or None, json.dumps(result) if result else None, seq))

    def unmerge_request(self, seq: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT seq, survivor, member, done_at, error, result FROM"
                                " unmerge_requests WHERE seq=?", (seq,)).fetchone()
        if row is None:
            return None
        out = dict(zip(("seq", "survivor", "member", "done_at", "error", "result"), row,
                       strict=True))
        out["result"] = json.loads(out["result"]) if out["result"] else None
        return out

    # -- erasures: case events of an erased customer go to the pseudonym on replay --------
    def erasures(self) -> dict[str, list[tuple[int, str]]]:
        out: dict[str, list[tuple[int, str]]] = {}
        for cid, at_ms, pseudonym in self.conn.execute("SELECT * FROM erasures"):
            out.setdefault(cid, []).append((at_ms, pseudonym))
        return out

    # -- relay positions and the archive of what they published ------------------------------
    def position(self, name: str) -> int:
        row = self.conn.execute("SELECT position FROM positions WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def advance(self, name: str, position: int, archive: Sequence[ArchivedRecord] = ()) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("INSERT INTO positions VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET"
                      " position=excluded.position", (name, position))
            if archive:
                c.executemany("INSERT OR IGNORE INTO archive VALUES (?,?,?,?,?,?,?)",
                              [r.row() for r in archive])
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def archived(self) -> Iterable[ArchivedRecord]:
        for t, p, o, k, v, h, ts in self.conn.execute(
                "SELECT * FROM archive ORDER BY topic, partition, offset"):
            yield ArchivedRecord(t, p, o, k, v, decode_headers(h), ts)
