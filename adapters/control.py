"""The control store (PostgreSQL): what supervisors configure (SLA policies, calendars,
webhooks), the case index, complaint history for escalations, the alert log, admins'
unmerge and erasure requests, and the positions and archive of the outbox relays.

Both the API and the worker use it; every write is a short transaction, or joins the
thread's ``batch()``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..domain.calendars import BusinessCalendar
from ..domain.sla import SlaPolicy
from ..streams.ports import ArchivedRecord, NewAlert
from .archive import archive, archived
from .crypto import SECRET_TOKEN, SecretBox
from .database import (
    EVENT_ID,
    EVENT_IN,
    EVENT_IS,
    Database,
    insert_many,
    split_event_id,
    split_event_ids,
)
from .notify import notify

# pg_advisory_xact_lock key that orders the alert log's appends ("alrt")
ALERT_ORDER_LOCK = 0x616C7274

ALERT_COLUMNS = ("seq", "id", "kind", "case_id", "customer_id", "metric", "due_at", "at",
                 "level", "detail")


class _Session:
    """One database shared by the parts below, and the thread's batch transaction."""

    def __init__(self, db: Database, secrets: SecretBox | None = None) -> None:
        self.db = db
        # seals webhook secrets under the master key; the composition root always gives
        # one (only tests of other parts go without)
        self.secrets = secrets
        self._local = threading.local()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for every write of this thread inside the block."""
        with self.db.tx() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """The thread's batch transaction, else a transaction of its own."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.db.tx() as own:
            yield own

    def _write(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        with self._tx() as conn:
            return conn.execute(sql, args or None)  # type: ignore[arg-type]

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._tx() as conn:
            return conn.execute(sql, args or None).fetchall()  # type: ignore[arg-type]



class CalendarInUse(Exception):
    def __init__(self, calendar: str, policy: str) -> None:
        super().__init__(f"calendar {calendar!r} is used by policy {policy!r}")
        self.calendar, self.policy = calendar, policy


class SupervisorSettings(_Session):
    """What supervisors configure: SLA policies (in matching order), calendars, webhooks
    and the failures of their deliveries."""

    def put_policy(self, policy: SlaPolicy) -> None:
        """Insert or replace; a replaced policy keeps its place in the matching order."""
        with self._tx() as conn:
            conn.execute("LOCK TABLE sla_policies IN SHARE ROW EXCLUSIVE MODE")
            conn.execute(
                "INSERT INTO sla_policies VALUES (%s, (SELECT COALESCE(MAX(position), 0) + 1"
                " FROM sla_policies), %s) ON CONFLICT (name) DO UPDATE SET body=excluded.body",
                (policy.name, Jsonb(policy.to_dict())))

    def policies(self) -> list[SlaPolicy]:
        out = []
        for name, data in self._all("SELECT name, body FROM sla_policies ORDER BY position"):
            data.pop("name", None)
            out.append(SlaPolicy.from_json(name, data))
        return out

    def delete_policy(self, name: str) -> bool:
        """Remove a policy (cases opened under it keep their snapshot); False if unknown."""
        return self._write("DELETE FROM sla_policies WHERE name=%s", (name,)).rowcount > 0

    def put_calendar(self, calendar: BusinessCalendar, name: str) -> None:
        self._write("INSERT INTO calendars VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET"
                    " body=excluded.body", (name, Jsonb(calendar.to_dict())))

    def calendars(self) -> dict[str, BusinessCalendar]:
        return {name: BusinessCalendar.from_json(name, body)
                for name, body in self._all("SELECT name, body FROM calendars")}

    def delete_calendar(self, name: str) -> bool:
        """Remove a calendar no policy names (cases keep their snapshot); False if unknown.
        Raises CalendarInUse naming a policy that uses it."""
        with self._tx() as conn:
            conn.execute("LOCK TABLE sla_policies IN SHARE ROW EXCLUSIVE MODE")
            user = conn.execute("SELECT name FROM sla_policies WHERE body->>'calendar' = %s"
                                " ORDER BY position LIMIT 1", (name,)).fetchone()
            if user is not None:
                raise CalendarInUse(name, user[0])
            return conn.execute("DELETE FROM calendars WHERE name=%s", (name,)).rowcount > 0

    def delete_webhook(self, name: str) -> bool:
        """Remove a webhook with its failures and its delivery position; False if unknown."""
        with self._tx() as conn:
            conn.execute("DELETE FROM webhook_failures WHERE webhook=%s", (name,))
            conn.execute("DELETE FROM positions WHERE name=%s", (f"webhook:{name}",))
            return conn.execute("DELETE FROM webhooks WHERE name=%s", (name,)).rowcount > 0

    def put_webhook(self, name: str, body: dict[str, Any]) -> None:
        if self.secrets is not None and isinstance(body.get("secret"), str):
            body = {**body, "secret": self.secrets.seal(name, body["secret"])}
        with self._tx() as conn:
            conn.execute("INSERT INTO webhooks VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET"
                         " body=excluded.body", (name, Jsonb(body)))
            # a new webhook starts with the alerts raised from now on
            conn.execute("INSERT INTO positions VALUES (%s, (SELECT COALESCE(MAX(seq), 0)"
                         " FROM alerts)) ON CONFLICT DO NOTHING", (f"webhook:{name}",))

    def webhooks(self) -> dict[str, dict[str, Any]]:
        """Every webhook with its secret opened."""
        hooks = dict(self._all("SELECT name, body FROM webhooks ORDER BY name"))
        if self.secrets is not None:
            for name, body in hooks.items():
                if isinstance(body.get("secret"), str):
                    body["secret"] = self.secrets.open(name, body["secret"])
        return hooks

    def seal_webhook_secrets(self) -> int:
        """Seal the secrets stored in the clear by a release before sealing; how many."""
        if self.secrets is None:
            return 0
        sealed = 0
        with self._tx() as conn:
            for name, body in conn.execute("SELECT name, body FROM webhooks FOR UPDATE"
                                           ).fetchall():
                secret = body.get("secret")
                if isinstance(secret, str) and not secret.startswith(SECRET_TOKEN):
                    body["secret"] = self.secrets.seal(name, secret)
                    conn.execute("UPDATE webhooks SET body=%s WHERE name=%s",
                                 (Jsonb(body), name))
                    sealed += 1
        return sealed

    def record_webhook_failure(self, name: str, seq: int, error: str, at: str) -> None:
        self._write("INSERT INTO webhook_failures VALUES (%s,%s,%s,%s) ON CONFLICT"
                    " (webhook, alert_seq) DO UPDATE SET error=excluded.error, at=excluded.at",
                    (name, seq, error, at))

    def webhook_failures(self) -> dict[str, int]:
        return {n: int(c) for n, c in self._all(
            "SELECT webhook, COUNT(*) FROM webhook_failures GROUP BY webhook")}



@dataclass
class _CaseMemo:
    """What a batch of the case stage knows of the case index and the routes: read once
    for the batch (``CaseMemory.preload``), changed in memory, written at its end."""
    routes: dict[str, str | None] = field(default_factory=dict)  # handled: event -> case
    unrouted: set[str] = field(default_factory=set)  # known not handled yet
    index: dict[tuple[str, str], str | None] = field(default_factory=dict)
    new_routes: dict[str, str | None] = field(default_factory=dict)
    new_index: dict[tuple[str, str], str] = field(default_factory=dict)


class CaseMemory(_Session):
    """What the case stage remembers between batches: each customer's open case per
    channel, the case each interaction went to, complaint history, erasures.

    Inside ``batch()``, the routes and the index are kept in memory after ``preload``
    read them for the whole batch, and written together when the batch ends (in its
    transaction): two queries and two statements a batch instead of four a message."""

    @contextmanager
    def batch(self) -> Iterator[None]:
        with super().batch():
            self._local.memo = memo = _CaseMemo()
            try:
                yield
                self._write_memo(memo)
            finally:
                self._local.memo = None

    def _memo(self) -> _CaseMemo | None:
        return getattr(self._local, "memo", None)

    def preload(self, event_ids: Sequence[str], pairs: Iterable[tuple[str, str]]) -> None:
        """Inside ``batch()``: read the routes of these interactions and the open cases of
        these (customer, channel)s, each in one query."""
        memo = self._memo()
        if memo is None:
            return
        wanted = [e for e in event_ids if e not in memo.routes]
        memo.routes.update(self._all(f"SELECT {EVENT_ID}, case_id FROM case_route_rows"
                                     f" WHERE {EVENT_IN}", split_event_ids(wanted)))
        memo.unrouted.update(e for e in wanted if e not in memo.routes)
        pairs = {p for p in pairs if p not in memo.index}
        customers = sorted({c for c, _ in pairs})
        found = {(c, ch): case for c, ch, case in self._all(
            "SELECT customer_id, channel, case_id FROM case_index"
            " WHERE customer_id = ANY(%s)", (customers,))}
        memo.index.update({p: found.get(p) for p in pairs})

    def _write_memo(self, memo: _CaseMemo) -> None:
        with self._tx() as conn:
            cur = conn.cursor()
            insert_many(cur, "INSERT INTO case_route_rows (eid, etext, case_id)",
                        "text text text",
                        [(*split_event_id(e), c) for e, c in memo.new_routes.items()],
                        "AS u(e, et, c) ON CONFLICT DO NOTHING", select="e::uuid, et, c")
            insert_many(cur, "INSERT INTO case_index", "text text text",
                        sorted((c, ch, case) for (c, ch), case in memo.new_index.items()),
                        "ON CONFLICT (customer_id, channel) DO UPDATE SET"
                        " case_id=excluded.case_id")

    def open_case_for(self, customer_id: str, channel: str) -> str | None:
        memo = self._memo()
        if memo is not None and (customer_id, channel) in memo.index:
            return memo.index[(customer_id, channel)]
        rows = self._all("SELECT case_id FROM case_index WHERE customer_id=%s AND"
                         " channel=%s", (customer_id, channel))
        return rows[0][0] if rows else None

    def index_case(self, customer_id: str, channel: str, case_id: str) -> None:
        memo = self._memo()
        if memo is not None:
            memo.index[(customer_id, channel)] = case_id
            memo.new_index[(customer_id, channel)] = case_id
            return
        self._write("INSERT INTO case_index VALUES (%s,%s,%s) ON CONFLICT (customer_id,"
                    " channel) DO UPDATE SET case_id=excluded.case_id",
                    (customer_id, channel, case_id))

    def case_route(self, event_id: str) -> tuple[bool, str | None]:
        """Whether the case stage already handled this interaction, and the case it went to
        (None: no case, e.g. an agent's message outside any case)."""
        memo = self._memo()
        if memo is not None:
            if event_id in memo.routes:
                return True, memo.routes[event_id]
            if event_id in memo.unrouted:
                return False, None
        rows = self._all(f"SELECT case_id FROM case_route_rows WHERE {EVENT_IS}",
                         (event_id, event_id))
        return (False, None) if not rows else (True, rows[0][0])

    def record_case_route(self, event_id: str, case_id: str | None) -> None:
        memo = self._memo()
        if memo is not None:
            if event_id not in memo.routes:  # the first decision stands, as in the table
                memo.routes[event_id] = memo.new_routes[event_id] = case_id
                memo.unrouted.discard(event_id)
            return
        self._write("INSERT INTO case_route_rows (eid, etext, case_id) VALUES"
                    " (%s::uuid, %s, %s) ON CONFLICT DO NOTHING",
                    (*split_event_id(event_id), case_id))

    def record_complaint(self, event_id: str, customer_id: str, occurred_ms: int,
                         case_id: str | None = None) -> None:
        self._write("INSERT INTO complaints (event_id, customer_id, occurred_ms, case_id)"
                    " VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                    (event_id, customer_id, occurred_ms, case_id))

    def record_complaints(self, rows: Sequence[tuple[str, str, int, str | None]]) -> None:
        """(event_id, customer_id, occurred_ms, case_id)s in one statement."""
        if rows:
            with self._tx() as conn:
                insert_many(conn.cursor(), "INSERT INTO complaints (event_id, customer_id,"
                            " occurred_ms, case_id)", "text text int8 text", sorted(rows),
                            "ON CONFLICT DO NOTHING")

    def complaints_known(self, event_ids: Sequence[str]) -> set[str]:
        """The ids among these recorded as complaints already (of any customer)."""
        if not event_ids:
            return set()
        return {r[0] for r in self._all("SELECT event_id FROM complaints"
                                        " WHERE event_id = ANY(%s)", (list(event_ids),))}

    def complaints_around(self, spans: Mapping[str, tuple[int, int]],
                          ) -> dict[str, list[tuple[int, str, str | None]]]:
        """customer -> (occurred_ms, event_id, case_id) of its complaints in (start, end],
        in time order, for many customers' spans in one query (every customer asked is in
        the result)."""
        out: dict[str, list[tuple[int, str, str | None]]] = {c: [] for c in spans}
        if spans:
            rows = sorted((c, lo, hi) for c, (lo, hi) in spans.items())
            with self._tx() as conn:
                # planned for each call (not prepared): a join planned while the table was
                # small would scan it on and on as it grows
                found = conn.execute(
                    "SELECT c.customer_id, c.occurred_ms, c.event_id, c.case_id FROM"
                    " unnest(%b::text[], %b::int8[], %b::int8[]) AS u(cid, lo, hi)"
                    " JOIN complaints c ON c.customer_id = u.cid AND c.occurred_ms > u.lo"
                    " AND c.occurred_ms <= u.hi ORDER BY 1, 2, 3",
                    [list(c) for c in zip(*rows, strict=True)], prepare=False).fetchall()
            for cid, ms, ev, case in found:
                out[cid].append((int(ms), ev, case))
        return out

    def complaints_between(self, customer_id: str, start_ms: int, end_ms: int,
                           ) -> list[tuple[int, str, str | None]]:
        """(occurred_ms, event_id, case_id) of the customer's complaints in (start, end]."""
        return [(int(ms), ev, case) for ms, ev, case in self._all(
            "SELECT occurred_ms, event_id, case_id FROM complaints WHERE customer_id=%s AND"
            " occurred_ms > %s AND occurred_ms <= %s ORDER BY occurred_ms, event_id",
            (customer_id, start_ms, end_ms))]

    def erasures(self) -> dict[str, list[tuple[int, str]]]:
        """Base customer -> (when, pseudonym) of its erasures: case events and alerts of
        cases opened before go to the pseudonym, live and on replay."""
        out: dict[str, list[tuple[int, str]]] = {}
        for cid, at_ms, pseudonym in self._all(
                "SELECT customer_id, at_ms, pseudonym FROM erasures ORDER BY customer_id, at_ms"):
            out.setdefault(cid, []).append((int(at_ms), pseudonym))
        return out


class AlertLogStore(_Session):
    """The alert log: each alert once by its id, numbered in commit order."""

    def add_alert(self, alert: NewAlert) -> int | None:
        """Append to the alert log; None when an alert with this id exists (each once)."""
        return self.add_alerts([alert])[0]

    def add_alerts(self, alerts: Sequence[NewAlert]) -> list[int | None]:
        """Append several in one transaction, in their order; each one's seq, or None
        where an alert with its id exists (or came earlier in ``alerts``)."""
        out: list[int | None] = [None] * len(alerts)
        first: dict[str, int] = {}
        for i, a in enumerate(alerts):
            first.setdefault(a.id, i)
        if not first:
            return out
        with self._tx() as conn:
            # readers follow the log by seq (relay, webhooks, SSE): a seq must never
            # become visible after a higher one, so adders take turns until they commit
            # (the case stage's batch holds the turn for its transaction)
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ALERT_ORDER_LOCK,))
            # NOT EXISTS first: an insert that ON CONFLICT ignores still takes a seq, so
            # re-deriving known alerts (a restart, a replay) would leave gaps
            chosen = [alerts[i] for i in first.values()]
            rows = conn.execute(
                "INSERT INTO alerts (id, kind, case_id, customer_id, metric, due_at, at,"
                " level, detail) SELECT id, kind, case_id, customer_id, metric, due_at, at,"
                " level, detail::jsonb FROM unnest(%b::text[], %b::text[], %b::text[],"
                " %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
                " WITH ORDINALITY AS u(id, kind, case_id, customer_id, metric, due_at, at,"
                " level, detail, n) WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id=u.id)"
                " ORDER BY n ON CONFLICT (id) DO NOTHING RETURNING id, seq",
                [[a.id for a in chosen], [a.kind for a in chosen],
                 [a.case_id for a in chosen], [a.customer_id for a in chosen],
                 [a.metric for a in chosen], [a.due_at for a in chosen],
                 [a.at for a in chosen], [a.level for a in chosen],
                 [json.dumps(a.detail or {}) for a in chosen]]).fetchall()
            seqs = dict(rows)
            for alert_id, i in first.items():
                out[i] = seqs.get(alert_id)
            if rows:  # the alert streams of every API replica wake at the commit
                notify(conn)
        return out

    def alert_ids(self, prefix: str) -> set[str]:
        return {r[0] for r in self._all("SELECT id FROM alerts WHERE starts_with(id, %s)",
                                        (prefix,))}

    def alerts(self, *, after: int = 0, before: int | None = None, kinds: Iterable[str] = (),
               limit: int = 100, newest_first: bool = False) -> list[dict[str, Any]]:
        sql = [f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE seq > %s"]
        args: list[Any] = [after]
        if before is not None:
            sql.append("AND seq < %s")
            args.append(before)
        kinds = list(kinds)
        if kinds:
            sql.append("AND kind = ANY(%s)")
            args.append(kinds)
        sql.append(f"ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT %s")
        args.append(limit)
        return [dict(zip(ALERT_COLUMNS, row, strict=True))
                for row in self._all(" ".join(sql), args)]

    def last_alert_seq(self) -> int:
        return int(self._all("SELECT COALESCE(MAX(seq), 0) FROM alerts")[0][0])

    def breached_case_ids(self) -> set[str]:
        return {r[0] for r in self._all(
            "SELECT DISTINCT case_id FROM alerts WHERE kind='sla.breached'")}



class AdminRequests(_Session):
    """Unmerges and erasures an admin asked for in the API, carried out by the worker
    between two batches."""

    def request_unmerge(self, survivor: str, member: str, by: str, reason: str, at: str) -> int:
        row = self._write("INSERT INTO unmerge_requests (survivor, member, requested_by,"
                          " reason, at) VALUES (%s,%s,%s,%s,%s) RETURNING seq",
                          (survivor, member, by, reason, at)).fetchone()
        assert row is not None  # RETURNING always gives the row
        return int(row[0])

    def pending_unmerges(self) -> list[dict[str, Any]]:
        cols = ("seq", "survivor", "member", "by", "reason")
        rows = self._all("SELECT seq, survivor, member, requested_by, reason FROM"
                         " unmerge_requests WHERE done_at IS NULL ORDER BY seq")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def finish_unmerge(self, seq: int, error: str) -> None:
        self._write("UPDATE unmerge_requests SET done_at=now(), error=%s WHERE seq=%s",
                    (error or None, seq))

    def unmerge_request(self, seq: int) -> dict[str, Any] | None:
        rows = self._all("SELECT seq, survivor, member, done_at, error FROM unmerge_requests"
                         " WHERE seq=%s", (seq,))
        if not rows:
            return None
        out = dict(zip(("seq", "survivor", "member", "done_at", "error"), rows[0],
                       strict=True))
        out["done_at"] = out["done_at"].isoformat() if out["done_at"] else None
        return out

    def request_erasure(self, cid: str, payload: dict[str, Any], by: str, at: str) -> int:
        row = self._write("INSERT INTO erasure_requests (customer_id, requested_by, at,"
                          " payload) VALUES (%s,%s,%s,%s) RETURNING seq",
                          (cid, by, at, Jsonb(payload))).fetchone()
        assert row is not None  # RETURNING always gives the row
        return int(row[0])

    def pending_erasures(self) -> list[dict[str, Any]]:
        cols = ("seq", "customer_id", "payload")
        rows = self._all("SELECT seq, customer_id, payload FROM erasure_requests"
                         " WHERE done_at IS NULL ORDER BY seq")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def finish_erasure(self, seq: int, result: dict[str, Any]) -> None:
        self._write("UPDATE erasure_requests SET done_at=now(), result=%s WHERE seq=%s",
                    (Jsonb(result), seq))

    def erasure_request(self, seq: int) -> dict[str, Any] | None:
        rows = self._all("SELECT seq, customer_id, done_at, error, result FROM"
                         " erasure_requests WHERE seq=%s", (seq,))
        if not rows:
            return None
        return dict(zip(("seq", "customer_id", "done_at", "error", "result"), rows[0],
                        strict=True))



class RelayPositions(_Session):
    """How far each outbox relay and webhook delivery has come, and (embedded broker) the
    records the relays published."""

    def position(self, name: str) -> int:
        rows = self._all("SELECT position FROM positions WHERE name=%s", (name,))
        return int(rows[0][0]) if rows else 0

    def advance(self, name: str, position: int, records: Sequence[ArchivedRecord] = ()) -> None:
        with self.db.tx() as conn:
            conn.execute("INSERT INTO positions VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
                         " SET position=excluded.position", (name, position))
            archive(conn, records)

    def archived(self) -> Iterable[ArchivedRecord]:
        return archived(self.db)


class ControlStore(SupervisorSettings, CaseMemory, AlertLogStore, AdminRequests,
                   RelayPositions):
    """Every part over one database session, as a process opens it; each consumer sees
    only its part's interface (streams/ports.py)."""
