"""Which batches the read store commits in one pipeline (adapters/readstore.py
``pipelined``): small ones only, whatever kind of row makes a batch large."""

from __future__ import annotations

from contactstream.adapters.readstore import PIPELINE_MAX_RECORDS, pipelined
from contactstream.projections.timeline import TimelineEntry, TimelineState
from contactstream.streams.identity import IdentityBatch
from contactstream.streams.ports import ArchivedRecord, BatchChanges

N = PIPELINE_MAX_RECORDS


def record(i: int) -> ArchivedRecord:
    return ArchivedRecord("t", 0, i, None, b"x", [], 0)


def test_a_batch_within_the_limit_in_every_kind_goes_in_a_pipeline() -> None:
    state = TimelineState(new_identifiers={("email", f"{i}@x"): ("c", False)
                                           for i in range(N)})
    identity = IdentityBatch(links={f"b{i}": "s" for i in range(N)})
    assert pipelined(BatchChanges(timeline=state, identity=identity,
                                  archive=[record(i) for i in range(N)],
                                  cases=[{"customer_id": "c"}] * N))
    assert pipelined(BatchChanges())  # nothing but offsets


def test_one_kind_over_the_limit_makes_the_batch_go_a_statement_at_a_time() -> None:
    over = N + 1
    entry = TimelineEntry("c", "e", "call.started", "voice", "2026-11-01T00:00:00Z", 0, 0,
                          "t", None, None, None, {})
    larger = [
        BatchChanges(archive=[record(i) for i in range(over)]),
        BatchChanges(timeline=TimelineState(entries=[entry] * over)),
        BatchChanges(timeline=TimelineState(new_identifiers={("email", f"{i}@x"): ("c", False)
                                                             for i in range(over)})),
        BatchChanges(identity=IdentityBatch(links={f"b{i}": "s" for i in range(over)})),
        BatchChanges(identity=IdentityBatch(new_bases={f"b{i}": ("email", f"{i}@x")
                                                       for i in range(over)})),
        BatchChanges(cases=[{"customer_id": "c"}] * over),
        BatchChanges(timeline=TimelineState(displays={("email", f"{i}@x"): (0, "e", "x")
                                                      for i in range(over)})),
        # a merge of two large customers moves many identifiers in a batch of one event
        BatchChanges(identity=IdentityBatch(identifiers={("email", f"{i}@x"): "s"
                                                         for i in range(over)})),
        BatchChanges(identity=IdentityBatch(edges={((("id", str(i)),)): (0, "e")
                                                   for i in range(over)})),
    ]
    assert [pipelined(c) for c in larger] == [False] * len(larger)
