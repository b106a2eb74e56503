"""The bench's freshness says where a late sample is (adapters/bench.py ``_where_late``):
journaled or not, and after how long it became visible, if it did while watched. A late
figure alone cannot tell a slow pipeline from an event lost or stuck."""

from __future__ import annotations

import asyncio
import time

import pytest

from contactstream.adapters import bench
from contactstream.adapters.database import Database

pytestmark = pytest.mark.integration

JOURNAL = ("INSERT INTO ingest_journal_rows (eid, etext, topic, partition, \"offset\","
           " value, received_at) VALUES (event_uuid(%(e)s), event_etext(%(e)s), 't',"
           " %(p)s, %(o)s, '\\x00', 0)")
TIMELINE = ("INSERT INTO timeline_rows (eid, etext, customer_id, occurred_ms, occurred_at,"
            " received_at, type, channel, source, payload) VALUES (event_uuid(%s),"
            " event_etext(%s), 'c-1', 0, '2026-11-01T00:00:00+00:00', 0, 'web.visit', 'web',"
            " 't', '{}'::jsonb)")
SLOW = "fresh-1000-3-0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0b"  # journaled, visible later
STUCK = "0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0c"  # journaled (its id a uuid), never visible
GONE = "fresh-1000-9-x"  # not in the journal at all


def test_each_late_sample_says_whether_it_was_journaled_and_when_it_became_visible(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "LATE_WATCH_S", 1.0)
    db.execute(JOURNAL, {"e": SLOW, "p": 2, "o": 17})
    db.execute(JOURNAL, {"e": STUCK, "p": 0, "o": 5})
    accepted = time.perf_counter() - 30.0  # each was accepted 30 s ago

    async def watch() -> list[dict[str, object]]:
        async def appears_later() -> None:
            await asyncio.sleep(0.2)
            db.execute(TIMELINE, (SLOW, SLOW))
        shown = asyncio.create_task(appears_later())
        where = await bench._where_late(db, {SLOW: accepted, STUCK: accepted,
                                             GONE: accepted})
        await shown
        return where

    where = dict(zip((SLOW, STUCK, GONE), asyncio.run(watch()), strict=True))  # in order
    slow = where[SLOW]
    assert (slow["journaled"], slow["partition"], slow["offset"]) == (True, 2, 17)
    # seen while watched: counted from when it was accepted, 30 s before
    assert isinstance(slow["visible_after_ms"], float)
    assert slow["visible_after_ms"] > 30_000
    assert where[STUCK] == {"journaled": True, "partition": 0, "offset": 5,
                            "visible_after_ms": None}
    assert where[GONE] == {"journaled": False, "partition": None, "offset": None,
                           "visible_after_ms": None}
