"""Leases in PostgreSQL (adapters/ownership.py): the partitions shared out among live
workers, a dead worker's taken over after the TTL, fencing of a worker that lost one,
the singletons held by one worker, and a replay refused beside workers."""

from __future__ import annotations

import time

import psycopg
import pytest

from contactstream.adapters import readstore
from contactstream.adapters.database import Database
from contactstream.adapters.ownership import (
    Fenced,
    Leases,
    ReplayRefused,
    check_fence,
    replay_lease,
    share,
)
from contactstream.projections import timeline
from contactstream.projections.timeline import TimelineState
from contactstream.streams.ports import BatchChanges
from tests.helpers import envelope, eventually

pytestmark = pytest.mark.integration


def test_the_share_is_round_robin_over_the_sorted_live_workers() -> None:
    assert share(6, ["b", "a", "c"], "a") == {0, 3}
    assert share(6, ["b", "a", "c"], "c") == {2, 5}
    assert share(4, ["a"], "a") == {0, 1, 2, 3}
    assert share(4, ["a", "b"], "z") == set()  # not (yet) among the live ones
    # every partition has exactly one owner, whatever the number of workers
    for n in range(1, 8):
        ids = [f"w{i}" for i in range(n)]
        owned = [p for w in ids for p in share(5, ids, w)]
        assert sorted(owned) == list(range(5))


def _beat_until(leases: list[Leases], check: object) -> None:
    def once() -> bool:
        for lease in leases:
            lease.beat()
        return bool(check())  # type: ignore[operator]
    eventually(once, timeout=10, every=0.05)


def test_two_workers_split_the_partitions_and_one_holds_the_singletons(
        database_url: str) -> None:
    a = Leases(database_url, 4, worker_id="a")
    b = Leases(database_url, 4, worker_id="b")
    try:
        a.beat()
        assert set(a.held_partitions()) == {0, 1, 2, 3}  # alone: everything
        b.beat()
        assert set(b.held_partitions()) == set()  # a still holds them
        a.beat()  # and now sees b
        assert a.surplus() == {1, 3}
        a.give_back(a.surplus())  # after its commit in flight
        _beat_until([a, b], lambda: set(b.held_partitions()) == {1, 3})
        assert set(a.held_partitions()) == {0, 2}
        assert a.holds_singletons() != b.holds_singletons()
    finally:
        a.stop()
        b.stop()


def test_a_dead_workers_partitions_move_after_the_ttl_and_its_commit_is_fenced(
        database_url: str) -> None:
    dead = Leases(database_url, 2, worker_id="dead", ttl_s=0.5)
    dead.beat()  # then it stops beating: killed
    held = dead.held_partitions()
    fence = {f"partition:{p}": g for p, g in held.items()}
    heir = Leases(database_url, 2, worker_id="heir", ttl_s=0.5)
    heir.beat()
    assert heir.held_partitions() == {}  # not before the TTL
    time.sleep(0.6)
    _beat_until([heir], lambda: set(heir.held_partitions()) == {0, 1})
    assert all(heir.held_partitions()[p] > g for p, g in held.items())
    assert heir.holds_singletons()
    with psycopg.connect(database_url) as conn, pytest.raises(Fenced, match="partition"):
        check_fence(conn, "dead", fence)
    with psycopg.connect(database_url) as conn:  # the holder passes
        check_fence(conn, "heir", {f"partition:{p}": g
                                   for p, g in heir.held_partitions().items()})
    heir.stop()
    dead.stop()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM leases WHERE holder='heir'"
                            ).fetchone() == (0,)


def test_a_worker_whose_beats_stop_gives_its_leases_up_before_anyone_can_take_them(
        database_url: str) -> None:
    """A beat that hangs or fails: past 3/4 of the TTL the worker acts on nothing, so it
    has stopped before the lease expires for the others."""
    stuck = Leases(database_url, 2, worker_id="stuck", ttl_s=0.8)
    try:
        stuck.beat()
        assert set(stuck.held_partitions()) == {0, 1} and stuck.holds_singletons()
        time.sleep(0.65)  # no beat: past 3/4 of the TTL, not yet past the TTL
        assert stuck.held_partitions() == {}
        assert not stuck.holds_singletons()
    finally:
        stuck.stop()


def test_the_heartbeat_thread_keeps_the_leases_and_a_stop_hands_them_over_at_once(
        database_url: str) -> None:
    first = Leases(database_url, 2, worker_id="first", ttl_s=0.6, beat_s=0.1).start()
    second = Leases(database_url, 2, worker_id="second", ttl_s=0.6, beat_s=0.1)
    try:
        time.sleep(1.5)  # more than two TTLs: only the thread's beats keep them
        assert set(first.held_partitions()) == {0, 1}
        second.beat()
        first.stop()  # gives everything back now, not after the TTL
        second.beat()
        assert set(second.held_partitions()) == {0, 1} and second.holds_singletons()
    finally:
        first.stop()
        second.stop()


def test_a_replay_is_refused_while_a_worker_holds_partitions_and_blocks_new_ones(
        database_url: str) -> None:
    worker = Leases(database_url, 2, worker_id="w")
    worker.beat()
    with pytest.raises(ReplayRefused, match="hold partitions"):
        replay_lease(database_url)
    worker.stop()
    lease = replay_lease(database_url)
    try:
        with pytest.raises(ReplayRefused, match="another replay"):
            replay_lease(database_url)
        late = Leases(database_url, 2, worker_id="late")
        late.beat()
        assert late.held_partitions() == {}  # none taken while the replay runs
        late.stop()
    finally:
        lease.stop()


@pytest.mark.parametrize("pipelined", [True, False])
def test_a_fenced_batch_writes_nothing_and_its_connection_serves_the_next(
        db: Database, monkeypatch: pytest.MonkeyPatch, pipelined: bool) -> None:
    """In one pipeline (a small batch, adapters/readstore.py) or a statement at a time:
    the fence refuses the commit at its end, after every write was sent; none stays."""
    monkeypatch.setattr(readstore, "PIPELINE_MAX_RECORDS", 10**6 if pipelined else -1)
    writer = readstore.ReadStoreWriter(db)
    state = TimelineState()
    for i in range(3):
        state = timeline.apply(state, envelope(i, event_id=f"fenced-{i}"))
    with pytest.raises(Fenced):
        writer.commit(BatchChanges(timeline=state, offsets={("interactions", 0): 3},
                                   holder="gone", fence={"partition:0": 1}))
    assert db.scalar("SELECT count(*) FROM timeline_rows") == 0
    assert db.scalar("SELECT count(*) FROM offsets") == 0
    assert db.scalar("SELECT count(*) FROM identifiers") == 0
    # the pool's connections are fine after it: the same batch, unfenced, commits
    for _ in range(db.pool.max_size + 1):
        writer.commit(BatchChanges(timeline=state, offsets={("interactions", 0): 3}))
    assert db.scalar("SELECT count(*) FROM timeline_rows") == 3
    assert writer.offsets("interactions") == {0: 3}
