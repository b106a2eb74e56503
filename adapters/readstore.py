"""The read store: projections the API serves, in PostgreSQL.

The worker writes it (an erasure, adapters/erasure.py, is the one write from the API). Each
batch's projection rows, the raw records it consumed (the local archive, see
adapters/journal.py) and the next offsets commit in one transaction, so a crash never
leaves projections and offsets apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from ..projections import figures, scores
from ..projections.identifiers import normalize
from ..projections.timeline import TimelineEntry, TimelineState
from ..projections.value import CustomerValueFacts
from ..streams.ports import ArchivedRecord
from .database import Database
from .logging import get_logger

if TYPE_CHECKING:
    from .privacy import Privacy

log = get_logger(__name__)

# the customer's figures (migration 4), kept in the batch's transaction (FigureWriter)
FIGURE_TABLES = ("customer_channels", "customer_activity", "customer_surveys",
                 "customer_satisfaction", "customer_revenue", "customer_consent",
                 "case_owners", "survey_days", "customer_scores", "base_figures")
# what a replay rebuilds; identity_separations stay: they are people's decisions (unmerges)
PROJECTION_TABLES = ("timeline", "identifiers", "customers", "cases", "customer_links",
                     "identity_edges", "identity_bases", *FIGURE_TABLES)


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


# units of the base currency per unit; fixed rates for totals (CONTACTSTREAM_FX_RATES)
DEFAULT_RATES = {"EUR": "1", "USD": "0.92", "GBP": "1.16", "HUF": "0.0025", "CHF": "1.05",
                 "CNY": "0.13", "IRR": "0.000022", "PLN": "0.23", "CZK": "0.04"}


def parse_rates(text: str, base: str) -> dict[str, Decimal]:
    """``"HUF=0.0025,USD=0.92"`` -> rates; the defaults apply when base is EUR."""
    rates = {k: Decimal(v) for k, v in DEFAULT_RATES.items()} if base == "EUR" else {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        cur, _, rate = part.partition("=")
        rates[cur.strip().upper()] = Decimal(rate.strip())
    rates[base] = Decimal(1)
    return rates


def _system_ms() -> int:
    return int(time.time() * 1000)


FIGURES_LOCK = 0x66696773  # "figs": pg_advisory_xact_lock key of a refresh or a rebuild
SCORE_CHUNK = 2000  # customers scored per round of queries
REFRESH_CHUNK = 5000  # score rows a refresh transaction rewrites at most


class FigureWriter:
    """The customer's figures in the read store (migration 4): the aggregates of new
    timeline rows and the scores of the customers they touch, inside the caller's
    transaction; the periodic refresh of what the clock moves; a rebuild from the timeline.
    The arithmetic is in projections/figures.py and scores.py."""

    def __init__(self, base_currency: str = "EUR", rates: Mapping[str, Decimal] | None = None,
                 clock: Callable[[], int] = _system_ms) -> None:
        self.base = base_currency
        self.rates = dict(rates or parse_rates("", base_currency))
        self.clock = clock

    # -- the batch -------------------------------------------------------------------------
    def write(self, conn: psycopg.Connection[Any], entries: Sequence[TimelineEntry],
              touched: Iterable[str] = (), relinked: Iterable[str] = ()) -> None:
        """New timeline rows (only those: the caller's insert said which) into the
        aggregates, then the scores of every customer they or ``touched`` bases belong to,
        and of the customers ``relinked`` (the former survivors of re-linked bases)."""
        touched, relinked = set(touched), set(relinked)
        if not (entries or touched or relinked):
            return
        delta = self.add(conn, entries)
        survivors = set(_survivors(conn, delta.bases | touched).values())
        self.rescore(conn, survivors | relinked, self.clock())

    def add(self, conn: psycopg.Connection[Any], entries: Iterable[TimelineEntry],
            ) -> figures.Delta:
        d = figures.fold(entries)
        old = _owners(conn, set(d.owners))
        owners = {**old, **{c: o.merged(old.get(c)) for c, o in d.owners.items()}}
        changed = sorted(c for c in d.owners if owners[c] != old.get(c))
        moved = figures.regroup(_surveys_needing_owner(conn, changed), owners)
        more = {s.case_id for s in d.surveys if s.needs_owner()} - set(owners)
        owners.update(_owners(conn, {c for c in more if c}))
        added = [(s, figures.effective(s, owners.get(s.case_id or ""))) for s in d.surveys]
        cur = conn.cursor()
        _write_sums(cur, d)
        _unnest(cur, "INSERT INTO customer_surveys",
                "text text int8 text int4 text text text text text text",
                sorted((s.base, s.event_id, s.occurred_ms, s.kind, s.score, s.channel,
                        s.agent_id, s.queue, s.case_id, *eff) for s, eff in added),
                "ON CONFLICT DO NOTHING")
        cur.executemany("UPDATE customer_surveys SET eff_agent=%s, eff_queue=%s"
                        " WHERE base=%s AND event_id=%s",
                        [(*new, s.base, s.event_id) for s, _, new in moved])
        cur.executemany(
            "INSERT INTO case_owners VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (case_id) DO"
            " UPDATE SET agent_id=excluded.agent_id, agent_ms=excluded.agent_ms,"
            " agent_event=excluded.agent_event, queue=excluded.queue,"
            " queue_ms=excluded.queue_ms, queue_event=excluded.queue_event",
            [(c, *_triple(owners[c].agent), *_triple(owners[c].queue)) for c in changed])
        _write_buckets(cur, figures.bucket_changes(added, moved))
        return d

    # -- scores ----------------------------------------------------------------------------
    def rescore(self, conn: psycopg.Connection[Any], customers: Iterable[str], as_of: int,
                guard: Mapping[str, str] | None = None) -> int:
        """Recompute the scores of these customers (survivors) as of ``as_of``; a customer
        without interactions left loses its row. With ``guard`` (customer -> xmin read
        before the facts), a row a batch changed meanwhile is left to that batch."""
        bounds = _bounds(conn)
        done = 0
        ordered = sorted(set(customers))  # rows locked in one order: no deadlock
        for i in range(0, len(ordered), SCORE_CHUNK):
            chunk = ordered[i:i + SCORE_CHUNK]
            facts = _facts(conn, _members(conn, chunk))
            rows, gone = [], []
            for c in chunk:
                if c in facts:
                    s = scores.scores(facts[c], as_of, bounds, self.base, self.rates)
                    rows.append(_score_row(c, s))
                else:
                    gone.append(c)
            done += _write_scores(conn, rows, gone, guard)
        return done

    def refresh(self, db: Database, now: int | None = None, limit: int = REFRESH_CHUNK,
                ) -> dict[str, int]:
        """The periodic job: scores whose ``valid_until`` has passed or whose cases were
        breached since the last run, then every buyer's RFM against new quintile bounds.
        In short transactions (a batch waits for the score rows one holds); one worker at
        a time (advisory lock); a row a batch rewrote meanwhile is left as the batch has
        it (``xmin``)."""
        at = self.clock() if now is None else now
        out = {"stale": 0, "breached": 0, "rfm": 0}
        while True:  # in rounds of ``limit``, each its own transaction
            with db.tx() as conn:
                if not _locked(conn):
                    break
                due = conn.execute(
                    "SELECT customer_id, xmin::text FROM customer_scores WHERE valid_until"
                    " <= %s ORDER BY valid_until LIMIT %s", (at, limit)).fetchall()
                out["stale"] += self.rescore(conn, [c for c, _ in due], at, dict(due))
            if len(due) < limit:
                break
        with db.tx() as conn:
            if _locked(conn):
                out["breached"] = self._breaches(conn, at)
        with db.tx() as conn:
            changed = self.rfm_changes(conn, at) if _locked(conn) else []
        for i in range(0, len(changed), limit):
            with db.tx() as conn:
                _write_rfm(conn, changed[i:i + limit])
        out["rfm"] = len(changed)
        return out

    def _breaches(self, conn: psycopg.Connection[Any], at: int) -> int:
        row = conn.execute("SELECT body FROM base_figures WHERE name='alerts'").fetchone()
        seen = int(row[0]["seq"]) if row else 0
        # a margin: an alert numbered earlier can commit after a later one
        found = conn.execute(
            "SELECT a.seq, c.customer_id FROM alerts a JOIN cases c ON c.case_id = a.case_id"
            " WHERE a.kind = 'sla.breached' AND a.seq > %s", (max(0, seen - 100),)).fetchall()
        last = max([seen, *(int(s) for s, _ in found)])
        customers = set(_survivors(conn, {b for _, b in found}).values())
        guard = dict(conn.execute("SELECT customer_id, xmin::text FROM customer_scores WHERE"
                                  " customer_id = ANY(%s)", (sorted(customers),)).fetchall())
        n = self.rescore(conn, [c for c in customers if c in guard], at, guard)
        conn.execute("INSERT INTO base_figures VALUES ('alerts', %s, %s) ON CONFLICT (name)"
                     " DO UPDATE SET as_of=excluded.as_of, body=excluded.body",
                     (at, Jsonb({"seq": last})))
        return n

    def refresh_rfm(self, conn: psycopg.Connection[Any], at: int) -> int:
        changed = self.rfm_changes(conn, at)
        _write_rfm(conn, changed)
        return len(changed)

    def rfm_changes(self, conn: psycopg.Connection[Any], at: int) -> list[tuple[Any, ...]]:
        """Every buyer's RFM as of ``at``: the bounds the batches score against are stored,
        the rows whose RFM differs are returned (as ``_write_rfm`` takes them)."""
        rows = conn.execute(
            "SELECT customer_id, xmin::text, last_purchase_ms, purchases, revenue, segment,"
            " recency_days, r, f, m FROM customer_scores WHERE purchases > 0").fetchall()
        facts = {c: CustomerValueFacts(last, int(n), Decimal(rev))
                 for c, _, last, n, rev, *_ in rows}
        scored, bounds = scores.base_rfm(facts, at)
        changed = []
        for c, xmin, _, _, _, seg, days, r, f, m in rows:
            x = scored[c]
            if (x.segment, x.recency_days, x.r, x.f, x.m) != (seg, days, r, f, m):
                changed.append((x.segment, x.recency_days, x.r, x.f, x.m, at, c, xmin))
        conn.execute("INSERT INTO base_figures VALUES ('rfm', %s, %s) ON CONFLICT (name) DO"
                     " UPDATE SET as_of=excluded.as_of, body=excluded.body",
                     (at, Jsonb({"bounds": bounds.json(), "buyers": len(rows)})))
        return sorted(changed, key=lambda row: row[6])

    # -- from the timeline -----------------------------------------------------------------
    def rebuild_if_pending(self, db: Database) -> bool:
        """Build every figure from the timeline when migration 4 (or a reset) asked for it:
        a database upgraded with its timeline, or one an import filled."""
        with db.tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (FIGURES_LOCK,))
            if conn.execute("SELECT 1 FROM base_figures WHERE name='rebuild'").fetchone() is None:
                return False
            self.rebuild(conn)
        return True

    def rebuild(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("LOCK TABLE timeline IN SHARE MODE")  # batches wait until it is done
        for table in FIGURE_TABLES:
            conn.execute(f"DELETE FROM {table}")  # type: ignore[call-overload]
        with conn.cursor(name="figures_rebuild") as cur:
            cur.execute(f"SELECT {TIMELINE_COLUMNS} FROM timeline")  # type: ignore[call-overload]
            while rows := cur.fetchmany(5000):
                self.add(conn, [timeline_entry(r) for r in rows])
        bases = [b for (b,) in conn.execute("SELECT DISTINCT base FROM customer_activity")]
        at = self.clock()
        self.rescore(conn, set(_survivors(conn, set(bases)).values()), at)
        self._breaches(conn, at)
        self.refresh_rfm(conn, at)
        log.info("figures.rebuilt", bases=len(bases))

    # -- erasure ---------------------------------------------------------------------------
    def move(self, conn: psycopg.Connection[Any], rows: Sequence[TimelineEntry],
             to: Mapping[str, str], bases: Sequence[str], customers: Iterable[str]) -> None:
        """An erasure moved these timeline rows of ``bases`` to pseudonyms (``to``: event id
        -> pseudonym): the aggregates follow, report buckets and case owners stay as they
        are, and the customers named lose or get their scores."""
        for table in ("customer_channels", "customer_activity", "customer_satisfaction",
                      "customer_revenue", "customer_consent"):
            conn.execute(f"DELETE FROM {table} WHERE base = ANY(%s)",  # type: ignore[call-overload]
                         (list(bases),))
        d = figures.fold(replace(e, customer_id=to[e.event_id]) for e in rows)
        cur = conn.cursor()
        _write_sums(cur, d)
        cur.executemany("UPDATE customer_surveys SET base=%s WHERE base=%s AND event_id=%s",
                        [(to[e.event_id], e.customer_id, e.event_id) for e in rows
                         if e.type == "survey.answered"])
        self.rescore(conn, {*customers, *to.values()}, self.clock())


TIMELINE_COLUMNS = ("event_id, customer_id, occurred_ms, occurred_at, received_at, type,"
                    " channel, source, agent_id, queue, case_id, payload, key_id")


def timeline_entry(row: Sequence[Any]) -> TimelineEntry:
    eid, cid, ms, at, recv, typ, ch, src, agent, queue, case, payload, key = row
    return TimelineEntry(customer_id=cid, event_id=eid, type=typ, channel=ch, occurred_at=at,
                         occurred_ms=ms, received_at=recv, source=src, agent_id=agent,
                         queue=queue, case_id=case, payload=payload, key_id=key)


def _write_rfm(conn: psycopg.Connection[Any], changed: Sequence[tuple[Any, ...]]) -> None:
    conn.cursor().executemany(
        "UPDATE customer_scores SET segment=%s, recency_days=%s, r=%s, f=%s, m=%s,"
        " rfm_as_of=%s WHERE customer_id=%s AND xmin=%s::xid", changed)


def _locked(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (FIGURES_LOCK,)).fetchone()
    return bool(row and row[0])


def _triple(x: tuple[int, str, str] | None) -> tuple[Any, Any, Any]:
    return (x[2], x[0], x[1]) if x else (None, None, None)


def _owners(conn: psycopg.Connection[Any], cases: set[str]) -> dict[str, figures.Owner]:
    if not cases:
        return {}
    out = {}
    for c, agent, a_ms, a_ev, queue, q_ms, q_ev in conn.execute(
            "SELECT * FROM case_owners WHERE case_id = ANY(%s)", (sorted(cases),)):
        out[c] = figures.Owner((a_ms, a_ev, agent) if agent else None,
                               (q_ms, q_ev, queue) if queue else None)
    return out


def _surveys_needing_owner(conn: psycopg.Connection[Any], cases: list[str],
                           ) -> list[tuple[figures.Survey, figures.Effective]]:
    if not cases:
        return []
    return [(figures.Survey(*r[:9]), (r[9], r[10])) for r in conn.execute(
        "SELECT base, event_id, occurred_ms, kind, score, channel, agent_id, queue, case_id,"
        " eff_agent, eff_queue FROM customer_surveys WHERE case_id = ANY(%s)"
        " AND (agent_id IS NULL OR queue IS NULL)", (cases,))]


def _unnest(cur: psycopg.Cursor[Any], insert: str, types: str, rows: Sequence[Sequence[Any]],
            tail: str = "") -> None:
    """``insert`` (``INSERT INTO t (columns)``) of many rows as one statement over arrays;
    rows go in the order given (the callers sort them: row locks in one order)."""
    if rows:
        arrays = ", ".join(f"%b::{t}[]" for t in types.split())  # binary: no escaping
        cur.execute(f"{insert} SELECT * FROM unnest({arrays}) {tail}",  # type: ignore[call-overload]
                    [list(c) for c in zip(*rows, strict=True)])


def _write_sums(cur: psycopg.Cursor[Any], d: figures.Delta) -> None:
    """The per-base sums and latest-wins rows of a delta (added to what is stored)."""
    newer = "(excluded.last_ms, excluded.last_event) > (t.last_ms, t.last_event)"
    _unnest(cur, "INSERT INTO customer_channels AS t", "text text int8 int8 text text",
            [(b, ch, c.interactions, *c.last) for (b, ch), c in sorted(d.channels.items())],
            "ON CONFLICT (base, channel) DO UPDATE SET"
            " interactions = t.interactions + excluded.interactions,"
            f" last_ms = CASE WHEN {newer} THEN excluded.last_ms ELSE t.last_ms END,"
            f" last_event = CASE WHEN {newer} THEN excluded.last_event ELSE t.last_event END,"
            f" last_at = CASE WHEN {newer} THEN excluded.last_at ELSE t.last_at END")
    _unnest(cur, "INSERT INTO customer_satisfaction AS t", "text text int8 int8 int8 int8",
            [(b, k, t.responses, t.good, t.bad, t.total)
             for (b, k), t in sorted(d.satisfaction.items())],
            "ON CONFLICT (base, kind) DO UPDATE SET responses = t.responses"
            " + excluded.responses, good = t.good + excluded.good, bad = t.bad + excluded.bad,"
            " total = t.total + excluded.total")
    _unnest(cur, "INSERT INTO customer_revenue AS t", "text text numeric int8 int8",
            [(b, c, m.amount, m.purchases, m.last_ms) for (b, c), m in sorted(d.revenue.items())],
            "ON CONFLICT (base, currency) DO UPDATE SET amount = t.amount + excluded.amount,"
            " purchases = t.purchases + excluded.purchases,"
            " last_ms = GREATEST(t.last_ms, excluded.last_ms)")
    _unnest(cur, "INSERT INTO customer_consent AS t", "text text text bool int8 text text text",
            [(b, ch, p, c.granted, c.occurred_ms, c.event_id, c.occurred_at, c.source)
             for (b, ch, p), c in sorted(d.consent.items())],
            "ON CONFLICT (base, channel, purpose) DO UPDATE SET granted = excluded.granted,"
            " occurred_ms = excluded.occurred_ms, event_id = excluded.event_id,"
            " occurred_at = excluded.occurred_at, source = excluded.source"
            " WHERE (excluded.occurred_ms, excluded.event_id) > (t.occurred_ms, t.event_id)")
    _unnest(cur, "INSERT INTO customer_activity", "text int8 text text", sorted(d.activity),
            "ON CONFLICT DO NOTHING")


def _write_buckets(cur: psycopg.Cursor[Any], changes: dict[figures.BucketKey, figures.Tally],
                   ) -> None:
    keys = sorted(changes)
    _unnest(cur, "INSERT INTO survey_days AS t", "text int4 text text int8 int8 int8 int8",
            [(*k, changes[k].responses, changes[k].good, changes[k].bad, changes[k].total)
             for k in keys],
            "ON CONFLICT (dim, day, grp, kind) DO UPDATE SET responses = t.responses"
            " + excluded.responses, good = t.good + excluded.good, bad = t.bad + excluded.bad,"
            " total = t.total + excluded.total")
    gone = [k for k in keys if changes[k].responses < 0]  # a move may empty a bucket
    if gone:
        cur.execute("DELETE FROM survey_days WHERE responses = 0 AND (dim, day, grp, kind) IN"
                    " (SELECT * FROM unnest(%s::text[], %s::int4[], %s::text[], %s::text[]))",
                    [list(c) for c in zip(*gone, strict=True)])


def _survivors(conn: psycopg.Connection[Any], bases: set[str]) -> dict[str, str]:
    """base -> the customer it belongs to now (itself when not linked)."""
    out = {b: b for b in bases}
    if bases:
        out.update(conn.execute("SELECT base, survivor FROM customer_links WHERE base = ANY(%s)",
                                (sorted(bases),)).fetchall())
    return out


def _members(conn: psycopg.Connection[Any], customers: list[str]) -> dict[str, str]:
    """base -> customer, for every member base of these customers (the inverse of
    ``_survivors``: a customer's own base counts unless it is linked elsewhere)."""
    return dict(conn.execute(
        "SELECT base, survivor FROM customer_links WHERE survivor = ANY(%(c)s) UNION ALL"
        " SELECT s, s FROM unnest(%(c)s::text[]) AS s WHERE NOT EXISTS"
        " (SELECT 1 FROM customer_links l WHERE l.base = s)", {"c": customers}).fetchall())


def _facts(conn: psycopg.Connection[Any], owner: dict[str, str],
           ) -> dict[str, scores.CustomerFacts]:
    """Each customer's facts over its members (only customers with an interaction)."""
    bases = sorted(owner)
    activity: dict[str, list[tuple[int, str]]] = {}
    for b, ms, kind in conn.execute("SELECT base, occurred_ms, kind FROM customer_activity"
                                    " WHERE base = ANY(%s)", (bases,)).fetchall():
        activity.setdefault(owner[b], []).append((ms, kind))
    surveys: dict[str, list[tuple[str, int, str, int]]] = {}
    for b, *answer in conn.execute("SELECT base, event_id, occurred_ms, kind, score FROM"
                                   " customer_surveys WHERE base = ANY(%s)", (bases,)).fetchall():
        surveys.setdefault(owner[b], []).append(tuple(answer))  # type: ignore[arg-type]
    revenue: dict[str, dict[str, tuple[Decimal, int, int]]] = {}
    for b, cur, amount, n, last in conn.execute(
            "SELECT base, currency, amount, purchases, last_ms FROM customer_revenue"
            " WHERE base = ANY(%s)", (bases,)).fetchall():
        mine = revenue.setdefault(owner[b], {})
        held = mine.get(cur, (Decimal(0), 0, last))
        mine[cur] = (held[0] + amount, held[1] + int(n), max(held[2], last))
    open_cases: dict[str, int] = {}
    breaches: dict[str, list[int]] = {}  # when each case first breached (its deadline)
    for b, is_open, breached_ms in conn.execute(
            "SELECT c.customer_id, c.status <> 'resolved', (SELECT floor(EXTRACT(EPOCH FROM"
            " MIN(COALESCE(a.due_at, a.at)::timestamptz)) * 1000)::bigint FROM alerts a"
            " WHERE a.case_id = c.case_id AND a.kind = 'sla.breached') FROM cases c"
            " WHERE c.customer_id = ANY(%s)", (bases,)).fetchall():
        open_cases[owner[b]] = open_cases.get(owner[b], 0) + bool(is_open)
        if breached_ms is not None:
            breaches.setdefault(owner[b], []).append(int(breached_ms))
    return {c: scores.CustomerFacts(acts, surveys.get(c, []), revenue.get(c, {}),
                                    open_cases.get(c, 0), breaches.get(c, []))
            for c, acts in activity.items()}


def _bounds(conn: psycopg.Connection[Any]) -> scores.Bounds | None:
    row = conn.execute("SELECT body FROM base_figures WHERE name='rfm'").fetchone()
    return scores.Bounds.from_json(row[0]["bounds"]) if row else None


SCORE_COLUMNS = ("customer_id", "as_of", "valid_until", "windows", "churn_score",
                 "churn_factors", "revenue", "purchases", "last_purchase_ms", "rfm_as_of",
                 "segment", "recency_days", "r", "f", "m")


def _score_row(c: str, s: scores.Scores) -> tuple[Any, ...]:
    return (c, s.as_of, s.valid_until, Jsonb(s.windows), s.churn.score, Jsonb(s.churn.factors),
            s.worth.monetary, s.worth.frequency, s.worth.last_purchase_ms, s.as_of,
            s.rfm.segment, s.rfm.recency_days, s.rfm.r, s.rfm.f, s.rfm.m)


SCORE_TYPES = "text int8 int8 jsonb float8 jsonb numeric int8 int8 int8 text int4 int2 int2 int2"


def _write_scores(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], gone: list[str],
                  guard: Mapping[str, str] | None) -> int:
    cur = conn.cursor()
    if guard is None:
        updates = ", ".join(f"{c}=excluded.{c}" for c in SCORE_COLUMNS[1:])
        _unnest(cur, f"INSERT INTO customer_scores ({', '.join(SCORE_COLUMNS)})", SCORE_TYPES,
                rows, f"ON CONFLICT (customer_id) DO UPDATE SET {updates}")
        if gone:
            cur.execute("DELETE FROM customer_scores WHERE customer_id = ANY(%s)", (gone,))
        return len(rows) + len(gone)
    # the refresh: only rows no batch changed since it read them, one by one in id order
    # (an UPDATE joined to a list would lock rows in the planner's order)
    sets = ", ".join(f"{c}=%s" for c in SCORE_COLUMNS[1:])
    mine = [(*r[1:], r[0], guard[r[0]]) for r in rows if r[0] in guard]
    cur.executemany(f"UPDATE customer_scores SET {sets} WHERE customer_id=%s"  # type: ignore[call-overload]
                    " AND xmin=%s::xid", mine)
    doomed = [(c, guard[c]) for c in gone if c in guard]
    cur.executemany("DELETE FROM customer_scores WHERE customer_id=%s AND xmin=%s::xid", doomed)
    return len(mine) + len(doomed)


class ReadStoreWriter:
    """The worker's side: load identifiers, commit batches, remember offsets."""

    def __init__(self, db: Database, consumer: str = "projector",
                 figures: FigureWriter | None = None) -> None:
        self.db = db
        self.consumer = consumer
        self.figures = figures or FigureWriter()

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
            new: list[TimelineEntry] = []
            if state is not None:
                new = self._write_projection(conn, state)
            relinked: list[str] = []
            if identity is not None:
                # a merge or an unmerge moves figures: the former survivors are scored again
                relinked = list(_survivors(conn, set(identity.links)).values())
                write_identity(conn, identity, state.displays if state is not None else {})
            if case_rows:
                self._write_cases(conn, case_rows)
            self.figures.write(conn, new, [*(r["customer_id"] for r in case_rows),
                                           *(identity.links if identity is not None else ())],
                               relinked)
            archive(conn, archived)
            conn.cursor().executemany(
                "INSERT INTO offsets VALUES (%s,%s,%s,%s) ON CONFLICT (consumer, topic,"
                " partition) DO UPDATE SET next_offset=excluded.next_offset"
                # never back: records a restart re-reads from before the stored offset
                # (the group's auto-reset runs ahead of the seek) change no position
                " WHERE excluded.next_offset > offsets.next_offset",
                [(self.consumer, t, p, o) for (t, p), o in offsets.items()])

    def _write_projection(self, conn: psycopg.Connection[Any], state: TimelineState,
                          ) -> list[TimelineEntry]:
        """Returns the entries the timeline did not hold yet: only they add to figures."""
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO identifiers VALUES (%s,%s,%s,%s,%s) ON CONFLICT (kind, value)"
            " DO UPDATE SET customer_id=excluded.customer_id, strong=TRUE"
            " WHERE excluded.strong AND NOT identifiers.strong",
            [(k, v, cid, bool(strong), state.displays.get((k, v)))
             for (k, v), (cid, strong) in state.new_identifiers.items()])
        columns = list(zip(*[
            (e.event_id, e.customer_id, e.occurred_ms, e.occurred_at, e.received_at, e.type,
             e.channel, e.source, e.agent_id, e.queue, e.case_id, _payload_json(e.payload),
             e.key_id) for e in state.entries], strict=True))
        # one statement; a repeat within the batch is skipped like a row already stored
        inserted = [] if not columns else [eid for (eid,) in cur.execute(
            "INSERT INTO timeline SELECT e, c, ms, at, r, t, ch, s, a, q, cs, p::jsonb, k FROM"
            " unnest(%b::text[], %b::text[], %b::int8[], %b::text[], %b::int8[],"
            " %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
            " %b::text[], %b::text[]) AS u(e, c, ms, at, r, t, ch, s, a, q, cs, p, k)"
            " ON CONFLICT DO NOTHING RETURNING event_id", [list(c) for c in columns])]
        cur.executemany(
            "INSERT INTO customers VALUES (%s,%s,%s,%s) ON CONFLICT (customer_id) DO UPDATE"
            " SET name=excluded.name, name_ms=excluded.name_ms, name_event=excluded.name_event"
            " WHERE (excluded.name_ms, excluded.name_event)"
            " > (customers.name_ms, customers.name_event)",
            [(cid, name, ms, ev) for cid, (ms, ev, name) in state.names.items()])
        return figures.fresh(state.entries, inserted)

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

    def refresh_figures(self, now: int | None = None) -> dict[str, int]:
        """The periodic job (streams/app.py): what the clock moved, and the base-wide RFM."""
        return self.figures.refresh(self.db, now)

    def rebuild_figures_if_pending(self) -> bool:
        """At start: build the figures from the timeline if migration 4 asked for it."""
        return self.figures.rebuild_if_pending(self.db)

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
        # the first that answers, in one statement: its link, being a survivor, its id
        found = self.db.scalar(
            "SELECT COALESCE((SELECT survivor FROM customer_links WHERE base=%(c)s),"
            " (SELECT %(c)s::text WHERE EXISTS (SELECT 1 FROM customer_links"
            " WHERE survivor=%(c)s)), (SELECT customer_id FROM identifiers"
            " WHERE kind='id' AND value=%(c)s))", {"c": customer_id})
        return str(found) if found is not None else None

    def members(self, cid: str, conn: psycopg.Connection[Any] | None = None) -> list[str]:
        """The base customers merged into ``cid``: rows are keyed by these. With ``conn``,
        inside the caller's transaction (a read path is one transaction: each costs a
        round trip or two of its own)."""
        sql = "SELECT base FROM customer_links WHERE survivor=%s ORDER BY base"
        found = conn.execute(sql, (cid,)).fetchall() if conn else self.db.all(sql, (cid,))
        bases = [b for (b,) in found]
        return bases or [cid]

    def lookup(self, kind: str, value: str) -> str | None:
        return self.db.scalar("SELECT customer_id FROM identifiers WHERE kind=%s AND value=%s",
                              (kind, value))

    def customer(self, cid: str) -> dict[str, Any]:
        with self.db.tx() as c:
            bases = self.members(cid, c)
            with c.pipeline():  # three reads, one round trip
                idents = c.execute("SELECT kind, value, display FROM identifiers"
                                   " WHERE customer_id=%s ORDER BY kind, value", (cid,))
                channels = c.execute("SELECT channel, interactions, last_ms, last_event, last_at"
                                     " FROM customer_channels WHERE base = ANY(%s)", (bases,))
                named = c.execute("SELECT name FROM customers WHERE customer_id = ANY(%s)"
                                  " ORDER BY name_ms DESC, name_event DESC LIMIT 1", (bases,))
            ids: list[str] = []
            identifiers: dict[str, list[str]] = {}
            for kind, value, display in idents.fetchall():
                if kind == "id":
                    ids.append(value)
                    continue
                shown = self._open(display) if display is not None else value
                if shown is not None:
                    identifiers.setdefault(kind, []).append(
                        normalize(kind, shown) if display is not None else shown)
            counts: dict[str, int] = {}
            latest: tuple[int, str, str] | None = None
            for ch, n, ms, event, at in channels.fetchall():
                counts[ch] = counts.get(ch, 0) + int(n)
                if latest is None or (ms, event) > latest[:2]:
                    latest = (ms, event, at)
            counts = dict(sorted(counts.items()))
            last = (latest[2],) if latest else None
            name = named.fetchone()
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
        with self.db.tx() as conn:
            rows = conn.execute(
                "SELECT case_id, status, priority, channel, queue, agent_id, opened_at FROM"
                " cases WHERE customer_id = ANY(%s) AND status<>'resolved'"
                " ORDER BY opened_ms DESC, case_id", (self.members(cid, conn),)).fetchall()
        return [{"id": c, "status": s, "priority": p, "channel": ch, "queue": q,
                 "agent_id": a, "opened_at": o} for c, s, p, ch, q, a, o in rows]

    def count_events(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM timeline"))

    def has_event(self, event_id: str) -> bool:
        return self.db.one("SELECT 1 FROM timeline WHERE event_id=%s", (event_id,)) is not None
