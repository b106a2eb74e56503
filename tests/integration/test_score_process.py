"""Rounds of scores in a process of their own (adapters/scoring.py): a worker on the
system clock scores what its batches queue in the child, not in its own process; the
child outlives a Ctrl-C of the process group, and one that died is replaced at the next
round, nothing queued lost."""

from __future__ import annotations

import os
import signal

import pytest

from contactstream.adapters import bootstrap, kafka
from contactstream.adapters.config import Settings
from contactstream.adapters.database import Database
from contactstream.adapters.demo import synthetic_events
from contactstream.adapters.ingest import Ingestor
from contactstream.adapters.journal import IngestJournal
from contactstream.adapters.privacy import privacy
from contactstream.adapters.readstore import ReadStoreWriter

pytestmark = pytest.mark.integration


def _scored(db: Database) -> set[str]:
    return {c for (c,) in db.all("SELECT customer_id FROM customer_scores")}


def _survivors(db: Database) -> set[str]:
    """The customers the timeline's rows belong to now."""
    return {c for (c,) in db.all(
        "SELECT DISTINCT COALESCE(l.survivor, t.customer_id) FROM timeline t"
        " LEFT JOIN customer_links l ON l.base = t.customer_id")}


async def test_rounds_run_in_a_child_that_is_replaced_when_it_dies(settings: Settings) -> None:
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    services = await bootstrap.worker_services(settings)  # the system clock: a child
    writer: ReadStoreWriter = services.writer
    ingestor = Ingestor(settings, services.producer, bootstrap.codec(settings, services.db),
                        IngestJournal(services.db), privacy(settings, services.db))
    events = synthetic_events(300, seed=5)
    try:
        assert writer.scorer is not None
        assert (await ingestor.publish(events[:120])).rejected == []
        await services.projector.run(group=False, until_end=True)
        first = writer.scorer_pids()
        assert first and os.getpid() not in first
        db = services.db
        assert db.scalar("SELECT COUNT(*) FROM score_queue") == 0
        scored_before = _scored(db)
        assert scored_before and scored_before == _survivors(db)

        # a Ctrl-C reaches the worker's whole process group: the child goes on
        os.kill(first[0], signal.SIGINT)
        assert (await ingestor.publish(events[120:180])).rejected == []
        await services.projector.run(group=False, until_end=True)
        assert writer.scorer_pids() == first
        assert db.scalar("SELECT COUNT(*) FROM score_queue") == 0

        os.kill(first[0], signal.SIGKILL)
        assert (await ingestor.publish(events[180:])).rejected == []
        await services.projector.run(group=False, until_end=True)
        second = writer.scorer_pids()
        assert second and second != first
        assert db.scalar("SELECT COUNT(*) FROM score_queue") == 0
        assert _scored(db) == _survivors(db) and len(_scored(db)) > len(scored_before)
    finally:
        await services.close()
    assert writer.scorer_pids() == []


async def test_the_periodic_refresh_runs_in_the_child_too(settings: Settings) -> None:
    """The refresh (stale scores, breaches, every buyer's RFM) grows with the base: it runs
    in a scores child, not on the worker's GIL. Seen here by the child it needs: with the
    children killed just before, one is spawned for the refresh, which rescores every
    stale row."""
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    services = await bootstrap.worker_services(settings)  # the system clock: a child
    writer: ReadStoreWriter = services.writer
    ingestor = Ingestor(settings, services.producer, bootstrap.codec(settings, services.db),
                        IngestJournal(services.db), privacy(settings, services.db))
    try:
        assert (await ingestor.publish(synthetic_events(150, seed=6))).rejected == []
        await services.projector.run(group=False, until_end=True)
        db = services.db
        rows = db.scalar("SELECT COUNT(*) FROM customer_scores")
        assert rows > 0
        with db.tx() as conn:  # every score stale, and marked as never computed
            conn.execute("UPDATE customer_scores SET valid_until = 0, as_of = 0")
        dead = writer.scorer_pids()
        assert dead and os.getpid() not in dead
        for pid in dead:
            os.kill(pid, signal.SIGKILL)

        done = writer.refresh_figures()

        assert done["stale"] == rows
        assert db.scalar("SELECT COUNT(*) FROM customer_scores WHERE as_of = 0") == 0
        # a child spawned for it (the rounds' child, dead too, waits for the next round)
        spawned = set(writer.scorer_pids()) - set(dead)
        assert spawned and os.getpid() not in spawned
    finally:
        await services.close()
