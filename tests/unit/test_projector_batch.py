"""The projector's batch path over the ports, with in-memory fakes (streams/fakes.py):
what one fetched batch commits, without a broker or a database."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from contactstream.streams.decode import sort_batch
from contactstream.streams.fakes import FakeKeyRing, FakeProjectionStore
from contactstream.streams.ports import GAP_HEADER, DecodeError
from contactstream.streams.projector import Projector
from tests.helpers import envelope

TOPIC = "t.interactions"


@dataclass(frozen=True)
class Settings:
    interactions_topic: str = TOPIC
    cases_topic: str = "t.cases"
    dlq_topic: str = "t.dlq"
    projector_group: str = "t.projector"
    default_region: str = "HU"
    embedded_broker: bool = True


class JsonDecoder:
    """Stands in for the Avro codec: JSON bytes, DecodeError for anything else."""

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            return json.loads(data)  # type: ignore[no-any-return]
        except ValueError as exc:
            raise DecodeError(f"not json: {exc}") from exc


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = b"k"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 1_700_000_000_000


def batch_of(*records: Record) -> dict[TopicPartition, list[Record]]:
    out: dict[TopicPartition, list[Record]] = {}
    for r in records:
        out.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
    return out


def projector(store: FakeProjectionStore, **kw: Any) -> Projector:
    return Projector(Settings(), JsonDecoder(), store, lambda group: None, **kw)  # type: ignore[arg-type,return-value]


def rec(partition: int, offset: int, env: dict[str, Any] | bytes) -> Record:
    value = env if isinstance(env, bytes) else json.dumps(env).encode()
    return Record(TOPIC, partition, offset, value)


async def test_a_batch_commits_its_valid_events_with_the_next_offsets() -> None:
    store = FakeProjectionStore()
    good = [envelope(i, customer={"id": f"c-{i}"}) for i in range(3)]
    invalid = envelope(9, type="not.a.type")
    p = projector(store)
    await p.process(batch_of(rec(0, 10, good[0]), rec(0, 11, b"\x00garbage"),
                             rec(1, 4, good[1]), rec(1, 5, invalid), rec(2, 0, good[2])))
    await p.flush()
    assert len(store.commits) == 1
    assert sorted(store.timeline) == sorted(e["event_id"] for e in good)
    assert {e.customer_id for e in store.timeline.values()} == {"c-0", "c-1", "c-2"}
    assert store.offsets(TOPIC) == {0: 12, 1: 6, 2: 1}
    assert (p.progress.records, p.progress.events, p.progress.dead_letters) == (5, 3, 2)
    # every record is archived for the embedded broker's restore, the bad ones too
    assert sorted(store.archive) == [(TOPIC, 0, 10), (TOPIC, 0, 11), (TOPIC, 1, 4),
                                     (TOPIC, 1, 5), (TOPIC, 2, 0)]


async def test_a_redelivered_batch_changes_nothing() -> None:
    store = FakeProjectionStore()
    events = [envelope(i) for i in range(4)]
    batch = batch_of(*(rec(0, i, e) for i, e in enumerate(events)))
    p = projector(store)
    await p.process(batch)
    await p.flush()
    before = (dict(store.timeline), dict(store.identifiers), store.offsets(TOPIC))
    await p.process(batch)
    await p.flush()
    assert (dict(store.timeline), dict(store.identifiers), store.offsets(TOPIC)) == before
    assert store.offsets(TOPIC) == {0: 4}


async def test_gap_records_move_the_offset_and_nothing_else() -> None:
    store = FakeProjectionStore()
    gap = Record(TOPIC, 0, 0, b"", key=None, headers=[(GAP_HEADER, b"1")])
    p = projector(store)
    await p.process(batch_of(gap, rec(0, 1, envelope(1))))
    await p.flush()
    assert store.offsets(TOPIC) == {0: 2}
    assert len(store.timeline) == 1
    assert list(store.archive) == [(TOPIC, 0, 1)]
    assert p.progress.dead_letters == 0


async def test_events_under_a_destroyed_key_go_to_a_pseudonym() -> None:
    store = FakeProjectionStore()
    erased = envelope(1, key_id="k-gone", customer={"id": "c-erased"})
    kept = envelope(2, key_id="k-live", customer={"id": "c-kept"})
    p = projector(store, keys=FakeKeyRing({"k-gone"}))
    await p.process(batch_of(rec(0, 0, erased), rec(0, 1, kept)))
    await p.flush()
    owners = {e.event_id: e.customer_id for e in store.timeline.values()}
    assert owners[kept["event_id"]] == "c-kept"
    assert owners[erased["event_id"]] != "c-erased"


async def test_a_failed_commit_stores_no_offset() -> None:
    store = FakeProjectionStore(fail_next=RuntimeError("database gone"))
    p = projector(store)
    await p.process(batch_of(rec(0, 0, envelope(1))))
    with pytest.raises(RuntimeError, match="^database gone$"):
        await p.flush()
    assert store.offsets(TOPIC) == {}
    assert store.timeline == {}


def test_sort_batch_keeps_case_events_apart_and_says_why_a_record_is_dead() -> None:
    case = Record("t.cases", 0, 7, b"{}")
    sorted_ = sort_batch(batch_of(rec(0, 0, b"nope"), case, rec(0, 1, envelope(1))), TOPIC,
                         JsonDecoder(), archive=False)
    assert [r.offset for r in sorted_.case_records] == [7]
    assert [reason.split(":")[0] for _, reason in sorted_.dead] == ["decode"]
    assert len(sorted_.envelopes) == 1
    assert sorted_.archive == []
    assert sorted_.offsets == {(TOPIC, 0): 2, ("t.cases", 0): 8}


def test_a_tombstone_and_a_forged_gap_mark_are_dead_letters_not_skipped() -> None:
    tombstone = Record(TOPIC, 0, 0, None)  # type: ignore[arg-type]
    forged = Record(TOPIC, 0, 1, json.dumps(envelope(1)).encode(),
                    headers=[(GAP_HEADER, b"1")])
    restored_gap = Record(TOPIC, 0, 2, b"", key=None, headers=[(GAP_HEADER, b"1")])
    sorted_ = sort_batch(batch_of(tombstone, forged, restored_gap), TOPIC, NoneAwareDecoder(),
                         archive=True)
    assert [(r.offset, reason.split(":")[0]) for r, reason in sorted_.dead] == [
        (0, "decode"), (1, "reserved header")]
    assert sorted_.offsets == {(TOPIC, 0): 3}
    assert [a.offset for a in sorted_.archive] == [0, 1]  # the restore's own gap is not kept
    # on Kafka (no embedded restore) a gap mark is never the system's own
    on_kafka = sort_batch(batch_of(restored_gap), TOPIC, NoneAwareDecoder(), archive=False)
    assert [reason.split(":")[0] for _, reason in on_kafka.dead] == ["reserved header"]


class NoneAwareDecoder(JsonDecoder):
    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise DecodeError("tombstone: a record without a value")
        return super().decode(data)


@dataclass
class ScoringStore(FakeProjectionStore):
    """Keeps how many events its commits queued for scores, and the rounds that took them
    (a round may fail once, as a database that went away would make it)."""

    queued: int = 0
    rounds: list[int] = field(default_factory=list)
    fail_round: Exception | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def commit(self, changes: Any) -> None:
        super().commit(changes)
        with self.lock:
            self.queued += len(changes.timeline.entries) if changes.timeline else 0

    def scores_due(self, idle: bool = False) -> bool:
        return self.queued > 0

    def score_queued(self) -> int:
        if self.fail_round is not None:
            exc, self.fail_round = self.fail_round, None
            raise exc
        with self.lock:
            n, self.queued = self.queued, 0
        self.rounds.append(n)
        return n


async def test_rounds_of_scores_follow_the_commits_and_leave_nothing_queued() -> None:
    store = ScoringStore()
    p = projector(store)
    await p.process(batch_of(rec(0, 0, envelope(1)), rec(0, 1, envelope(2))))
    await p.process(batch_of(rec(0, 2, envelope(3))))  # the first landed: a round starts
    await p.settle()
    assert store.rounds and store.rounds[0] >= 2
    p._score(idle=True)  # noqa: SLF001 - what the projector does when a fetch was idle
    await p.settle()
    assert sum(store.rounds) == 3 and store.queued == 0


async def test_a_failed_round_of_scores_is_raised_as_a_failed_commit_is() -> None:
    store = ScoringStore(fail_round=RuntimeError("database gone"))
    p = projector(store)
    await p.process(batch_of(rec(0, 0, envelope(1))))
    await p.process(batch_of(rec(0, 1, envelope(2))))  # starts the round that fails
    with pytest.raises(RuntimeError, match="^database gone$"):
        await p.settle()
