"""The read store: projections the API serves, in PostgreSQL.

The worker writes it (an erasure, adapters/erasure.py, is the one write from the API). Each
batch's projection rows, the raw records it consumed (the local archive, see
adapters/journal.py) and the next offsets commit in one transaction, so a crash never
leaves projections and offsets apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from ..projections import figures
from ..projections.identifiers import normalize
from ..projections.timeline import TimelineEntry, TimelineState
from ..streams.ports import ArchivedRecord, BatchChanges, Redo
from . import edges
from .archive import archive, archived
from .database import EVENT_ID, EVENT_IS, Database, compact_time, insert_many, split_event_id
from .figurestore import (
    FIGURE_TABLES,
    FigureWriter,
    survivors,
)
from .logging import get_logger
from .ownership import check_fence

if TYPE_CHECKING:
    from ..streams.identity import IdentityKeeper
    from .privacy import Privacy
    from .scoring import ScoreProcess

log = get_logger(__name__)

# pg_advisory_xact_lock key held by whoever writes the identity graph's rows ("iden")
IDENTITY_LOCK = 0x6964656E

# the scores of the customers batches touched (migration 11) are scored in rounds: when
# the projector finds nothing more to read (a trickle: right after the batch, so the view
# is as fresh as the timeline) and at most every SCORE_EVERY_S while batches keep coming
# (a load, a backlog), so a customer touched by many batches meanwhile is scored once and
# the commits under a load do not wait for rounds of scoring
SCORE_EVERY_S = 1.0

# A batch of at most so many rows of each kind writes them in one pipeline (psycopg's
# pipeline mode: its ~20 statements sent without waiting for each one's result; the
# connection waits only where the commit reads one, 3-8 times). Each wait is a round trip
# and, for the writer thread, a turn to get the GIL back from the thread projecting the
# next batch: under a steady load of 1,000 events a second (batches of ~50) the commit's
# p90 went 8.9-9.9 -> 7.3-7.8 ms and the freshness p99 37-39 -> 30-35 ms (measured, three
# runs each). Larger batches (a backlog) go a statement at a time as before: what they
# send and read back is not bounded, and adapters/eventstore.py saw a pipeline wait for
# ever with 1,000 cases in one insert on this psycopg (3.3.9; it looked like psycopg issue
# #685, whose fix 3.1.18 has). The identity graph's reads of other workers' rows, of any
# size, come before the pipeline; what a small batch's writes read back is a few KB.
PIPELINE_MAX_RECORDS = 200

# what a replay rebuilds; identity_separations stay: they are people's decisions (unmerges)
PROJECTION_TABLES = ("timeline_rows", "identifiers", "customers", "cases", "customer_links",
                     "identity_edges", "identity_bases", *FIGURE_TABLES)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None

# one encoder for every row (json.dumps with options builds one a call)
_PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _payload_json(payload: dict[str, Any]) -> str:
    return _PAYLOAD_JSON(payload)


# the earliest event's form of an identifier wins (migration 5); a row of before it
# (display_ms NULL) keeps what it shows
KEEP_EARLIEST_DISPLAY = (
    " display=CASE WHEN identifiers.display IS NULL OR (excluded.display_ms,"
    " excluded.display_event) < (identifiers.display_ms, identifiers.display_event)"
    " THEN excluded.display ELSE identifiers.display END,"
    " display_ms=CASE WHEN identifiers.display IS NULL OR (excluded.display_ms,"
    " excluded.display_event) < (identifiers.display_ms, identifiers.display_event)"
    " THEN excluded.display_ms ELSE identifiers.display_ms END,"
    " display_event=CASE WHEN identifiers.display IS NULL OR (excluded.display_ms,"
    " excluded.display_event) < (identifiers.display_ms, identifiers.display_event)"
    " THEN excluded.display_event ELSE identifiers.display_event END")
# ... and only when it changes something: its owner, or an earlier form to show
DISPLAY_OR_OWNER_MOVES = (
    " WHERE identifiers.customer_id <> excluded.customer_id"
    " OR (identifiers.display IS NULL AND excluded.display IS NOT NULL)"
    " OR (excluded.display_ms, excluded.display_event)"
    " < (identifiers.display_ms, identifiers.display_event)")
Displays = dict[tuple[str, str], tuple[int, str, str]]


def _display(displays: Displays, ident: tuple[str, str]) -> tuple[Any, Any, Any]:
    """(display, display_ms, display_event) of an identifier, NULLs if the batch has none."""
    seen = displays.get(ident)
    return (seen[2], seen[0], seen[1]) if seen else (None, None, None)


def write_identity(conn: psycopg.Connection[Any], batch: Any, displays: Displays) -> None:
    """What the identity stage (streams/identity.py) learnt from a batch, inside the
    batch's transaction."""
    cur = conn.cursor()
    # one statement a table over binary arrays, rows in key order (as rows are locked; the
    # separations, an admin's unmerges, come a few at a time);
    # seq: the commit order other workers read them back in (under IDENTITY_LOCK)
    with_seq = "*, nextval('identity_seq')"
    # an edge's identifiers compact, keyed by a digest (adapters/edges.py, migration 22)
    insert_many(cur, "INSERT INTO identity_edges (edge_id, edge, claim_ms, claim_event, seq)",
                "uuid bytea int8 text",
                sorted((*edges.row(idents), ms, ev) for idents, (ms, ev) in batch.edges.items()),
                "ON CONFLICT (edge_id) DO UPDATE SET claim_ms=excluded.claim_ms,"
                " claim_event=excluded.claim_event, seq=excluded.seq"
                " WHERE (excluded.claim_ms, excluded.claim_event)"
                " < (identity_edges.claim_ms, identity_edges.claim_event)", select=with_seq)
    insert_many(cur, "INSERT INTO identity_bases", "text text text",
                sorted((b, k, v) for b, (k, v) in batch.new_bases.items()),
                "ON CONFLICT DO NOTHING", select=with_seq)
    cur.executemany("INSERT INTO identity_separations VALUES (%s,%s,%s,%s)"
                    " ON CONFLICT DO NOTHING",
                    [(a[0], a[1], b[0], b[1]) for a, b in batch.separations])
    # a row that would not change is not written again (no new row version)
    insert_many(cur, "INSERT INTO customer_links", "text text", sorted(batch.links.items()),
                "ON CONFLICT (base) DO UPDATE SET survivor=excluded.survivor"
                " WHERE customer_links.survivor <> excluded.survivor")
    insert_many(cur, "INSERT INTO identifiers (kind, value, customer_id, strong, display,"
                " display_ms, display_event)", "text text text bool text int8 text",
                sorted((k, v, cid, True, *_display(displays, (k, v)))
                       for (k, v), cid in batch.identifiers.items()),
                "ON CONFLICT (kind, value) DO UPDATE SET customer_id=excluded.customer_id,"
                + KEEP_EARLIEST_DISPLAY + DISPLAY_OR_OWNER_MOVES)


