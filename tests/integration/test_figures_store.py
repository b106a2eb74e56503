"""The figures the worker keeps (migration 4) through the real broker and database: after a
run with duplicates on the topic, redeliveries, merges and cases, every aggregate row
equals a fold of the timeline rows and every score the pure functions over them; a replay,
a rebuild from the timeline and an erasure leave them so; the periodic refresh keeps every
stored figure equal to what the clock says."""

from __future__ import annotations

import concurrent.futures
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from contactstream.adapters import bootstrap, erasure, kafka, readstore
from contactstream.adapters.config import Settings
from contactstream.adapters.control import ControlStore, NewAlert
from contactstream.adapters.database import Database
from contactstream.adapters.figurestore import (
    COMPACT_MIN,
    COMPACT_SHARE,
    COMPACTED,
    FIGURE_TABLES,
    TIMELINE_COLUMNS,
    FigureWriter,
    channel_last,
    parse_rates,
    shown_windows,
    timeline_entry,
)
from contactstream.adapters.ingest import Ingestor
from contactstream.adapters.journal import IngestJournal
from contactstream.adapters.privacy import privacy
from contactstream.projections import figures, scores
from contactstream.streams.sla import ManualClock
from tests.helpers import dump_tables

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
RATES = parse_rates("", "EUR")


