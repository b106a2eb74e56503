"""Case events (contactstream.cases.v1) as the projector reads them back: a timeline entry
each, and the newest state of each case for the cases read model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from ..projections import timeline
from .ports import DecodeError, Decoder

log = structlog.get_logger(__name__)


def case_events(records: Sequence[Any], decoder: Decoder, state: timeline.TimelineState,
                erased: Mapping[str, Sequence[tuple[int, str]]],
                ) -> list[dict[str, Any]]:
    """Appends a timeline entry per case event to ``state`` and returns the newest row of
    each case. ``erased``: customer id -> (erased at, pseudonym); a case opened before an
    erasure belongs to the erased person's pseudonym, not to a newcomer with the same id."""
    rows: dict[str, dict[str, Any]] = {}
    for rec in records:
        try:
            ev = decoder.decode(rec.value)
        except DecodeError as exc:
            log.warning("projector.bad_case_event", partition=rec.partition,
                        offset=rec.offset, reason=str(exc)[:60])
            continue
        at_ms = timeline.occurred_ms(ev["occurred_at"])
        opened_ms = int(ev["data"].get("opened_ms") or at_ms)
        for when, pseudonym in erased.get(ev["customer_id"], ()):
            if opened_ms <= when:
                ev["customer_id"] = pseudonym
                ev["data"].pop("resolution", None)
        state.entries.append(timeline.TimelineEntry(
            customer_id=ev["customer_id"], event_id=ev["event_id"], type=ev["type"],
            channel=ev["channel"], occurred_at=ev["occurred_at"], occurred_ms=at_ms,
            received_at=rec.timestamp, source="contactstream", agent_id=ev["agent_id"],
            queue=ev["queue"], case_id=ev["case_id"],
            payload={"status": ev["status"], "priority": ev["priority"],
                     "policy": ev["policy"], **ev["data"]}))
        prev = rows.get(ev["case_id"])
        if prev is None or ev["version"] > prev["version"]:
            rows[ev["case_id"]] = {**ev, "occurred_ms": at_ms}
    return list(rows.values())
