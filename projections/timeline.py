"""The timeline projection: interactions folded into per-customer timeline entries.

Pure: ``apply(state, envelope) -> state``. The caller hands in the identity map it
already knows (``TimelineState.known``); the fold adds what the events teach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .identifiers import derived_customer_id, identifiers_of


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    customer_id: str
    event_id: str
    type: str
    channel: str
    occurred_at: str
    occurred_ms: int
    received_at: int
    source: str
    agent_id: str | None
    queue: str | None
    case_id: str | None
    payload: dict[str, Any]


@dataclass
class TimelineState:
    """Changes of one batch plus the identifier map they were resolved against."""

    region: str = "HU"
    # (kind, value) -> (customer id, claimed by a publisher's customer id?)
    known: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)
    new_identifiers: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)
    entries: list[TimelineEntry] = field(default_factory=list)
    # customer id -> (occurred_ms, event_id, name): the newest name wins, whatever the order
    names: dict[str, tuple[int, str, str]] = field(default_factory=dict)


def occurred_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def resolve_customer(state: TimelineState, idents: list[tuple[str, str]]) -> str:
    """The customer an event belongs to: its customer id, else the owner of a known
    identifier, else a stable id derived from its strongest identifier."""
    kind, value = idents[0]
    if kind == "id":
        return value
    for ident in idents:
        owner = state.known.get(ident)
        if owner is not None:
            return owner[0]
    return derived_customer_id(kind, value)


def apply(state: TimelineState, envelope: dict[str, Any]) -> TimelineState:
    customer = envelope["customer"]
    idents = identifiers_of(customer, state.region)
    cid = resolve_customer(state, idents)
    strong = idents[0][0] == "id"
    for ident in [("id", cid), *idents]:
        owner = state.known.get(ident)
        # An identifier belongs to the first publisher id that names it; before that, to
        # the first system-derived customer. Merging customers is identity's job (issue 4).
        if owner is None or (strong and not owner[1] and ident[0] != "id"):
            state.known[ident] = state.new_identifiers[ident] = (cid, strong)
    at = occurred_ms(envelope["occurred_at"])
    name = customer.get("name")
    if name:
        prev = state.names.get(cid)
        if prev is None or (at, envelope["event_id"]) > prev[:2]:
            state.names[cid] = (at, envelope["event_id"], name)
    state.entries.append(TimelineEntry(
        customer_id=cid,
        event_id=envelope["event_id"],
        type=envelope["type"],
        channel=envelope["channel"],
        occurred_at=envelope["occurred_at"],
        occurred_ms=at,
        received_at=int(envelope.get("received_at") or 0),
        source=envelope["source"],
        agent_id=envelope.get("agent_id"),
        queue=envelope.get("queue"),
        case_id=envelope.get("case_id"),
        payload=envelope.get("payload") or {},
    ))
    return state


def needed_identifiers(envelopes: list[dict[str, Any]], region: str = "HU") -> set[tuple[str, str]]:
    """The identifiers a batch will look up, so the caller can load them in one query."""
    out: set[tuple[str, str]] = set()
    for env in envelopes:
        out.update(identifiers_of(env["customer"], region))
    return out
