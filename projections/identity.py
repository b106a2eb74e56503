"""The identity graph: identifiers linked into customers, order-independent and undoable."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .identifiers import derived_customer_id, identifiers_of

# A node of the graph: (kind, value). Kind "id" is a publisher's (strong) customer id; the
# other kinds are matched identifiers whose values are opaque (normalised or keyed hashes).
Ident = tuple[str, str]
# When an edge was first claimed: (occurred_ms, event_id); the smallest claim wins.
Claim = tuple[int, str]

STRONG = "id"
# the strongest identifier names a customer without a strong id; unknown kinds come last
KIND_RANK: dict[str, int] = {STRONG: -1, "email": 0, "phone": 1, "visitor_id": 2}


def ident_order(ident: Ident) -> tuple[int, str, str]:
    """Sort key: strong id first, then email, phone, visitor id, other kinds; then value."""
    return (KIND_RANK.get(ident[0], len(KIND_RANK)), ident[0], ident[1])


@dataclass(frozen=True, slots=True)
class Sighting:
    """What one interaction says about identity: the identifiers it carries together."""

    event_id: str
    occurred_ms: int
    identifiers: tuple[Ident, ...]

    @property
    def strong_id(self) -> str | None:
        strong = [value for kind, value in self.identifiers if kind == STRONG]
        return strong[0] if strong else None

    @property
    def claim(self) -> Claim:
        return (self.occurred_ms, self.event_id)


@dataclass(frozen=True, slots=True)
class Change:
    """Identifiers and base customers that resolve to `survivor` after an event, and did
    not before. `absorbed`: former survivors that no longer exist (merged into this one);
    `moved_from`: survivors that still exist but lost part of themselves to this one (an
    earlier claim arrived late, or an unmerge). `members`: base ids to re-key."""

    survivor: str
    absorbed: tuple[str, ...]
    moved_from: tuple[str, ...]
    members: tuple[str, ...]
    identifiers: tuple[Ident, ...]
    event_id: str

    @property
    def kind(self) -> str:
        return "merged" if self.absorbed else "moved"


@dataclass
class IdentityState:
    """The graph. Persistent part: `edges`, `separations`, `bases`; the rest is derived
    (rebuild it with `rebuild`). A state may hold only some raw regions (see `region`):
    any set of whole regions resolves exactly as the full graph would."""

    # identifier set of an event -> its earliest claim
    edges: dict[frozenset[Ident], Claim] = field(default_factory=dict)
    # node -> nodes it must never share a customer with (from unmerges); symmetric
    separations: dict[Ident, set[Ident]] = field(default_factory=dict)
    # base customer id -> the node it hangs on (strong id, or the event's best identifier)
    bases: dict[str, Ident] = field(default_factory=dict)
    # derived: raw (unconstrained) union-find, its nodes and edges per root
    raw_parent: dict[Ident, Ident] = field(default_factory=dict)
    raw_nodes: dict[Ident, set[Ident]] = field(default_factory=dict)
    raw_edges: dict[Ident, set[frozenset[Ident]]] = field(default_factory=dict)
    raw_last: dict[Ident, Claim] = field(default_factory=dict)   # latest edge claim per root
    # derived: the partition into customers
    survivor_of_node: dict[Ident, str] = field(default_factory=dict)
    nodes_of: dict[str, set[Ident]] = field(default_factory=dict)
    bases_at: dict[Ident, set[str]] = field(default_factory=dict)
    # derived customer id ("cs-…") -> its identifier node
    derived: dict[str, Ident] = field(default_factory=dict)

    def copy(self) -> IdentityState:
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        """The persistent part, JSON-ready (sorted, so equal states dump equal)."""
        return {
            "edges": sorted([sorted(map(list, idents)), list(claim)]
                            for idents, claim in self.edges.items()),
            "separations": sorted(sorted([list(a), list(b)])
                                  for a, others in self.separations.items()
                                  for b in others if a < b),
            "bases": sorted([base, list(node)] for base, node in self.bases.items()),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IdentityState:
        edges = {frozenset((k, v) for k, v in idents): (int(claim[0]), str(claim[1]))
                 for idents, claim in data.get("edges", [])}
        seps = [((a[0], a[1]), (b[0], b[1])) for a, b in data.get("separations", [])]
        bases = {base: (node[0], node[1]) for base, node in data.get("bases", [])}
        return rebuild(edges, seps, bases)


# --- building sightings --------------------------------------------------------------------


def sighting(event_id: str, occurred_ms: int, identifiers: Iterable[Ident]) -> Sighting:
    """A sighting with its identifiers deduplicated and in canonical order."""
    idents = tuple(sorted({(str(k), str(v)) for k, v in identifiers if v}, key=ident_order))
    if sum(1 for kind, _ in idents if kind == STRONG) > 1:
        raise ValueError(f"event {event_id}: more than one customer id {idents!r}")
    return Sighting(event_id=event_id, occurred_ms=int(occurred_ms), identifiers=idents)


def from_envelope(envelope: Mapping[str, Any], region: str = "HU") -> Sighting:
    """The sighting of an interaction envelope (identifiers normalised as the timeline does)."""
    at = datetime.fromisoformat(str(envelope["occurred_at"]).replace("Z", "+00:00"))
    return sighting(str(envelope["event_id"]), int(at.timestamp() * 1000),
                    identifiers_of(envelope.get("customer") or {}, region))


def base_id(event: Sighting) -> str | None:
    """The event's customer before any linking: its strong id, else the derived id of its
    best identifier. Store this on read-model rows; resolve it to the survivor at query."""
    if not event.identifiers:
        return None
    kind, value = event.identifiers[0]
    return value if kind == STRONG else derived_customer_id(kind, value)


def survivor_id(nodes: Iterable[Ident]) -> str:
    """A customer's id from its identifiers alone: the strong id, else derived of the best."""
    kind, value = min(nodes, key=ident_order)
    return value if kind == STRONG else derived_customer_id(kind, value)