def lock_identity(conn: psycopg.Connection[Any]) -> None:
    """Until the transaction ends: the one writer of the identity graph's rows."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (IDENTITY_LOCK,))


def _last_seq(conn: psycopg.Connection[Any]) -> int:
    """The last identity seq handed out (0 before the first): under the identity lock,
    every row at or below it is committed or never will be."""
    row = conn.execute("SELECT last_value, is_called FROM identity_seq").fetchone()
    return int(row[0]) if row and row[1] else 0


def bump_identity_epoch(conn: psycopg.Connection[Any]) -> int:
    """Rows were taken away (an unmerge, an erasure): every other worker reloads."""
    lock_identity(conn)
    row = conn.execute("UPDATE identity_epoch SET epoch = epoch + 1 RETURNING epoch").fetchone()
    return int(row[0]) if row else 0


class IdentityStale(Redo):
    """Another worker carried out an unmerge or an erasure since this one loaded."""


def pipelined(changes: BatchChanges) -> bool:
    """Whether a batch is small enough to commit in one pipeline: at most
    ``PIPELINE_MAX_RECORDS`` of each kind of row it writes (timeline rows, identifiers,
    case rows, archived records, and the identity graph's edges, links and moved
    identifiers, which a merge of large customers makes many of)."""
    state, identity = changes.timeline, changes.identity
    sizes = [len(changes.archive), len(changes.cases)]
    if state is not None:
        sizes += [len(state.entries), len(state.new_identifiers), len(state.displays)]
    if identity is not None:
        sizes += [len(identity.edges), len(identity.links), len(identity.identifiers),
                  len(identity.new_bases)]
    return max(sizes) <= PIPELINE_MAX_RECORDS


class ReadStoreWriter:
    """The worker's side: load identifiers, commit batches, remember offsets."""

    def __init__(self, db: Database, consumer: str = "projector",
                 figures: FigureWriter | None = None,
                 scorer: ScoreProcess | None = None) -> None:
        self.db = db
        # rounds of scores in a process of its own (adapters/scoring.py); None: here
        self.scorer = scorer
        self.consumer = consumer
        self.figures = figures or FigureWriter()
        # the identity graph of this worker (streams/identity.py), and how much of the
        # rows other workers wrote it holds: the last seq read, the epoch loaded
        self.keeper: IdentityKeeper | None = None
        self._seen_seq = 0
        self._epoch: int | None = None
        # scores off the batch path: whether this worker queued ids not scored yet, and
        # when a round is due while batches keep coming (time.monotonic)
        self._queued = False
        self._score_due = 0.0

    def scorer_pids(self) -> list[int]:
        """The process ids of the scores' children, if they run (the bench's CPU figures)."""
        return self.scorer.pids() if self.scorer is not None else []

    def close(self) -> None:
        """The scores' children go; the database belongs to the composition root, which
        closes it."""
        if self.scorer is not None:
            self.scorer.close()

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

    def identity_rows(self) -> tuple[list[tuple[list[tuple[str, str]], int, str]],
                                     list[tuple[str, str, str, str]],
                                     list[tuple[str, str, str]]]:
        """The identity graph's persistent parts: edges, separations, bases (a consistent
        cut: under the identity lock, so no other worker's rows land half-read)."""
        with self.db.tx() as conn:
            lock_identity(conn)
            row = conn.execute("SELECT epoch FROM identity_epoch").fetchone()
            self._epoch, self._seen_seq = int(row[0]) if row else 0, _last_seq(conn)
            edge_rows = conn.execute("SELECT edge, claim_ms, claim_event FROM identity_edges"
                                     ).fetchall()
            seps = conn.execute("SELECT a_kind, a_value, b_kind, b_value"
                                " FROM identity_separations").fetchall()
            bases = conn.execute("SELECT base, kind, value FROM identity_bases").fetchall()
        return ([(edges.decode(e), ms, ev) for e, ms, ev in edge_rows],
                seps, bases)  # type: ignore[return-value]

    def commit(self, changes: BatchChanges) -> None:
        """The batch's unit of work: one transaction (streams/ports.py ``BatchChanges``)."""
        state, identity, case_rows = changes.timeline, changes.identity, changes.cases
        mark: tuple[int, int] | None = None
        with self.db.tx() as conn:
            if identity is not None or case_rows:
                # first, before any row lock: with the rows other workers lock, a later
                # advisory lock could close a cycle (a deadlock). Case rows too: an
                # erasure on another worker must not be undone by a batch read before it
                lock_identity(conn)
                if identity is None:
                    self._check_epoch(conn)
            seen: tuple[int, int] | None = None
            if identity is not None:
                # before the writes, and not in their pipeline: it reads what other
                # workers committed since (any amount) and folds it into the batch, which
                # can grow it (a fold rewrites every link and identifier of the regions)
                seen = self._sync_identity(conn, identity)
            with conn.pipeline() if pipelined(changes) else nullcontext():
                new: list[TimelineEntry] = []
                if state is not None:
                    new = self._write_projection(conn, state)
                relinked: list[str] = []
                if identity is not None:
                    assert seen is not None
                    # a merge or an unmerge moves figures: the former survivors are
                    # scored again
                    relinked = list(survivors(conn, set(identity.links)).values())
                    write_identity(conn, identity,
                                   state.displays if state is not None else {})
                    epoch = bump_identity_epoch(conn) if identity.separations else seen[1]
                    mark = (_last_seq(conn), epoch)
                if case_rows:
                    self._write_cases(conn, case_rows)
                queued = self.figures.write(
                    conn, new, [*(r["customer_id"] for r in case_rows),
                                *(identity.links if identity is not None else ())], relinked)
                archive(conn, changes.archive)
                conn.cursor().executemany(
                    "INSERT INTO offsets VALUES (%s,%s,%s,%s) ON CONFLICT (consumer, topic,"
                    " partition) DO UPDATE SET next_offset=excluded.next_offset"
                    # never back: records a restart re-reads from before the stored
                    # offset (the group's auto-reset runs ahead of the seek) change no
                    # position
                    " WHERE excluded.next_offset > offsets.next_offset",
                    [(self.consumer, t, p, o) for (t, p), o in changes.offsets.items()])
                # last: the lease rows are held (a takeover waits) only for the commit
                check_fence(conn, changes.holder, changes.fence)
        if mark is not None:
            self._seen_seq, self._epoch = mark
        if queued:
            self._queued = True

    def scores_due(self, idle: bool = False) -> bool:
        """Whether a round of scores is due: this worker's batches queued ids since the
        last round, and the projector is idle or the last round is ``SCORE_EVERY_S`` old."""
        return self._queued and (idle or time.monotonic() >= self._score_due)

    def score_queued(self) -> int:
        """A round: the scores of the customers this worker's batches queued (and of any
        other queued id no worker is scoring). From any thread, beside the commits."""
        if not self._queued:
            return 0
        # cleared first: a commit that queues more meanwhile sets it again
        self._queued = False
        self._score_due = time.monotonic() + SCORE_EVERY_S
        try:
            if self.scorer is not None:
                return self.scorer.round()
            return self.figures.score_queued(self.db)
        except BaseException:
            self._queued = True
            raise

    def catch_up_identity(self) -> None:
        if self.keeper is None:
            return
        from ..streams.identity import IdentityBatch
        with self.db.tx() as conn:
            _, epoch = self._sync_identity(conn, IdentityBatch())  # nothing of its own
            seen = _last_seq(conn)
        self._seen_seq, self._epoch = seen, epoch

    def _check_epoch(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute("SELECT epoch FROM identity_epoch").fetchone()
        epoch = int(row[0]) if row else 0
        if self._epoch is not None and epoch != self._epoch:
            raise IdentityStale("an unmerge or an erasure moved the identity graph")
        return epoch

    def _sync_identity(self, conn: psycopg.Connection[Any], batch: Any) -> tuple[int, int]:
        """Under the identity lock: fold what other workers committed since this one last
        looked into its graph and ``batch``; refuse if they took rows away (Redo)."""
        lock_identity(conn)
        epoch = self._check_epoch(conn)
        found = [(edges.decode(e), ms, ev) for e, ms, ev in conn.execute(
            "SELECT edge, claim_ms, claim_event FROM identity_edges WHERE seq > %s"
            " ORDER BY seq", (self._seen_seq,))]
        bases = conn.execute("SELECT base, kind, value FROM identity_bases WHERE seq > %s"
                             " ORDER BY seq", (self._seen_seq,)).fetchall()
        # a batch resolved while an earlier one folded rows in (the projector resolves the
        # next batch while one commits) is rewritten from the graph as it is now
        if self.keeper is not None and (found or bases
                                        or batch.folds_seen != self.keeper.folds):
            self.keeper.fold_foreign(found, bases, batch)  # type: ignore[arg-type]
        return self._seen_seq, epoch

    def _write_projection(self, conn: psycopg.Connection[Any], state: TimelineState,
                          ) -> list[TimelineEntry]:
        """Returns the entries the timeline did not hold yet: only they add to figures."""
        cur = conn.cursor()
        insert_many(cur, "INSERT INTO identifiers (kind, value, customer_id, strong, display,"
                    " display_ms, display_event)", "text text text bool text int8 text",
                    sorted((k, v, cid, bool(strong), *_display(state.displays, (k, v)))
                           for (k, v), (cid, strong) in state.new_identifiers.items()),
                    "ON CONFLICT (kind, value) DO UPDATE SET customer_id=excluded.customer_id,"
                    " strong=TRUE WHERE excluded.strong AND NOT identifiers.strong")
        # an identifier already stored shows the earliest form any batch brought
        older = [(k, v, shown, ms, ev) for (k, v), (ms, ev, shown) in state.displays.items()
                 if (k, v) not in state.new_identifiers]
        if older:
            cur.execute(
                "UPDATE identifiers AS i SET display=u.d, display_ms=u.ms, display_event=u.ev"
                " FROM unnest(%b::text[], %b::text[], %b::text[], %b::int8[], %b::text[])"
                " AS u(k, v, d, ms, ev) WHERE i.kind=u.k AND i.value=u.v"
                " AND (i.display IS NULL OR (i.display_ms IS NOT NULL"
                " AND (u.ms, u.ev) < (i.display_ms, i.display_event)))",
                # planned for each call (not prepared): a join over arrays planned while
                # the table was small would scan it on as it grows
                [list(c) for c in zip(*older, strict=True)], prepare=False)
        # the id split here (split_event_id: as event_uuid would, one regex a row less
        # in the server), the uuid's text parsed by the server's cast
        columns = list(zip(*[
            (*split_event_id(e.event_id), e.customer_id, e.occurred_ms,
             *compact_time(e.occurred_at, e.occurred_ms),
             e.received_at, e.type, e.channel, e.source, e.agent_id, e.queue, e.case_id,
             _payload_json(e.payload), e.key_id) for e in state.entries], strict=True))
        # one statement; a repeat within the batch is skipped like a row already stored
        inserted = [] if not columns else [eid for (eid,) in cur.execute(
            "INSERT INTO timeline_rows (eid, etext, customer_id, occurred_ms, occurred_at,"
            " occurred_tz, received_at, type, channel, source, agent_id, queue, case_id,"
            " payload, key_id) SELECT e::uuid, et, c, ms, at, tz, r, t, ch,"
            " s, a, q, cs, p::jsonb, k FROM unnest(%b::text[], %b::text[], %b::text[],"
            " %b::int8[], %b::text[], %b::int2[], %b::int8[], %b::text[], %b::text[],"
            " %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
            " AS u(e, et, c, ms, at, tz, r, t, ch, s, a, q, cs, p, k)"
            f" ON CONFLICT DO NOTHING RETURNING {EVENT_ID}", [list(c) for c in columns])]
        insert_many(cur, "INSERT INTO customers", "text text int8 text",
                    sorted((cid, name, ms, ev) for cid, (ms, ev, name) in state.names.items()),
                    "ON CONFLICT (customer_id) DO UPDATE SET name=excluded.name,"
                    " name_ms=excluded.name_ms, name_event=excluded.name_event"
                    " WHERE (excluded.name_ms, excluded.name_event)"
                    " > (customers.name_ms, customers.name_event)")
        return figures.fresh(state.entries, inserted)

    def _write_cases(self, conn: psycopg.Connection[Any],
                     rows: Sequence[dict[str, Any]]) -> None:
        """The newest state of each case; an older event never overwrites a newer one."""
        newest: dict[str, dict[str, Any]] = {}  # one row a case in the statement
        for r in rows:
            if r["case_id"] not in newest or r["version"] > newest[r["case_id"]]["version"]:
                newest[r["case_id"]] = r
        insert_many(
            conn.cursor(), "INSERT INTO cases",
            "text text text text text text text text text int8 int8 int8 int8 int8",
            [(r["case_id"], r["customer_id"], r["status"], r["priority"], r["channel"],
              r["queue"], r["agent_id"], r["policy"],
              r["data"].get("opened_at", r["occurred_at"]),
              int(r["data"].get("opened_ms", r["occurred_ms"])),
              _int_or_none(r["data"].get("first_response_ms")),
              _int_or_none(r["data"].get("resolved_ms")), r["version"], r["occurred_ms"])
             for _, r in sorted(newest.items())],
            "ON CONFLICT (case_id) DO UPDATE SET"
            " status=excluded.status, priority=excluded.priority, queue=excluded.queue,"
            " agent_id=excluded.agent_id, first_response_ms=excluded.first_response_ms,"
            " resolved_ms=excluded.resolved_ms, version=excluded.version,"
            " updated_ms=excluded.updated_ms WHERE excluded.version > cases.version")

    def refresh_figures(self, now: int | None = None) -> dict[str, int]:
        """The periodic job (streams/app.py): what the clock moved, and the base-wide RFM;
        in a scores child when there are (its Python off the worker's GIL)."""
        if self.scorer is not None:
            return self.scorer.refresh(now)
        return self.figures.refresh(self.db, now)

    def rebuild_figures_if_pending(self) -> bool:
        """At start: build the figures from the timeline if migration 4 asked for it."""
        return self.figures.rebuild_if_pending(self.db)

    def reset_projections(self) -> None:
        """Forget every projection row and this consumer's offsets (for a replay)."""
        with self.db.tx() as conn:
            conn.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}")
            conn.execute("DELETE FROM offsets WHERE consumer=%s", (self.consumer,))
            bump_identity_epoch(conn)

    def archived(self) -> Iterable[ArchivedRecord]:
        return archived(self.db)