def population(n: int = 500, customers: int = 40, seed: int = 8) -> list[dict[str, Any]]:
    """Customers known first by e-mail alone and later by their id too (merges), surveys
    about cases whose agent comes from other rows, purchases in three currencies (one
    without a rate), complaints, consent; event times out of order and some in the future."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randrange(customers)
        who: dict[str, str] = {"email": f"person{k}@example.com"}
        if i > n // 3 or k % 3:
            who["id"] = f"c-{k:03d}"
        at = NOW - timedelta(seconds=rng.randrange(-2 * 86400, 200 * 86400))
        e = {"event_id": f"fs-{i}", "occurred_at": at.isoformat(), "source": "gen",
             "customer": who, "channel": rng.choice(["voice", "email", "chat"]),
             "agent_id": rng.choice(["agent-1", "agent-2", None]),
             "queue": rng.choice(["billing", None]),
             "case_id": rng.choice([None, None, f"case-{rng.randrange(12)}"])}
        roll = rng.random()
        if roll < 0.35:
            kind = rng.choice(["csat", "nps", "ces"])
            e.update(type="survey.answered", payload={
                "kind": kind, "score": rng.randint(0 if kind == "nps" else 1,
                                                   {"csat": 5, "nps": 10, "ces": 7}[kind])})
        elif roll < 0.55:
            e.update(type="purchase.completed", payload={
                "amount": str(Decimal(rng.randrange(100, 90_000)) / 100),
                "currency": rng.choice(["EUR", "HUF", "SEK"]), "order_id": f"o{i}"})
        elif roll < 0.65:
            e.update(type="complaint.filed", payload={"category": "billing",
                                                      "priority": "normal", "description": "x"})
        elif roll < 0.72:
            e.update(type="consent.changed", payload={
                "channel": "email", "purpose": "marketing", "granted": rng.random() < 0.5})
        else:
            e.update(type="call.started", payload={"direction": "inbound"})
        out.append(e)
    return out


async def _run(settings: Settings, clock: ManualClock, batches: list[list[dict[str, Any]]],
               repeat: int = 60) -> bootstrap.WorkerServices:
    """Ingest each batch, put ``repeat`` already-produced records on the topic once more (a
    producer's retry), and let the projector read to the end."""
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    services = await bootstrap.worker_services(settings, clock=clock)
    ingestor = Ingestor(settings, services.producer, bootstrap.codec(settings, services.db),
                        IngestJournal(services.db), privacy(settings, services.db))
    for batch in batches:
        assert (await ingestor.publish(batch)).rejected == []
        for rec in list(IngestJournal(services.db).records())[:repeat]:
            await services.producer.send_and_wait(rec.topic, rec.value, key=rec.key)
        await services.projector.run(group=False, until_end=True)
    return services


def _timeline(db: Database) -> list[Any]:
    return [timeline_entry(r) for r in db.all(f"SELECT {TIMELINE_COLUMNS} FROM timeline")]


def _expected_aggregates(db: Database) -> dict[str, set[tuple[Any, ...]]]:
    """Every aggregate table as one fold of the timeline's rows would have it."""
    d = figures.fold(_timeline(db))
    eff = {s.event_id: figures.effective(s, d.owners.get(s.case_id or "")) for s in d.surveys}
    buckets = figures.bucket_changes((s, eff[s.event_id]) for s in d.surveys)
    return {
        "customer_channels": {(b, ch, c.interactions, *channel_last(c.last))
                              for (b, ch), c in d.channels.items()},
        "customer_surveys": {(s.base, s.event_id, s.occurred_ms, s.kind, s.score, s.channel,
                              s.agent_id, s.queue, s.case_id, *eff[s.event_id])
                             for s in d.surveys},
        "customer_satisfaction": {(b, k, t.responses, t.good, t.bad, t.total)
                                  for (b, k), t in d.satisfaction.items()},
        "customer_revenue": {(b, c, m.amount, m.purchases, m.last_ms)
                             for (b, c), m in d.revenue.items()},
        "customer_consent": {(b, ch, p, c.granted, c.occurred_ms, c.event_id, c.occurred_at,
                              c.source) for (b, ch, p), c in d.consent.items()},
        "case_owners": {(c, *_triple(o.agent), *_triple(o.queue)) for c, o in d.owners.items()},
        "survey_days": {(*k, t.responses, t.good, t.bad, t.total) for k, t in buckets.items()},
    }


def _triple(x: tuple[int, str, str] | None) -> tuple[Any, Any, Any]:
    return (x[2], x[0], x[1]) if x else (None, None, None)


AGGREGATES = ("customer_channels", "customer_surveys",
              "customer_satisfaction", "customer_revenue", "customer_consent", "case_owners",
              "survey_days")


def _stored_aggregates(db: Database) -> dict[str, set[tuple[Any, ...]]]:
    return {t: set(db.all(f"SELECT * FROM {t}")) for t in AGGREGATES}


def _expected_scores(db: Database, at: int) -> dict[str, tuple[Any, ...]]:
    """Every customer's stored figures as the pure functions give them at ``at``, from the
    timeline, the links, the cases and the SLA breaches."""
    d = figures.fold(_timeline(db))
    links = dict(db.all("SELECT base, survivor FROM customer_links"))  # type: ignore[arg-type]
    links.update(db.all("SELECT pseudonym, grp FROM erased_groups"))  # type: ignore[arg-type]
    owner = {b: links.get(b, b) for b in d.bases}
    act: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for b, ms, _, kind in d.activity:
        act[owner[b]].append((ms, kind))
    answers: dict[str, list[tuple[str, int, str, int]]] = defaultdict(list)
    for s in d.surveys:
        answers[owner[s.base]].append((s.event_id, s.occurred_ms, s.kind, s.score))
    money: dict[str, dict[str, tuple[Decimal, int, int]]] = defaultdict(dict)
    for (b, cur), m in d.revenue.items():
        held = money[owner[b]].get(cur, (Decimal(0), 0, m.last_ms))
        money[owner[b]][cur] = (held[0] + m.amount, held[1] + m.purchases,
                                max(held[2], m.last_ms))
    open_cases: dict[str, int] = defaultdict(int)
    breaches: dict[str, list[int]] = defaultdict(list)
    first_breach: dict[str, int] = {}  # case -> its first breach's deadline
    for case_id, due in db.all("SELECT case_id, COALESCE(due_at, at) FROM alerts"
                               " WHERE kind='sla.breached'"):
        ms = int(datetime.fromisoformat(due).timestamp() * 1000)
        first_breach[case_id] = min(ms, first_breach.get(case_id, ms))
    for case_id, base, status in db.all("SELECT case_id, customer_id, status FROM cases"):
        open_cases[links.get(base, base)] += status != "resolved"
        if case_id in first_breach:
            breaches[links.get(base, base)].append(first_breach[case_id])
    facts = {c: scores.CustomerFacts(a, answers[c], money[c], open_cases[c], breaches[c])
             for c, a in act.items()}
    rfm, _ = scores.base_rfm({c: f.value_facts("EUR", RATES) for c, f in facts.items()}, at)
    out = {}
    for c, f in facts.items():
        s = scores.scores(f, at, None, "EUR", RATES)
        r = rfm[c]
        out[c] = (s.valid_until, s.windows, s.churn.score, s.churn.factors, s.worth.monetary,
                  s.worth.frequency, s.worth.last_purchase_ms, r.segment, r.recency_days, r.r,
                  r.f, r.m)
    return out


def _stored_scores(db: Database) -> dict[str, tuple[Any, ...]]:
    # the windows as the view reads them back (stored: only the kinds with answers)
    return {row[0]: (row[1], shown_windows(row[2]), *row[3:]) for row in db.all(
        "SELECT customer_id, valid_until, windows, churn_score, churn_factors, revenue,"
        " purchases, last_purchase_ms, segment, recency_days, r, f, m FROM customer_scores")}


async def test_figures_equal_a_fold_of_the_timeline_and_survive_a_replay(
        settings: Settings) -> None:
    events = population()
    rng = random.Random(3)
    shuffled = rng.sample(events, len(events))
    clock = ManualClock(NOW)
    services = await _run(settings, clock, [shuffled[:300], shuffled[300:] + shuffled[:40]])
    db = services.db
    try:
        assert db.scalar("SELECT COUNT(*) FROM timeline") == len(events)
        assert db.scalar("SELECT COUNT(*) FROM customer_links WHERE base <> survivor") > 0
        assert db.scalar("SELECT COUNT(*) FROM case_owners") > 0
        assert _stored_aggregates(db) == _expected_aggregates(db)
        assert _stored_scores(db) == _expected_scores(db, NOW_MS)
        live = dump_tables(db.url, FIGURE_TABLES)

        # a replay from the log with the same clock: the same rows, byte for byte
        services.writer.reset_projections()
        services.projector.dead_letter = False
        await services.projector.run(group=False, until_end=True)
        assert dump_tables(db.url, FIGURE_TABLES) == live

        # asked to build them from the timeline (an upgrade, an import): the same rows
        db.execute("INSERT INTO base_figures VALUES ('rebuild', 0, '{}')")
        assert services.writer.rebuild_figures_if_pending()
        assert not services.writer.rebuild_figures_if_pending()
        assert dump_tables(db.url, FIGURE_TABLES) == live
    finally:
        await services.close()


async def test_small_batches_committed_in_a_pipeline_leave_the_rows_a_plain_commit_does(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of up to PIPELINE_MAX_RECORDS go in one pipeline (adapters/readstore.py):
    the same rows as each statement waited for, merges included."""
    taken: list[bool] = []
    decide = readstore.pipelined

    def spied(changes: Any) -> bool:
        taken.append(decide(changes))
        return taken[-1]

    monkeypatch.setattr(readstore, "pipelined", spied)
    tables = (*FIGURE_TABLES, "timeline", "identifiers", "customer_links", "customers")
    clock = ManualClock(NOW)
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    services = await bootstrap.worker_services(settings, clock=clock)
    services.projector.max_records = 40  # batches as a steady load makes them
    try:
        ingestor = Ingestor(settings, services.producer,
                            bootstrap.codec(settings, services.db),
                            IngestJournal(services.db), privacy(settings, services.db))
        assert (await ingestor.publish(population())).rejected == []
        await services.projector.run(group=False, until_end=True)
        assert taken and all(taken)  # every batch went in a pipeline
        assert services.db.scalar("SELECT COUNT(*) FROM customer_links"
                                  " WHERE base <> survivor") > 0  # merges among them
        pipelined = dump_tables(services.db.url, tables)

        # the same log again, a statement at a time
        monkeypatch.setattr(readstore, "PIPELINE_MAX_RECORDS", -1)
        taken.clear()
        services.writer.reset_projections()
        services.projector.dead_letter = False
        await services.projector.run(group=False, until_end=True)
        assert taken and not any(taken)
        assert dump_tables(services.db.url, tables) == pipelined
    finally:
        await services.close()


async def test_an_erasure_moves_the_figures_with_the_rows(settings: Settings) -> None:
    clock = ManualClock(NOW)
    services = await _run(settings, clock, [population(300, 20, seed=4)])
    db = services.db
    try:
        survivor = db.scalar("SELECT survivor FROM customer_links WHERE base <> survivor"
                             " ORDER BY survivor LIMIT 1")
        bases = [b for (b,) in db.all("SELECT base FROM customer_links WHERE survivor=%s",
                                      (survivor,))]
        keys = [k for (k,) in db.all("SELECT DISTINCT key_id FROM timeline WHERE customer_id"
                                     " = ANY(%s) AND key_id IS NOT NULL", (bases,))]
        report = dump_tables(db.url, ("survey_days", "case_owners"))
        revenue = db.scalar("SELECT SUM(revenue) FROM customer_scores")
        erasure.purge(db, survivor, bases, keys, services.writer.figures)
        assert db.scalar("SELECT COUNT(*) FROM customer_scores WHERE customer_id = ANY(%s)",
                         (bases,)) == 0
        assert _stored_aggregates(db) == _expected_aggregates(db)
        assert dump_tables(db.url, ("survey_days", "case_owners")) == report
        services.writer.refresh_figures(NOW_MS)
        assert _stored_scores(db) == _expected_scores(db, NOW_MS)
        assert db.scalar("SELECT SUM(revenue) FROM customer_scores") == revenue
    finally:
        await services.close()


async def test_the_periodic_refresh_keeps_every_figure_as_the_clock_says(
        settings: Settings) -> None:
    clock = ManualClock(NOW)
    services = await _run(settings, clock, [population(300, 25, seed=5)])
    db = services.db
    try:
        for days in (1, 8, 31, 95):
            later = NOW_MS + days * 86_400_000
            done = services.writer.refresh_figures(later)
            assert done["stale"] > 0  # answers left windows, recency moved on
            # refreshed or not, every stored figure is what the clock says now
            assert _stored_scores(db) == _expected_scores(db, later), days
    finally:
        await services.close()


async def test_a_breached_case_weighs_on_churn_for_90_days(settings: Settings) -> None:
    """A case breached 100 days ago no longer counts; one breached 85 days ago counts until
    its 90 days are over, and the periodic refresh takes it out then."""
    clock = ManualClock(NOW)
    calls = [{"event_id": f"br-{who}-{i}", "type": "call.started", "source": "pbx",
              "occurred_at": (NOW - timedelta(days=3 + 7 * i)).isoformat(),
              "customer": {"id": who}, "channel": "voice", "agent_id": None, "queue": None,
              "case_id": None, "payload": {"direction": "inbound"}}
             for who in ("c-long-ago", "c-lately") for i in range(10)]
    services = await _run(settings, clock, [calls], repeat=0)
    db = services.db
    try:
        control = ControlStore(db)
        for who, days in (("c-long-ago", 100), ("c-lately", 85)):
            due = NOW - timedelta(days=days, microseconds=400)  # ms: the stored figure's floor
            db.execute("INSERT INTO cases VALUES (%s,%s,'resolved','high','voice',NULL,NULL,"
                       "'p',%s,%s,NULL,NULL,3,%s)", (
                           f"case-{who}", who, (due - timedelta(hours=1)).isoformat(),
                           int(due.timestamp() * 1000) - 3_600_000, int(due.timestamp() * 1000)))
            assert control.add_alert(NewAlert(
                id=f"case-{who}:first_response#1:sla.breached", kind="sla.breached",
                at=(due + timedelta(seconds=1)).isoformat(), level="critical",
                case_id=f"case-{who}", customer_id=who, metric="first_response",
                due_at=due.isoformat())) is not None

        def factors(who: str) -> list[str]:
            return db.scalar("SELECT churn_factors FROM customer_scores WHERE customer_id=%s",
                             (who,))

        assert services.writer.refresh_figures(NOW_MS)["breached"] == 2
        assert "1 case past its SLA" not in factors("c-long-ago")
        assert "1 case past its SLA" in factors("c-lately")
        assert _stored_scores(db) == _expected_scores(db, NOW_MS)
        later = NOW_MS + 5 * 86_400_000 + 1  # c-lately's breach is 90 days old
        services.writer.refresh_figures(later)
        assert "1 case past its SLA" not in factors("c-lately")
        assert _stored_scores(db) == _expected_scores(db, later)
    finally:
        await services.close()


async def test_scores_of_a_backlog_are_scored_once_a_round_and_none_is_lost(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the batch path (migration 11): batches of a backlog only queue their customers;
    a round scores each queued customer once however many batches touched it, the
    projector's idle look leaves nothing queued, and what a worker queued and never scored
    (it died) is scored by the periodic refresh."""
    monkeypatch.setattr(readstore, "SCORE_EVERY_S", 3600.0)  # none due while batches come
    rounds: list[int] = []
    score_queued = FigureWriter.score_queued

    def counted(self: FigureWriter, db: Database, *args: Any) -> int:
        rounds.append(score_queued(self, db, *args))
        return rounds[-1]

    monkeypatch.setattr(FigureWriter, "score_queued", counted)
    clock = ManualClock(NOW)
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    services = await bootstrap.worker_services(settings, clock=clock)
    ingestor = Ingestor(settings, services.producer, bootstrap.codec(settings, services.db),
                        IngestJournal(services.db), privacy(settings, services.db))
    db = services.db
    try:
        assert (await ingestor.publish(population(400, 30, seed=6))).rejected == []
        services.projector.max_records = 40  # many batches, mostly the same customers
        services.projector.refresh_figures = None  # its round would empty the queue too
        batches = Counter[int]()
        await services.projector.run(group=False, until_end=True,
                                     on_batch=lambda p: batches.update([p.records]))
        customers = db.scalar("SELECT COUNT(DISTINCT customer_id) FROM timeline")
        assert len(batches) >= 8
        # the first batch at once (nothing was due yet), the rest in one round at the end
        assert len(rounds) <= 3 and sum(rounds) < 2 * customers + 10, rounds
        assert db.scalar("SELECT COUNT(*) FROM score_queue") == 0
        assert services.writer.refresh_figures(NOW_MS)["queued"] == 0  # the RFM bounds
        assert _stored_scores(db) == _expected_scores(db, NOW_MS)

        # a worker that committed its batches and died before their round
        lost = [c for (c,) in db.all("SELECT customer_id FROM customer_scores"
                                     " ORDER BY customer_id LIMIT 7")]
        db.execute("DELETE FROM customer_scores WHERE customer_id = ANY(%s)", (lost,))
        db.execute("INSERT INTO score_queue (customer_id) SELECT unnest(%s::text[])", (lost,))
        assert services.writer.refresh_figures(NOW_MS)["queued"] == len(lost)
        assert _stored_scores(db) == _expected_scores(db, NOW_MS)
    finally:
        await services.close()


def test_a_round_leaves_an_id_a_batch_queued_and_has_not_committed(db: Database) -> None:
    """A batch that queues a customer already queued keeps the row locked until it commits:
    a round meanwhile would read the customer's facts without the batch's and take the row
    off the queue, and the batch's facts would never be scored."""
    figures_ = FigureWriter(clock=lambda: NOW_MS)
    db.execute("INSERT INTO score_queue (customer_id) VALUES ('c-1'), ('c-2')")  # before
    with db.tx() as batch:  # a batch with new facts of c-1, not committed yet
        figures_.write(batch, [], touched=["c-1"])
        assert figures_.score_queued(db) == 1  # c-2 alone
        assert db.all("SELECT customer_id FROM score_queue") == [("c-1",)]
    assert db.all("SELECT customer_id FROM score_queue") == [("c-1",)]  # for the next round
    assert figures_.score_queued(db) == 1
    assert db.scalar("SELECT COUNT(*) FROM score_queue") == 0


def test_ids_a_dead_round_claimed_are_claimed_again_once_the_claim_expired(
        db: Database) -> None:
    figures_ = FigureWriter(clock=lambda: NOW_MS)
    db.execute("INSERT INTO score_queue VALUES ('c-dead', 'r-dead', now() - interval '2 min'),"
               " ('c-busy', 'r-busy', now()), ('c-new', NULL, NULL)")
    assert figures_.score_queued(db) == 2  # the expired claim and the new id
    assert db.all("SELECT customer_id FROM score_queue") == [("c-busy",)]  # still claimed
    with db.tx() as batch:  # queued again by a batch: the claim is cleared for a next round
        figures_.write(batch, [], touched=["c-busy"])
    assert figures_.score_queued(db) == 1
    assert db.scalar("SELECT COUNT(*) FROM score_queue") == 0


def test_a_round_waits_for_an_erasure_under_way_and_writes_no_score_back(
        db: Database) -> None:
    """An erasure moves the identity epoch first in its transaction; a round that starts
    meanwhile reads the facts only once the erasure committed, so it does not write back
    the scores of the person the erasure forgot."""
    figures_ = FigureWriter(clock=lambda: NOW_MS)
    db.execute("INSERT INTO timeline_rows (etext, customer_id, occurred_ms, occurred_at,"
               " received_at, type, channel, source, payload) VALUES ('e-1','c-gone',%s,"
               "'2026-11-20T00:00:00+00:00',0,'call.started','voice','t','{}'::jsonb)",
               (NOW_MS,))
    db.execute("INSERT INTO score_queue (customer_id) VALUES ('c-gone')")
    with concurrent.futures.ThreadPoolExecutor(1) as pool, db.tx() as erasure:
        erasure.execute("UPDATE identity_epoch SET epoch = epoch + 1")
        erasure.execute("DELETE FROM timeline WHERE customer_id = 'c-gone'")
        round_ = pool.submit(figures_.score_queued, db)
        with pytest.raises(concurrent.futures.TimeoutError):
            round_.result(timeout=0.5)  # waits for the erasure
        erasure.commit()
        assert round_.result(timeout=10) == 1
    assert db.scalar("SELECT COUNT(*) FROM customer_scores") == 0


async def test_a_rescore_that_moves_nothing_shown_leaves_the_row_as_it_was(
        settings: Settings) -> None:
    """No new row version for the instant alone (only ``as_of`` would change); a rescore
    that moves a figure writes one."""
    services = await _run(settings, ManualClock(NOW), [population()[:200]], repeat=0)
    db, writer = services.db, services.writer.figures
    shown = ("customer_id, xmin::text, valid_until, windows, churn_score, churn_factors,"
             " revenue, purchases, last_purchase_ms, segment, recency_days, r, f, m")
    try:
        before = {r[0]: r[1:] for r in db.all(f"SELECT {shown} FROM customer_scores")}
        assert len(before) > 5
        with db.tx() as conn:  # the same facts at the same instant
            writer.rescore(conn, sorted(before), NOW_MS)
        same = {r[0]: r[1:] for r in db.all(f"SELECT {shown} FROM customer_scores")}
        assert same == before  # xmin included: nothing was written
        with db.tx() as conn:  # half a year on: recency, windows and risk move
            writer.rescore(conn, sorted(before), NOW_MS + 180 * 86_400_000)
        later = {r[0]: r[1:] for r in db.all(f"SELECT {shown} FROM customer_scores")}
        moved = {c for c in before if later[c][1:] != before[c][1:]}
        assert moved
        assert {c for c in before if later[c][0] != before[c][0]} == moved
    finally:
        await services.close()


def _vacuums(db: Database) -> dict[str, int]:
    return dict(db.all("SELECT relname, vacuum_count FROM pg_stat_user_tables"
                       " WHERE relname = ANY(%s)", (list(COMPACTED),)))


def test_rounds_vacuum_the_tables_they_churn_once_they_rescored_enough(db: Database) -> None:
    figures_ = FigureWriter(clock=lambda: NOW_MS)
    before = _vacuums(db)
    db.execute("INSERT INTO score_queue (customer_id) SELECT 'c-' || i"
               " FROM generate_series(1, %s) AS i", (COMPACT_MIN - 1,))
    assert figures_.score_queued(db) == COMPACT_MIN - 1
    assert figures_.churned == COMPACT_MIN - 1  # not yet
    assert _vacuums(db) == before
    db.execute("INSERT INTO score_queue (customer_id) VALUES ('c-last')")
    assert figures_.score_queued(db) == 1
    assert figures_.churned == 0
    after = _vacuums(db)
    assert all(after[t] == before[t] + 1 for t in COMPACTED), (before, after)
    # the queue's dead rows (each id inserted, claimed, deleted) are gone
    assert db.scalar("SELECT n_dead_tup FROM pg_stat_user_tables"
                     " WHERE relname = 'score_queue'") == 0


def test_a_vacuum_waits_for_a_share_of_the_score_rows(db: Database) -> None:
    figures_ = FigureWriter(clock=lambda: NOW_MS)
    db.execute("INSERT INTO customer_scores (customer_id, as_of, windows, churn_score,"
               " churn_factors, revenue, purchases, rfm_as_of, segment) SELECT 'c-' || i,"
               " 0, '{}', 0, '[]', 0, 0, 0, 'prospect' FROM generate_series(1, 20000) AS i")
    db.execute("ANALYZE customer_scores")  # reltuples: 20,000 rows, a share is 4,000
    figures_.churned = COMPACT_MIN
    assert not figures_.compact(db)
    figures_.churned = int(COMPACT_SHARE * 20000)
    assert figures_.compact(db)
    assert figures_.churned == 0