# --- queries --------------------------------------------------------------------------------


def resolve(state: IdentityState, kind: str, value: str) -> str | None:
    """The survivor an identifier belongs to (kind "id": a publisher's customer id)."""
    return state.survivor_of_node.get((kind, value))


def resolver(state: IdentityState) -> Callable[[Ident], str | None]:
    """``resolve`` for many identifiers of one state, each as its (kind, value): one
    lookup each, without a call of its own (every identifier of every event asks)."""
    return state.survivor_of_node.get


def resolve_id(state: IdentityState, customer_id: str) -> str | None:
    """The survivor of any customer id ever used: a strong id, a base or a former survivor."""
    node = _node_of_id(state, customer_id)
    return None if node is None else state.survivor_of_node.get(node)


def members(state: IdentityState, survivor: str) -> set[str]:
    """The base customer ids merged into `survivor` (itself included when it is one)."""
    return {base for node in state.nodes_of.get(survivor, ())
            for base in state.bases_at.get(node, ())}


def identifiers(state: IdentityState, survivor: str) -> set[Ident]:
    """Every identifier of the customer, its strong id (kind "id") included."""
    return set(state.nodes_of.get(survivor, ()))


def survivors(state: IdentityState) -> set[str]:
    return set(state.nodes_of)


def identifier_map(state: IdentityState) -> dict[Ident, str]:
    return dict(state.survivor_of_node)


def links(state: IdentityState) -> dict[str, str]:
    """base customer id -> survivor: the links table of the read store."""
    return {base: state.survivor_of_node[node] for base, node in state.bases.items()}


def is_strong(state: IdentityState, customer_id: str) -> bool:
    """Whether the id is a publisher's customer id the graph has seen."""
    return (STRONG, customer_id) in state.survivor_of_node


def region(state: IdentityState, idents: Iterable[Ident]) -> set[Ident]:
    """Every node raw-linked to these (ignoring conflicts and separations): the part of the
    graph a store must load so that applying events over these identifiers is exact."""
    out: set[Ident] = set()
    for ident in idents:
        if ident in state.raw_parent:
            out |= state.raw_nodes[_raw_find(state, ident)]
    return out


# --- commands -------------------------------------------------------------------------------


