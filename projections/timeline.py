"""The timeline projection: interactions folded into per-customer timeline entries.

Pure: ``apply(state, envelope) -> state``. The caller hands in the identity map it
already knows (``TimelineState.known``); the fold adds what the events teach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .identifiers import derived_customer_id, envelope_identifiers, erased_pseudonym

TOKEN_PREFIXES = ("enc1:", "enc1j:")


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
    key_id: str | None = None


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
    # identifier -> (occurred_ms, event id, what the customer view shows: a token when the
    # envelope was encrypted); the earliest event's form wins, whatever the arrival order
    displays: dict[tuple[str, str], tuple[int, str, str]] = field(default_factory=dict)
    # data keys destroyed by an erasure: their events go to a pseudonym, stripped
    destroyed: frozenset[str] = frozenset()
    # event id -> its base customer, when the identity graph resolved it (streams/identity)
    assigned: dict[str, str] = field(default_factory=dict)


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
    key_id = envelope.get("key_id")
    if key_id and key_id in state.destroyed:
        return _erased(state, envelope, key_id)
    idents = envelope_identifiers(envelope, state.region)
    at = occurred_ms(envelope["occurred_at"])
    for kind, value in idents:
        shown = customer.get(kind)
        if kind != "id" and isinstance(shown, str):
            seen = state.displays.get((kind, value))
            if seen is None or (at, envelope["event_id"]) < seen[:2]:
                state.displays[(kind, value)] = (at, envelope["event_id"], shown)
    assigned = state.assigned.get(envelope["event_id"])
    cid = assigned or resolve_customer(state, idents)
    strong = idents[0][0] == "id"
    for ident in ([] if assigned else [("id", cid), *idents]):
        owner = state.known.get(ident)
        # An identifier belongs to the first publisher id that names it; before that, to
        # the first system-derived customer. Merging customers is identity's job (issue 4).
        if owner is None or (strong and not owner[1] and ident[0] != "id"):
            state.known[ident] = state.new_identifiers[ident] = (cid, strong)
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
        key_id=key_id,
    ))
    return state


def _erased(state: TimelineState, envelope: dict[str, Any], key_id: str) -> TimelineState:
    """An event of an erased customer (a replay after erasure): under the pseudonym of its
    key, without identifiers, name or anything encrypted, so aggregates stay as they were."""
    payload = {k: v for k, v in (envelope.get("payload") or {}).items()
               if not (isinstance(v, str) and v.startswith(TOKEN_PREFIXES))}
    state.entries.append(TimelineEntry(
        customer_id=erased_pseudonym(key_id), event_id=envelope["event_id"],
        type=envelope["type"], channel=envelope["channel"],
        occurred_at=envelope["occurred_at"], occurred_ms=occurred_ms(envelope["occurred_at"]),
        received_at=int(envelope.get("received_at") or 0), source=envelope["source"],
        agent_id=envelope.get("agent_id"), queue=envelope.get("queue"),
        case_id=envelope.get("case_id"), payload=payload, key_id=key_id))
    return state


def needed_identifiers(envelopes: list[dict[str, Any]], region: str = "HU") -> set[tuple[str, str]]:
    """The identifiers a batch will look up, so the caller can load them in one query."""
    out: set[tuple[str, str]] = set()
    for env in envelopes:
        out.update(envelope_identifiers(env, region))
    return out