@dataclass(frozen=True, slots=True)
class Subject:
    """A customer as the read paths see it: the survivor of merges (``id``) and the base
    customers its rows are keyed by (``members``; ``[id]`` when nothing was merged)."""

    id: str
    members: list[str]


# the first that answers: the id's link, the id being a survivor, the id as an identifier
_RESOLVE = ("COALESCE((SELECT survivor FROM customer_links WHERE base=%(c)s),"
            " (SELECT %(c)s::text WHERE EXISTS (SELECT 1 FROM customer_links"
            " WHERE survivor=%(c)s)), (SELECT customer_id FROM identifiers"
            " WHERE kind='id' AND value=%(c)s))")
_SUBJECT = (f"SELECT s.cid, ARRAY(SELECT base FROM customer_links WHERE survivor=s.cid"
            f" ORDER BY base) FROM (SELECT {_RESOLVE}) AS s(cid)")
_TIMELINE_COLUMNS = ("event_id, occurred_ms, occurred_at, received_at, type, channel, source,"
                     " agent_id, queue, case_id, payload")

Conn = psycopg.Connection[Any]


class ReadStore:
    """The API's side: read-only queries. A read path takes one connection in autocommit
    (``reading()``: no BEGIN, COMMIT or check round trip) and pipelines what it can: the
    customer view is two round trips (adapters/insights.py ``customer_view``), the
    timeline two."""

    def __init__(self, db: Database, privacy: Privacy | None = None) -> None:
        self.db = db
        # opens the tokens of encrypted fields for the reader (adapters/privacy.py)
        self.privacy = privacy

    def reading(self) -> AbstractContextManager[Conn]:
        return self.db.autocommit()

    def resolve(self, customer_id: str) -> str | None:
        """The customer (survivor of merges) behind any id it was ever known by."""
        found = self.db.scalar(f"SELECT {_RESOLVE}", {"c": customer_id})
        return str(found) if found is not None else None

    def subject(self, asked: str, conn: Conn | None = None) -> Subject | None:
        """``resolve`` and ``members`` in one statement; None for an unknown id."""
        sql, args = _SUBJECT, {"c": asked}
        row = conn.execute(sql, args).fetchone() if conn else self.db.one(sql, args)
        if row is None or row[0] is None:
            return None
        return Subject(str(row[0]), list(row[1]) or [str(row[0])])

    def members(self, cid: str, conn: Conn | None = None) -> list[str]:
        """The base customers merged into ``cid``: rows are keyed by these. With ``conn``,
        inside the caller's connection."""
        sql = "SELECT base FROM customer_links WHERE survivor=%s ORDER BY base"
        found = conn.execute(sql, (cid,)).fetchall() if conn else self.db.all(sql, (cid,))
        bases = [b for (b,) in found]
        return bases or [cid]

    def lookup(self, kind: str, value: str) -> str | None:
        return self.db.scalar("SELECT customer_id FROM identifiers WHERE kind=%s AND value=%s",
                              (kind, value))

    def customer_reads(self, conn: Conn, who: Subject) -> Callable[[], dict[str, Any]]:
        """Sends the view's own block's reads on ``conn`` (in the caller's pipeline); the
        function returned builds the block once their results are in."""
        idents = conn.execute("SELECT kind, value, display FROM identifiers"
                              " WHERE customer_id=%s ORDER BY kind, value", (who.id,))
        channels = conn.execute("SELECT channel, interactions, last_ms, last_event,"
                                " coalesce(last_at, event_time(last_ms, last_tz))"
                                " FROM customer_channels WHERE base = ANY(%s)", (who.members,))
        named = conn.execute("SELECT name FROM customers WHERE customer_id = ANY(%s)"
                             " ORDER BY name_ms DESC, name_event DESC LIMIT 1", (who.members,))

        def build() -> dict[str, Any]:
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
            name = named.fetchone()
            return {
                "id": who.id,
                "identifiers": {"id": ids, **identifiers},
                "name": self._open(name[0]) if name else None,
                "interaction_counts": counts,
                "interactions_total": sum(counts.values()),
                "last_contact_at": latest[2] if latest else None,
            }
        return build

    def open_cases_reads(self, conn: Conn, who: Subject,
                         ) -> Callable[[], list[dict[str, Any]]]:
        """As ``customer_reads``: the customer's unresolved cases, newest first."""
        cur = conn.execute(
            "SELECT case_id, status, priority, channel, queue, agent_id, opened_at FROM"
            " cases WHERE customer_id = ANY(%s) AND status<>'resolved'"
            " ORDER BY opened_ms DESC, case_id", (who.members,))
        return lambda: [{"id": c, "status": s, "priority": p, "channel": ch, "queue": q,
                         "agent_id": a, "opened_at": o}
                        for c, s, p, ch, q, a, o in cur.fetchall()]

    def timeline(self, who: str | Subject, *, limit: int, before: tuple[int, str] | None,
                 channels: list[str], types: list[str], as_of_ms: int | None,
                 conn: Conn | None = None) -> list[dict[str, Any]]:
        """A page of the customer's timeline, newest first; ``who`` a survivor's id or its
        ``Subject`` (then one statement)."""
        if conn is None:
            with self.reading() as own:
                return self.timeline(who, limit=limit, before=before, channels=channels,
                                     types=types, as_of_ms=as_of_ms, conn=own)
        bases = who.members if isinstance(who, Subject) else self.members(who, conn)
        sql = [f"SELECT {_TIMELINE_COLUMNS} FROM timeline WHERE customer_id = ANY(%s)"]
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
        for (eid, ms, at, recv, typ, ch, src, agent, queue, case, payload) in conn.execute(
                " ".join(sql), args).fetchall():
            out.append({"event_id": eid, "occurred_ms": ms, "occurred_at": at,
                        "received_at": recv, "type": typ, "channel": ch, "source": src,
                        "agent_id": agent, "queue": queue, "case_id": case,
                        "payload": self._open_payload(payload)})
        return out

    def _open(self, value: Any) -> Any:
        return self.privacy.open(value) if self.privacy is not None else value

    def _open_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.privacy.open_payload(payload) if self.privacy is not None else payload

    def count_events(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM timeline"))

    def has_event(self, event_id: str) -> bool:
        return self.db.one(f"SELECT 1 FROM timeline_rows WHERE {EVENT_IS}",
                           (event_id, event_id)) is not None