def apply(state: IdentityState, event: Sighting) -> tuple[IdentityState, list[Change]]:
    """Folds one event in (in place; the state is returned). Duplicates change nothing."""
    idents = frozenset(event.identifiers)
    if not idents:
        return state, []
    if sum(1 for kind, _ in idents if kind == STRONG) > 1:
        raise ValueError(f"event {event.event_id}: more than one customer id")
    base = base_id(event)
    assert base is not None
    ordered = event.identifiers  # deduplicated and in ident_order (``sighting``)
    anchor = ordered[0]
    known = state.edges.get(idents)
    new_base = state.bases.get(base) is None
    if new_base:
        state.bases[base] = anchor
        state.bases_at.setdefault(anchor, set()).add(base)
    if known is not None and known <= event.claim:
        return state, []                       # the same identifiers, claimed no later
    state.edges[idents] = event.claim if known is None else min(known, event.claim)
    for ident in idents:
        if ident[0] != STRONG:
            state.derived.setdefault(derived_customer_id(*ident), ident)
    # an edge claimed after every edge of its region is what the sorted fold would take
    # last: link it onto the current customers instead of refolding the region
    late = known is None and all(state.raw_last[_raw_find(state, i)] < event.claim
                                 for i in idents if i in state.raw_parent)
    root = _raw_add_edge(state, idents)
    if late:
        return state, _link_late(state, list(ordered), event.event_id)
    return state, _recompute(state, root, event.event_id)


def unmerge(state: IdentityState, survivor: str, member: str) -> IdentityState:
    """Separates `member` (a base id, or a former survivor) from `survivor` for good: their
    nodes never share a customer again, whatever later events say. In place; returned."""
    state, _ = unmerge_changes(state, survivor, member)
    return state


def unmerge_changes(state: IdentityState, survivor: str, member: str,
                    reason: str = "unmerge") -> tuple[IdentityState, list[Change]]:
    """`unmerge`, also telling what was re-keyed (to the member's new survivor and back)."""
    if survivor not in state.nodes_of:
        raise KeyError(f"{survivor} is not a customer")
    node = _node_of_id(state, member)
    if node is None or state.survivor_of_node.get(node) != survivor:
        raise ValueError(f"{member} is not merged into {survivor}")
    own = _node_of_id(state, survivor)
    assert own is not None
    if own == node:
        raise ValueError(f"{member} is {survivor} itself: nothing to separate")
    state.separations.setdefault(own, set()).add(node)
    state.separations.setdefault(node, set()).add(own)
    return state, _recompute(state, _raw_find(state, node), reason)


def rebuild(edges: Mapping[frozenset[Ident], Claim],
            separations: Iterable[tuple[Ident, Ident]] = (),
            bases: Mapping[str, Ident] | None = None) -> IdentityState:
    """A state from its persistent part (e.g. loaded from the read store)."""
    state = IdentityState()
    for a, b in separations:
        state.separations.setdefault(a, set()).add(b)
        state.separations.setdefault(b, set()).add(a)
    for base, node in (bases or {}).items():
        state.bases[base] = node
        state.bases_at.setdefault(node, set()).add(base)
    roots: set[Ident] = set()
    for idents, claim in edges.items():
        state.edges[idents] = claim
        for ident in idents:
            if ident[0] != STRONG:
                state.derived.setdefault(derived_customer_id(*ident), ident)
        roots.add(_raw_add_edge(state, idents))
    for root in {_raw_find(state, r) for r in roots}:
        _recompute(state, root, "rebuild")
    return state


# --- internals ------------------------------------------------------------------------------


def _node_of_id(state: IdentityState, customer_id: str) -> Ident | None:
    if (STRONG, customer_id) in state.survivor_of_node:
        return (STRONG, customer_id)
    return state.bases.get(customer_id) or state.derived.get(customer_id)


def _raw_find(state: IdentityState, node: Ident) -> Ident:
    parent = state.raw_parent
    root = node
    while parent[root] != root:
        root = parent[root]
    while parent[node] != root:
        parent[node], node = root, parent[node]
    return root


def _raw_add_edge(state: IdentityState, idents: frozenset[Ident]) -> Ident:
    """Adds the edge to the unconstrained union-find; returns the root of its region."""
    roots: set[Ident] = set()
    for ident in idents:
        if ident not in state.raw_parent:
            state.raw_parent[ident] = ident
            state.raw_nodes[ident] = {ident}
            state.raw_edges[ident] = set()
            state.raw_last[ident] = (-(2**63), "")
        roots.add(_raw_find(state, ident))
    root = max(roots, key=lambda r: (len(state.raw_nodes[r]), r))
    for other in roots - {root}:
        state.raw_parent[other] = root
        state.raw_nodes[root] |= state.raw_nodes.pop(other)
        state.raw_edges[root] |= state.raw_edges.pop(other)
        state.raw_last[root] = max(state.raw_last[root], state.raw_last.pop(other))
    state.raw_edges[root].add(idents)
    state.raw_last[root] = max(state.raw_last[root], state.edges[idents])
    return root


