"""One fetched batch, sorted: the interactions decoded and validated, the case events
kept for their stage, the bad records set aside for the dead-letter topic, the records to
archive and the next offset of every partition. A pure function of the records."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..domain.interactions import validate_record
from .ports import GAP_HEADER, ArchivedRecord, DecodeError, Decoder


@dataclass
class SortedBatch:
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    case_records: list[Any] = field(default_factory=list)
    dead: list[tuple[Any, str]] = field(default_factory=list)  # (record, reason)
    archive: list[ArchivedRecord] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


def _archived(rec: Any, headers: list[tuple[str, bytes]],
              event_id: str | None = None) -> ArchivedRecord:
    return ArchivedRecord(rec.topic, rec.partition, rec.offset, rec.key, rec.value, headers,
                          rec.timestamp, event_id)


def is_gap(rec: Any, headers: list[tuple[str, bytes]], *, embedded: bool) -> bool:
    """A placeholder the embedded broker's restore wrote for an offset it could not fill
    (adapters/journal.py): empty, without key, the gap header alone. Only those are
    skipped; a record of anyone else that carries the header is dead-lettered."""
    return (embedded and not rec.value and rec.key is None
            and headers == [(GAP_HEADER, b"1")])


def sort_batch(batch: Mapping[Any, Sequence[Any]], interactions_topic: str,
               decoder: Decoder, *, archive: bool) -> SortedBatch:
    """``batch`` as aiokafka's ``getmany`` returns it: TopicPartition -> records. Records
    that hold a gap the broker's restore could not fill are skipped (offsets still move);
    ``archive`` (the embedded broker) keeps a copy of every other record for its restore.
    A tombstone (no value), bytes that are not one Avro record, or an invalid envelope
    goes to the dead letters with the reason."""
    out = SortedBatch()
    decode = decoder.decode
    for tp, records in batch.items():
        interactions = tp.topic == interactions_topic
        for rec in records:
            out.offsets[(tp.topic, tp.partition)] = rec.offset + 1
            headers = list(rec.headers or ())
            if is_gap(rec, headers, embedded=archive):
                continue
            if not interactions:
                if archive:
                    out.archive.append(_archived(rec, headers))
                out.case_records.append(rec)
                continue
            env = _interaction(rec, headers, decode, out.dead)
            if archive:  # with its id, if it has one: the journal is looked up by it
                out.archive.append(_archived(rec, headers,
                                             None if env is None else env["event_id"]))
            if env is not None:
                out.envelopes.append(env)
    return out


def _interaction(rec: Any, headers: list[tuple[str, bytes]],
                 decode: Callable[[bytes | None], dict[str, Any]],
                 dead: list[tuple[Any, str]]) -> dict[str, Any] | None:
    """The envelope of an interaction record, or None with the record and the reason
    added to ``dead``."""
    if any(h[0] == GAP_HEADER for h in headers):
        dead.append((rec, f"reserved header: {GAP_HEADER} is the embedded broker's own"
                          " placeholder mark"))
        return None
    try:
        env = decode(rec.value)
    except DecodeError as exc:
        dead.append((rec, f"decode: {exc}"))
        return None
    errors = validate_record(env)
    if errors:
        dead.append((rec, "invalid: " + "; ".join(errors)))
        return None
    return env
