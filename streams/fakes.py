"""In-memory fakes of the ports (streams/ports.py), for unit tests of the stream stages
without a server. Integration tests use the real adapters on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..projections.timeline import TimelineEntry
from .ports import ArchivedRecord, BatchChanges


@dataclass
class FakeProjectionStore:
    """Keeps what the real read store keeps of a batch, with its rules: a timeline row
    once per event id, the newest version of a case, offsets that never go back."""

    timeline: dict[str, TimelineEntry] = field(default_factory=dict)
    identifiers: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    archive: dict[tuple[str, int, int], ArchivedRecord] = field(default_factory=dict)
    stored_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    commits: list[BatchChanges] = field(default_factory=list)
    fail_next: Exception | None = None  # the next commit raises it and changes nothing

    def offsets(self, topic: str) -> dict[int, int]:
        return {p: o for (t, p), o in self.stored_offsets.items() if t == topic}

    def known_identifiers(self, idents: Iterable[tuple[str, str]],
                          ) -> dict[tuple[str, str], tuple[str, bool]]:
        return {i: self.identifiers[i] for i in idents if i in self.identifiers}

    def identity_rows(self) -> tuple[list[Any], list[Any], list[Any]]:
        return [], [], []

    def catch_up_identity(self) -> None:
        """One process: nothing written elsewhere to fold in."""

    def scores_due(self, idle: bool = False) -> bool:
        """Keeps no scores."""
        return False

    def score_queued(self) -> int:
        return 0

    def commit(self, changes: BatchChanges) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.commits.append(changes)
        state = changes.timeline
        if state is not None:
            for e in state.entries:
                self.timeline.setdefault(e.event_id, e)
            for ident, (cid, strong) in state.new_identifiers.items():
                old = self.identifiers.get(ident)
                if old is None or (strong and not old[1]):
                    self.identifiers[ident] = (cid, strong)
        for row in changes.cases:
            old_case = self.cases.get(row["case_id"])
            if old_case is None or row["version"] > old_case["version"]:
                self.cases[row["case_id"]] = row
        for rec in changes.archive:
            self.archive.setdefault((rec.topic, rec.partition, rec.offset), rec)
        for tp, offset in changes.offsets.items():
            if offset > self.stored_offsets.get(tp, -1):
                self.stored_offsets[tp] = offset


@dataclass
class FakePositions:
    """Relay positions, with the records each advance kept (streams/ports.py Positions)."""

    positions: dict[str, int] = field(default_factory=dict)
    records: list[ArchivedRecord] = field(default_factory=list)

    def position(self, name: str) -> int:
        return self.positions.get(name, 0)

    def advance(self, name: str, position: int,
                records: Sequence[ArchivedRecord] = ()) -> None:
        self.positions[name] = position
        self.records.extend(records)


@dataclass
class FakeKeyRing:
    destroyed: set[str] = field(default_factory=set)

    def is_destroyed(self, key_id: str) -> bool:
        return key_id in self.destroyed