def _partition(state: IdentityState, edges: Iterable[frozenset[Ident]]) -> list[set[Ident]]:
    """The customers of one region: its edges in claim order, each linking its identifiers
    to its anchor (strong id, else best identifier) unless that would put two strong ids,
    or two separated nodes, into one customer. Depends on the set of edges alone."""
    parent: dict[Ident, Ident] = {}
    strong: dict[Ident, str | None] = {}
    separated: dict[Ident, set[Ident]] = {}     # root -> its nodes that have separations
    nodes: dict[Ident, set[Ident]] = {}

    def find(x: Ident) -> Ident:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def add(x: Ident) -> None:
        if x not in parent:
            parent[x] = x
            strong[x] = x[1] if x[0] == STRONG else None
            separated[x] = {x} if x in state.separations else set()
            nodes[x] = {x}

    def union(a: Ident, b: Ident) -> None:
        ra, rb = find(a), find(b)
        if ra == rb:
            return
        sa, sb = strong[ra], strong[rb]
        if sa is not None and sb is not None and sa != sb:
            return                                   # two customer ids: never automatically
        if separated[ra] and separated[rb] and \
                any(state.separations[x] & separated[rb] for x in separated[ra]):
            return                                   # separated by an unmerge
        if (len(nodes[ra]), ra) < (len(nodes[rb]), rb):
            ra, rb = rb, ra
        parent[rb] = ra
        strong[ra] = sa if sa is not None else sb
        separated[ra] |= separated.pop(rb)
        nodes[ra] |= nodes.pop(rb)

    for idents in sorted(edges, key=lambda e: (state.edges[e], sorted(e))):
        ordered = sorted(idents, key=ident_order)
        for ident in ordered:
            add(ident)
        for ident in ordered[1:]:
            union(ordered[0], ident)
    return list(nodes.values())


def _linkable(state: IdentityState, a: set[Ident], b: set[Ident]) -> bool:
    """Whether two customers may become one: not two strong ids, nothing separated."""
    strong_a = [n for n in a if n[0] == STRONG]
    if strong_a and any(n[0] == STRONG and n != strong_a[0] for n in b):
        return False
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    return not any(x in state.separations and state.separations[x] & big for x in small)


def _link_late(state: IdentityState, ordered: list[Ident], event_id: str) -> list[Change]:
    """The last step of `_partition` on the current customers: the edge's identifiers
    joined to its anchor where allowed. Touches only the customers the edge names."""
    current: dict[Ident, set[Ident]] = {}        # node -> its (working) customer
    for node in ordered:
        if node not in current:
            sid = state.survivor_of_node.get(node)
            nodes = set(state.nodes_of[sid]) if sid is not None else {node}
            for member in nodes:
                current[member] = nodes
    for ident in ordered[1:]:
        a, b = current[ordered[0]], current[ident]
        if a is b or not _linkable(state, a, b):
            continue
        if len(a) < len(b):
            a, b = b, a
        a |= b
        for member in b:
            current[member] = a
    components = list({id(c): c for c in current.values()}.values())
    return _install(state, components, event_id)


def _recompute(state: IdentityState, root: Ident, event_id: str) -> list[Change]:
    return _install(state, _partition(state, state.raw_edges[root]), event_id)


def _install(state: IdentityState, components: list[set[Ident]], event_id: str,
             ) -> list[Change]:
    """Replaces the customers these nodes belonged to by `components` (which must cover
    them all) and tells what moved."""
    before = {node: state.survivor_of_node[node] for nodes in components for node in nodes
              if node in state.survivor_of_node}
    for old in set(before.values()):
        state.nodes_of.pop(old, None)
    named = sorted(((survivor_id(nodes), nodes) for nodes in components),
                   key=lambda c: c[0])
    new_survivors = {sid for sid, _ in named}
    for sid, nodes in named:
        state.nodes_of[sid] = nodes
        for node in nodes:
            state.survivor_of_node[node] = sid
    changes = []
    for sid, nodes in named:
        moved = sorted((n for n in nodes if n in before and before[n] != sid), key=ident_order)
        if not moved:
            continue
        olds = {before[n] for n in moved}
        changes.append(Change(
            survivor=sid,
            absorbed=tuple(sorted(o for o in olds if o not in new_survivors)),
            moved_from=tuple(sorted(o for o in olds if o in new_survivors)),
            members=tuple(sorted(b for n in moved for b in state.bases_at.get(n, ()))),
            identifiers=tuple(moved),
            event_id=event_id,
        ))
    return changes
