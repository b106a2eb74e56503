"""The customer's figures in PostgreSQL (migration 4): the aggregates of new timeline rows
and the scores of the customers they touch, written inside the batch's transaction; the
periodic refresh of what the clock moves; a rebuild from the timeline. The arithmetic is in
projections/figures.py and projections/scores.py; this module holds only their SQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..domain.sla import CustomerValue
from ..projections import figures, satisfaction, scores, value
from ..projections.timeline import TimelineEntry
from ..projections.value import CustomerValueFacts
from .database import Database, compact_time, insert_many
from .logging import get_logger

log = get_logger(__name__)

# the customer's figures: the aggregates and the score queue kept in the batch's
# transaction, the scores by the rounds (FigureWriter)
FIGURE_TABLES = ("customer_channels", "customer_surveys",
                 "customer_satisfaction", "customer_revenue", "customer_consent",
                 "case_owners", "survey_days", "customer_scores", "base_figures",
                 "score_queue")

# a customer's activity is its timeline rows other than case events, each of a kind as
# projections/figures.fold gives it (migration 12 dropped the copy customer_activity was)
INTERACTIONS = "type NOT LIKE 'case.%%'"
ACTIVITY_KIND = ("CASE type " + "".join(f"WHEN '{t}' THEN '{k}' "
                                         for t, k in figures.ACTIVITY_KINDS.items())
                 + f"ELSE '{figures.CONTACT}' END")

TIMELINE_COLUMNS = ("event_id, customer_id, occurred_ms, occurred_at, received_at, type,"
                    " channel, source, agent_id, queue, case_id, payload, key_id")


def timeline_entry(row: Sequence[Any]) -> TimelineEntry:
    eid, cid, ms, at, recv, typ, ch, src, agent, queue, case, payload, key = row
    return TimelineEntry(customer_id=cid, event_id=eid, type=typ, channel=ch, occurred_at=at,
                         occurred_ms=ms, received_at=recv, source=src, agent_id=agent,
                         queue=queue, case_id=case, payload=payload, key_id=key)


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
SCORE_CHUNK = 2000  # customers scored per round of queries, and queued ids a round claims
# (a batch never waits for a round's scoring; measured, rounds of 250 made the facts'
# lookups over arrays 8 µs an event dearer in the database)
CLAIM_EXPIRES = timedelta(seconds=60)  # then ids a dead round claimed are claimed again
REFRESH_CHUNK = 5000  # score rows a refresh transaction rewrites at most
# A round churns its two tables: every id it scores is a queue row inserted, claimed and
# deleted, and a score row rewritten (non-HOT: its indexes hold the score, the revenue,
# the segment). Autovacuum comes once a minute: at 100,000 events the two held ~185
# bytes an event, mostly dead rows and their index entries. So the rounds vacuum them
# themselves once they have rescored a share of the score rows since the last time
# (``FigureWriter.compact``): ~110 bytes an event, the space of dead rows used again.
COMPACTED = ("score_queue", "customer_scores")
COMPACT_SHARE = 0.2  # of customer_scores' rows rescored since the last vacuum ...
COMPACT_MIN = 2000  # ... and at least so many


class FigureWriter:
    """The customer's figures in the read store (migration 4): the aggregates of new
    timeline rows and the scores of the customers they touch, inside the caller's
    transaction; the periodic refresh of what the clock moves; a rebuild from the timeline.
    The arithmetic is in projections/figures.py and scores.py."""

    def __init__(self, base_currency: str = "EUR", rates: Mapping[str, Decimal] | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.base = base_currency
        self.rates = dict(rates or parse_rates("", base_currency))
        self.clock = clock or _system_ms
        self.churned = 0  # ids this writer's rounds scored since its last vacuum

    # -- the batch -------------------------------------------------------------------------
    def write(self, conn: psycopg.Connection[Any], entries: Sequence[TimelineEntry],
              touched: Iterable[str] = (), relinked: Iterable[str] = ()) -> int:
        """New timeline rows (only those: the caller's insert said which) into the
        aggregates; the bases they and ``touched`` name, and the customers ``relinked``
        (the former survivors of re-linked bases), into the score queue (migration 11),
        which ``score_queued`` works off. Returns how many ids it queued."""
        queued = set(touched) | set(relinked)
        if entries:
            queued |= self.add(conn, entries).bases
        if queued:
            # an id a round has claimed is queued again (its claim cleared): the round does
            # not take it off the queue, a later one scores it with this batch's facts. An
            # id queued and unclaimed is not written again, but locked all the same (DO
            # UPDATE locks every conflicting row, whatever its WHERE), as a claimed one is:
            # until this batch commits no round claims it
            conn.execute("INSERT INTO score_queue (customer_id) SELECT unnest(%b::text[])"
                         " ON CONFLICT (customer_id) DO UPDATE SET claim = NULL,"
                         " claimed_at = NULL WHERE score_queue.claim IS NOT NULL",
                         (sorted(queued),))
        return len(queued)

    def score_queued(self, db: Database, limit: int = SCORE_CHUNK) -> int:
        """Rescore what batches queued, ``limit`` ids at a time, until nothing is left to
        claim. Each time: claim ids in a short transaction of their own (none a batch has
        locked: its facts are not visible yet; none another round claimed less than
        ``CLAIM_EXPIRES`` ago), then score them and take off the queue those no batch
        queued again meanwhile. So a batch never waits for the scoring, only for the
        last statement of a round's transaction (an unmerge or an erasure waits for a
        round's scoring, and rounds for one another). A queued id scores the customer it
        belongs to now (and loses the score row it had as a survivor, if it was one).
        Ids claimed by a round that died are claimed again once the claim expired."""
        done, token = 0, uuid.uuid4().hex
        while True:
            # Each statement on the queue reads the table once, whatever the planner
            # thinks of its size (no join: a vacuum of the queue found empty leaves it
            # thinking it holds no rows, and a join planned so scanned the whole queue for
            # each id, ~100 ms a round with the batches' inserts waiting); the id lists go
            # as constants (not prepared), which a scan looks up in a hash
            with db.tx() as conn:
                ids = [c for (c,) in conn.execute(
                    "SELECT customer_id FROM score_queue WHERE claim IS NULL OR"
                    " claimed_at < now() - %s ORDER BY customer_id LIMIT %s"
                    " FOR UPDATE SKIP LOCKED", (CLAIM_EXPIRES, limit))]
                if ids:
                    conn.execute("UPDATE score_queue SET claim = %s, claimed_at = now()"
                                 " WHERE customer_id = ANY(%s)", (token, ids), prepare=False)
            if ids:
                with db.tx() as conn:
                    one_round_at_a_time(conn)  # on every worker, and the refresh
                    self.rescore(conn, _score_targets(conn, ids), self.clock())
                    # rows locked in id order, as a batch's upsert locks them: a delete in
                    # the plan's order (a scan: the table's) could wait for a batch that
                    # waits for it (a deadlock, seen once in a bench); then deleted
                    conn.execute("SELECT 1 FROM score_queue WHERE customer_id = ANY(%s)"
                                 " AND claim = %s ORDER BY customer_id FOR UPDATE",
                                 (ids, token), prepare=False)
                    conn.execute("DELETE FROM score_queue WHERE customer_id = ANY(%s)"
                                 " AND claim = %s", (ids, token), prepare=False)
            done += len(ids)
            if len(ids) < limit:
                self.churned += done
                if self.churned >= COMPACT_MIN:
                    self.compact(db)
                return done

    def compact(self, db: Database, force: bool = False) -> bool:
        """Vacuum the tables rounds churn (``COMPACTED``) once the rounds have rescored
        ``COMPACT_SHARE`` of the score rows since the last time, or with ``force``. A
        vacuum another worker or autovacuum is running is not waited for (SKIP_LOCKED);
        the empty pages at a table's end stay (TRUNCATE false: cutting them takes a lock
        that stops the batches' inserts into the queue meanwhile; they are used again).
        Returns whether it vacuumed; a failure is logged, the rounds go on."""
        try:
            with db.autocommit() as conn:
                if not force:
                    row = conn.execute("SELECT reltuples FROM pg_class"
                                       " WHERE oid = 'customer_scores'::regclass").fetchone()
                    if self.churned < max(COMPACT_MIN, COMPACT_SHARE * float(row[0]) if row else 0):
                        return False
                # paced as autovacuum is (its cost delay; a manual vacuum has none), so its
                # reads of the tables and their indexes do not come in one burst between
                # the batches' commits
                conn.execute("SET vacuum_cost_delay = '2ms'")
                try:
                    conn.execute(f"VACUUM (SKIP_LOCKED, TRUNCATE false) {', '.join(COMPACTED)}")
                finally:  # the pool's connection as it was
                    conn.execute("RESET vacuum_cost_delay")
        except psycopg.Error as exc:
            log.warning("scores.vacuum_failed", error=type(exc).__name__)
            return False
        self.churned = 0
        return True

    def add(self, conn: psycopg.Connection[Any], entries: Iterable[TimelineEntry],
            ) -> figures.Delta:
        d = figures.fold(entries)
        for event_id, why in d.skipped:
            log.warning("figures.row_skipped", event_id=event_id, reason=why)
        old = _owners(conn, set(d.owners))
        owners = {**old, **{c: o.merged(old.get(c)) for c, o in d.owners.items()}}
        changed = sorted(c for c in d.owners if owners[c] != old.get(c))
        moved = figures.regroup(_surveys_needing_owner(conn, changed), owners)
        more = {s.case_id for s in d.surveys if s.needs_owner()} - set(owners)
        owners.update(_owners(conn, {c for c in more if c}))
        added = [(s, figures.effective(s, owners.get(s.case_id or ""))) for s in d.surveys]
        cur = conn.cursor()
        _write_sums(cur, d)
        insert_many(cur, "INSERT INTO customer_surveys",
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
        before the facts), a row a round changed meanwhile is left as that round wrote it."""
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
        In short transactions (a round waits for the score rows one holds); one worker at
        a time (advisory lock); a row a round rewrote meanwhile is left as the round has it
        (``xmin``). First, a round of what is queued (the queue's own rules: whatever no
        round claims, say what a worker queued and did not score before it stopped)."""
        at = self.clock() if now is None else now
        out = {"queued": self.score_queued(db), "stale": 0, "breached": 0, "rfm": 0}
        while True:  # in rounds of ``limit``, each its own transaction
            with db.tx() as conn:
                if not _locked(conn):
                    break
                one_round_at_a_time(conn)
                due = conn.execute(
                    "SELECT customer_id, xmin::text FROM customer_scores WHERE valid_until"
                    " <= %s ORDER BY valid_until LIMIT %s", (at, limit)).fetchall()
                out["stale"] += self.rescore(conn, [c for c, _ in due], at, dict(due))
            if len(due) < limit:
                break
        with db.tx() as conn:
            if _locked(conn):
                one_round_at_a_time(conn)
                out["breached"] = self._breaches(conn, at)
        with db.tx() as conn:
            changed = self.rfm_changes(conn, at) if _locked(conn) else []
        for i in range(0, len(changed), limit):
            with db.tx() as conn:
                one_round_at_a_time(conn)
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
        customers = set(survivors(conn, {b for _, b in found}).values())
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
        bases = [b for (b,) in conn.execute(  # () : its %% is read as the % it is
            f"SELECT DISTINCT customer_id FROM timeline WHERE {INTERACTIONS}", ())]
        at = self.clock()
        self.rescore(conn, set(survivors(conn, set(bases)).values()), at)
        self._breaches(conn, at)
        self.refresh_rfm(conn, at)
        log.info("figures.rebuilt", bases=len(bases))

    # -- erasure ---------------------------------------------------------------------------
    def move(self, conn: psycopg.Connection[Any], rows: Sequence[TimelineEntry],
             to: Mapping[str, str], bases: Sequence[str], customers: Iterable[str]) -> None:
        """An erasure moved these timeline rows of ``bases`` to pseudonyms (``to``: event id
        -> pseudonym): the aggregates follow, report buckets and case owners stay as they
        are, and the customers named lose or get their scores."""
        for table in ("customer_channels", "customer_satisfaction", "customer_revenue",
                      "customer_consent"):
            conn.execute(f"DELETE FROM {table} WHERE base = ANY(%s)",  # type: ignore[call-overload]
                         (list(bases),))
        d = figures.fold(replace(e, customer_id=to[e.event_id]) for e in rows)
        cur = conn.cursor()
        _write_sums(cur, d)
        cur.executemany("UPDATE customer_surveys SET base=%s WHERE base=%s AND event_id=%s",
                        [(to[e.event_id], e.customer_id, e.event_id) for e in rows
                         if e.type == "survey.answered"])
        self.rescore(conn, {*customers, *to.values()}, self.clock())


class StoredValues:
    """A base customer's segment and lifetime revenue as the stored scores have them now
    (its survivor's row): what an SLA policy matching on value reads when a case opens."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, base: str) -> CustomerValue | None:
        row = self.db.one(
            "SELECT segment, revenue FROM customer_scores WHERE customer_id = COALESCE("
            "(SELECT survivor FROM customer_links WHERE base = %s), %s)", (base, base))
        if row is None or not value.countable(Decimal(row[1])):
            return None
        return CustomerValue(row[0], Decimal(row[1]).quantize(value.CENT))


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


def channel_last(last: tuple[int, str, str]) -> tuple[int, str, str | None, int | None]:
    """A channel's latest interaction as the table keeps it: its time's text left out when
    it renders back (migration 21, as the timeline's)."""
    ms, event_id, at = last
    return (ms, event_id, *compact_time(at, ms))


def _write_sums(cur: psycopg.Cursor[Any], d: figures.Delta) -> None:
    """The per-base sums and latest-wins rows of a delta (added to what is stored)."""
    newer = "(excluded.last_ms, excluded.last_event) > (t.last_ms, t.last_event)"
    insert_many(cur, "INSERT INTO customer_channels AS t",
                "text text int8 int8 text text int2", [
                    (b, ch, c.interactions, *channel_last(c.last))
                    for (b, ch), c in sorted(d.channels.items())],
                "ON CONFLICT (base, channel) DO UPDATE SET"
                " interactions = t.interactions + excluded.interactions,"
                f" last_ms = CASE WHEN {newer} THEN excluded.last_ms ELSE t.last_ms END,"
                f" last_event = CASE WHEN {newer} THEN excluded.last_event ELSE t.last_event END,"
                f" last_at = CASE WHEN {newer} THEN excluded.last_at ELSE t.last_at END,"
                f" last_tz = CASE WHEN {newer} THEN excluded.last_tz ELSE t.last_tz END")
    insert_many(cur, "INSERT INTO customer_satisfaction AS t", "text text int8 int8 int8 int8",
                [(b, k, t.responses, t.good, t.bad, t.total)
                 for (b, k), t in sorted(d.satisfaction.items())],
                "ON CONFLICT (base, kind) DO UPDATE SET responses = t.responses"
                " + excluded.responses, good = t.good + excluded.good, bad = t.bad + excluded.bad,"
                " total = t.total + excluded.total")
    insert_many(cur, "INSERT INTO customer_revenue AS t", "text text numeric int8 int8",
                [(b, c, m.amount, m.purchases, m.last_ms)
                 for (b, c), m in sorted(d.revenue.items())],
                "ON CONFLICT (base, currency) DO UPDATE SET amount = t.amount + excluded.amount,"
                " purchases = t.purchases + excluded.purchases,"
                " last_ms = GREATEST(t.last_ms, excluded.last_ms)")
    insert_many(cur, "INSERT INTO customer_consent AS t", "text text text bool int8 text text text",
                [(b, ch, p, c.granted, c.occurred_ms, c.event_id, c.occurred_at, c.source)
                 for (b, ch, p), c in sorted(d.consent.items())],
                "ON CONFLICT (base, channel, purpose) DO UPDATE SET granted = excluded.granted,"
                " occurred_ms = excluded.occurred_ms, event_id = excluded.event_id,"
                " occurred_at = excluded.occurred_at, source = excluded.source"
                " WHERE (excluded.occurred_ms, excluded.event_id) > (t.occurred_ms, t.event_id)")


def _write_buckets(cur: psycopg.Cursor[Any], changes: dict[figures.BucketKey, figures.Tally],
                   ) -> None:
    keys = sorted(changes)
    insert_many(cur, "INSERT INTO survey_days AS t", "text int4 text text int8 int8 int8 int8",
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


def survivors(conn: psycopg.Connection[Any], bases: set[str]) -> dict[str, str]:
    """base -> the customer it belongs to now (itself when not linked); the pseudonyms of
    one erasure belong to its first one (``erased_groups``, migration 9), so an erased
    customer keeps the scores it had."""
    out = {b: b for b in bases}
    if bases:
        out.update(conn.execute(
            "SELECT base, survivor FROM customer_links WHERE base = ANY(%(b)s) UNION ALL"
            " SELECT pseudonym, grp FROM erased_groups WHERE pseudonym = ANY(%(b)s)",
            {"b": sorted(bases)}).fetchall())
    return out


def one_round_at_a_time(conn: psycopg.Connection[Any]) -> None:
    """Until the transaction ends, no other round of scores or refresh writes scores: the
    identity epoch's row, FOR UPDATE. A round scoring an id again writes after the other
    one, never under it. The refresh's rows guarded by ``xmin`` are not rewritten by a
    round between its read and its write (a round whose figures equal the stored ones
    leaves the row, and its ``xmin``, as they were: the refresh would then write figures
    of facts older than the round's). And an erasure or an unmerge, which moves the
    epoch first in its transaction, is waited for or waits, so no round writes back the
    scores of a person an erasure just forgot."""
    conn.execute("SELECT epoch FROM identity_epoch FOR UPDATE")


def _score_targets(conn: psycopg.Connection[Any], ids: list[str]) -> set[str]:
    """What queued ids rescore: the customers they belong to now, and those of them that
    belong to another customer since and still have a score row (a former survivor: its
    row goes)."""
    owner = survivors(conn, set(ids))
    moved = [i for i in ids if owner[i] != i]
    stale = {c for (c,) in conn.execute("SELECT customer_id FROM customer_scores"
                                        " WHERE customer_id = ANY(%s)", (moved,))} \
        if moved else set()
    return set(owner.values()) | stale


def _members(conn: psycopg.Connection[Any], customers: list[str]) -> dict[str, str]:
    """base -> customer, for every member base of these customers (the inverse of
    ``_survivors``: a customer's own base counts unless it is linked elsewhere)."""
    return dict(conn.execute(
        "SELECT base, survivor FROM customer_links WHERE survivor = ANY(%(c)s) UNION ALL"
        " SELECT pseudonym, grp FROM erased_groups WHERE grp = ANY(%(c)s) UNION ALL"
        " SELECT s, s FROM unnest(%(c)s::text[]) AS s WHERE NOT EXISTS"
        " (SELECT 1 FROM customer_links l WHERE l.base = s) AND NOT EXISTS"
        " (SELECT 1 FROM erased_groups g WHERE g.pseudonym = s)", {"c": customers}).fetchall())


def _facts(conn: psycopg.Connection[Any], owner: dict[str, str],
           ) -> dict[str, scores.CustomerFacts]:
    """Each customer's facts over its members (only customers with an interaction)."""
    bases = sorted(owner)
    activity: dict[str, list[tuple[int, str]]] = {}
    # each lookup joins the bases' array (an index probe a base) rather than testing
    # "= ANY(array)", which the generic plan of a prepared statement ran as a scan
    # comparing every row with every base: 55-70 ms a round of 1,000 customers on the
    # 6,000 rows of customer_surveys (100,000 events), a core's burst every second
    for b, ms, kind in conn.execute(f"SELECT customer_id, occurred_ms, {ACTIVITY_KIND} FROM"
                                    " unnest(%s::text[]) AS u(base) JOIN timeline"
                                    f" ON customer_id = u.base WHERE {INTERACTIONS}",
                                    (bases,)).fetchall():
        activity.setdefault(owner[b], []).append((ms, kind))
    surveys: dict[str, list[tuple[str, int, str, int]]] = {}
    for b, *answer in conn.execute("SELECT s.base, event_id, occurred_ms, kind, score FROM"
                                   " unnest(%s::text[]) AS u(base) JOIN customer_surveys s"
                                   " ON s.base = u.base", (bases,)).fetchall():
        surveys.setdefault(owner[b], []).append(tuple(answer))  # type: ignore[arg-type]
    revenue: dict[str, dict[str, tuple[Decimal, int, int]]] = {}
    for b, cur, amount, n, last in conn.execute(
            "SELECT r.base, currency, amount, purchases, last_ms FROM unnest(%s::text[])"
            " AS u(base) JOIN customer_revenue r ON r.base = u.base", (bases,)).fetchall():
        if not value.countable(amount):  # a total stored before amounts had a limit
            log.warning("figures.total_skipped", currency=cur)
            continue
        mine = revenue.setdefault(owner[b], {})
        held = mine.get(cur, (Decimal(0), 0, last))
        mine[cur] = (held[0] + amount, held[1] + int(n), max(held[2], last))
    open_cases: dict[str, int] = {}
    breaches: dict[str, list[int]] = {}  # when each case first breached (its deadline)
    for b, is_open, breached_ms in conn.execute(
            "SELECT c.customer_id, c.status <> 'resolved', (SELECT floor(EXTRACT(EPOCH FROM"
            " MIN(COALESCE(a.due_at, a.at)::timestamptz)) * 1000)::bigint FROM alerts a"
            " WHERE a.case_id = c.case_id AND a.kind = 'sla.breached') FROM"
            " unnest(%s::text[]) AS u(base) JOIN cases c ON c.customer_id = u.base",
            (bases,)).fetchall():
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


def stored_windows(windows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The satisfaction windows as stored: only the kinds with answers, only the windows
    with any (``shown_windows`` fills in the rest). Most customers answer no survey: their
    row holds ``{}`` instead of about 550 bytes of empty blocks."""
    out = {}
    for window, kinds in windows.items():
        answered = {k: b for k, b in kinds.items() if b["responses"]}
        if answered:
            out[window] = answered
    return out


def shown_windows(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The stored windows as the view shows them: every window and kind, in the order
    the view always had (JSONB keeps its own)."""
    out = {}
    for d in scores.WINDOWS:
        window = stored.get(f"{d}d") or {}
        out[f"{d}d"] = {k: {"score": (window.get(k) or {}).get("score"),
                            "responses": (window.get(k) or {}).get("responses", 0)}
                        for k in satisfaction.KINDS}
    return out


def _score_row(c: str, s: scores.Scores) -> tuple[Any, ...]:
    return (c, s.as_of, s.valid_until, Jsonb(stored_windows(s.windows)), s.churn.score,
            Jsonb(s.churn.factors),
            s.worth.monetary, s.worth.frequency, s.worth.last_purchase_ms, s.as_of,
            s.rfm.segment, s.rfm.recency_days, s.rfm.r, s.rfm.f, s.rfm.m)


# a rescore that moves none of these leaves the row as it is: no new row version for the
# instant alone (as_of is not shown; valid_until is the same for the same facts)
SHOWN_COLUMNS = tuple(c for c in SCORE_COLUMNS[2:] if c != "rfm_as_of")


SCORE_TYPES = "text int8 int8 jsonb float8 jsonb numeric int8 int8 int8 text int4 int2 int2 int2"


def _write_scores(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], gone: list[str],
                  guard: Mapping[str, str] | None) -> int:
    cur = conn.cursor()
    if guard is None:
        updates = ", ".join(f"{c}=excluded.{c}" for c in SCORE_COLUMNS[1:])
        insert_many(cur, f"INSERT INTO customer_scores AS t ({', '.join(SCORE_COLUMNS)})",
                    SCORE_TYPES, rows, f"ON CONFLICT (customer_id) DO UPDATE SET {updates}"
                    f" WHERE ({', '.join(f't.{c}' for c in SHOWN_COLUMNS)}) IS DISTINCT FROM"
                    f" ({', '.join(f'excluded.{c}' for c in SHOWN_COLUMNS)})")
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
