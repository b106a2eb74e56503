"""Identity in the worker: the identity graph (projections/identity.py) kept in memory,
persisted as its edges, bases and separations in the read store, and turned into the
read store's ``customer_links`` (base customer -> survivor) and ``identifiers``
(identifier -> survivor) rows in the same transaction as the batch that taught it.

Timeline rows, cases and scores stay keyed by each event's *base* customer; the API
resolves base -> survivor at query time, so a merge or an unmerge rewrites only links.
Merges and unmerges are also recorded as events of ``CustomerLink`` aggregates
(domain/identity.py) so the history shows who was merged when and why.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from ..domain.identity import CustomerLink, IdentityError
from ..projections import identity as graph
from ..projections.identifiers import envelope_identifiers
from ..projections.timeline import occurred_ms

log = structlog.get_logger(__name__)

# an edge: its identifiers sorted, (kind, value) each; how the read store keeps one is its
# own (adapters/edges.py)
Edge = tuple[tuple[str, str], ...]
EdgeRow = tuple[Sequence[tuple[str, str]], int, str]   # identifiers, claim ms, claim event


class IdentityRows(Protocol):
    """Where the graph's edges, separations and bases are kept (adapters/readstore.py)."""

    def identity_rows(self) -> tuple[list[EdgeRow],
                                     list[tuple[str, str, str, str]],
                                     list[tuple[str, str, str]]]: ...


class LinkApp(Application[Any]):
    # names the recorder's table, contactstream_identity_events (adapters/migrations)
    name = "contactstream_identity"


@dataclass
class IdentityBatch:
    """What one batch changes, written with the batch."""

    bases: dict[str, str] = field(default_factory=dict)          # event id -> base customer
    edges: dict[Edge, tuple[int, str]] = field(default_factory=dict)
    new_bases: dict[str, tuple[str, str]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)          # base -> survivor
    identifiers: dict[tuple[str, str], str] = field(default_factory=dict)  # ident -> survivor
    separations: list[tuple[tuple[str, str], tuple[str, str]]] = field(default_factory=list)
    merges: list[graph.Change] = field(default_factory=list)
    # how many folds of other workers' rows the graph had taken when this batch was
    # resolved: one taken since (while it waited for its commit) rewrites it at commit
    folds_seen: int = 0


def edge_key(idents: frozenset[tuple[str, str]]) -> Edge:
    return tuple(sorted(idents))


class IdentityKeeper:
    def __init__(self, region: str = "HU", links: Application[Any] | None = None) -> None:
        self.region = region
        self.state = graph.IdentityState()
        self.links_app = links
        # the projector resolves batch N+1 on its compute thread while batch N commits on
        # the writer thread, which folds other workers' rows in: one at a time
        self.lock = threading.RLock()
        self.folds = 0  # folds of other workers' rows taken (IdentityBatch.folds_seen)
        # the merge history records what happened when it happened: a replay refolds the
        # same log in another arrival order (one person's events sit on several
        # partitions) and would record other, later merges; it keeps the history as it is
        self.record = True

    def load(self, store: IdentityRows) -> None:
        """Rebuild the graph from what the read model keeps of it."""
        edge_rows, sep_rows, base_rows = store.identity_rows()
        edges = {frozenset(idents): (ms, ev) for idents, ms, ev in edge_rows}
        seps = [((a, b), (c, d)) for a, b, c, d in sep_rows]
        bases = {b: (k, v) for b, k, v in base_rows}
        with self.lock:
            self.state = graph.rebuild(edges, seps, bases)
        log.info("identity.loaded", edges=len(edges), customers=len(self.state.nodes_of))

    def fold_foreign(self, edge_rows: list[EdgeRow],
                     base_rows: list[tuple[str, str, str]],
                     batch: IdentityBatch) -> IdentityBatch:
        """Rows other workers committed since this one last looked (issue 9), folded into
        the graph, and ``batch``'s links and identifiers rewritten for every raw region
        the batch touched, from the graph as it is now. The graph depends on the set of
        its edges alone, so this is what one worker reading every partition would write.
        A region only the other workers' rows touched is as its last writer left it, and
        that writer had folded in every row committed before its own (under the same
        lock): it is right already and is not written again. Also called with no rows for
        a batch resolved before the last fold (``folds_seen``): only the rewrite."""
        with self.lock:
            return self._fold_foreign(edge_rows, base_rows, batch)

    def _fold_foreign(self, edge_rows: list[EdgeRow],
                      base_rows: list[tuple[str, str, str]],
                      batch: IdentityBatch) -> IdentityBatch:
        if edge_rows or base_rows:
            self.folds += 1
        st = self.state
        for base, kind, value in base_rows:
            node = (kind, value)
            if base not in st.bases:
                st.bases[base] = node
                st.bases_at.setdefault(node, set()).add(base)
        for idents, ms, event_id in edge_rows:
            st, _ = graph.apply(st, graph.sighting(event_id, int(ms), list(idents)))
        # every row the batch writes, rewritten: its edges' regions, and those of every
        # identifier and base it names (an event that only saw an edge again carries no
        # edge but still writes its base's link and its identifiers, resolved before the
        # fold: left so, a stale survivor would overwrite a right one)
        touched: set[graph.Ident] = set(batch.identifiers)
        for key in batch.edges:
            touched.update(key)
        touched.update(st.bases[b] for b in batch.links if b in st.bases)
        for node in graph.region(st, touched):
            owner = st.survivor_of_node.get(node)
            if owner is not None:
                batch.identifiers[node] = owner
            for base in st.bases_at.get(node, ()):
                if (survivor := graph.resolve_id(st, base)) is not None:
                    batch.links[base] = survivor
        self.state = st
        batch.folds_seen = self.folds
        return batch

    def reset(self) -> None:
        with self.lock:
            self.state = graph.IdentityState()

    def resolve_batch(self, envelopes: list[dict[str, Any]], destroyed: frozenset[str],
                      ) -> IdentityBatch:
        with self.lock:
            return self._resolve_batch(envelopes, destroyed)

    def _resolve_batch(self, envelopes: list[dict[str, Any]], destroyed: frozenset[str],
                       ) -> IdentityBatch:
        out = IdentityBatch(folds_seen=self.folds)
        st = self.state
        for env in envelopes:
            if env.get("key_id") in destroyed:
                continue  # an erased customer's event: no identity to learn from it
            seen = graph.sighting(env["event_id"], occurred_ms(env["occurred_at"]),
                                  envelope_identifiers(env, self.region))
            if not seen.identifiers:
                continue
            base = graph.base_id(seen)
            assert base is not None
            had_base = base in st.bases
            idents = frozenset(seen.identifiers)
            known = st.edges.get(idents)
            st, changes = graph.apply(st, seen)
            out.bases[env["event_id"]] = base
            if known is None or st.edges[idents] < known:
                # new, or claimed earlier: the stored edge is written (one the graph holds
                # is stored or in the commit in flight; a refused commit reloads the graph)
                out.edges[edge_key(idents)] = st.edges[idents]
            if not had_base:
                out.new_bases[base] = st.bases[base]
            if changes:
                self._collect(out, changes)
            survivor = graph.resolve_id(st, base)
            if survivor is not None:
                out.links[base] = survivor
            owner_of = graph.resolver(st)
            for ident in seen.identifiers:
                owner = owner_of(ident)
                if owner is not None:
                    out.identifiers[ident] = owner
        self.state = st
        return out

    def _collect(self, out: IdentityBatch, changes: list[graph.Change]) -> None:
        for change in changes:
            for member in change.members:
                out.links[member] = change.survivor
            for ident in change.identifiers:
                out.identifiers[ident] = change.survivor
            if change.absorbed:
                out.merges.append(change)

    def unmerge(self, survivor: str, member: str, reason: str) -> IdentityBatch:
        with self.lock:
            return self._unmerge(survivor, member, reason)

    def _unmerge(self, survivor: str, member: str, reason: str) -> IdentityBatch:
        out = IdentityBatch(folds_seen=self.folds)
        before = {k: set(v) for k, v in self.state.separations.items()}
        self.state, changes = graph.unmerge_changes(self.state, survivor, member, reason)
        for node, others in self.state.separations.items():
            for other in others - before.get(node, set()):
                if node < other:
                    out.separations.append((node, other))
        self._collect(out, changes)
        # every base of the two customers, as they are now
        for cid in {survivor, graph.resolve_id(self.state, member) or member}:
            for base in graph.members(self.state, cid):
                out.links[base] = cid
            for ident in graph.identifiers(self.state, cid):
                out.identifiers[ident] = cid
        return out

    def separated(self, survivor: str, member: str) -> bool:
        """Whether an unmerge of these two was already carried out."""
        with self.lock:
            a = graph._node_of_id(self.state, survivor)  # noqa: SLF001
            b = graph._node_of_id(self.state, member)  # noqa: SLF001
            return a is not None and b is not None \
                and b in self.state.separations.get(a, set())

    def record_history(self, batch: IdentityBatch, by: str = "system",
                       action: str = "merge") -> None:
        """Merges (and unmerges) as CustomerLink events; idempotent by reason."""
        if self.links_app is None or not self.record:
            return
        now = datetime.now(UTC)
        with self.lock:
            merges = [(absorbed, change.survivor, graph.is_strong(self.state, change.survivor),
                       change.event_id) for change in batch.merges
                      for absorbed in change.absorbed]
        try:  # one transaction for the batch's merges
            self.links_app.save(*self._merged(merges, now, by).values())
        except IntegrityError:
            # another worker recorded one of these customers' history meanwhile (issue 9):
            # each again on its newest version, alone
            for merge in merges:
                for _ in range(3):
                    try:
                        self.links_app.save(*self._merged([merge], now, by).values())
                        break
                    except IntegrityError:
                        continue
                else:  # the history misses this merge; the graph and the links have it
                    log.warning("identity.history_conflict", reason=merge[3])

    def _merged(self, merges: list[tuple[str, str, bool, str]], now: datetime,
                by: str) -> dict[str, CustomerLink]:
        changed: dict[str, CustomerLink] = {}
        # the members with a history already, in one query: most merges are a member's
        # first, and loading each to find it missing took a query and a transaction each
        last_versions = getattr(self.links_app.recorder, "last_versions", None) \
            if self.links_app is not None else None
        known = None if last_versions is None else set(last_versions(
            {CustomerLink.id_for(absorbed) for absorbed, *_ in merges}))
        for absorbed, survivor, strong, reason in merges:
            link = changed.get(absorbed) or self._link(absorbed, known)
            try:
                link.merge(survivor, survivor_strong=strong, reason=reason, at=now, by=by)
            except IdentityError as exc:
                log.info("identity.history_skipped", reason=type(exc).__name__)
                continue
            changed[absorbed] = link
        return changed

    def record_unmerge(self, member: str, by: str, reason: str) -> None:
        """``reason`` must be unique per request (the caller adds the request number)."""
        if self.links_app is None:
            return
        link = self._link(member)
        try:
            if link.unmerge(by=by, reason=reason, at=datetime.now(UTC)):
                self.links_app.save(link)
        except IdentityError as exc:
            log.info("identity.history_skipped", reason=type(exc).__name__)

    def _link(self, member: str, known: set[Any] | None = None) -> CustomerLink:
        """The member's history; ``known``, when given, holds the ids of every member
        with one stored, so a member not in it starts without a lookup."""
        assert self.links_app is not None
        try:
            link_id = CustomerLink.id_for(member)
            if known is not None and link_id not in known:
                raise AggregateNotFoundError(link_id)
            return self.links_app.repository.get(link_id)  # type: ignore
        except AggregateNotFoundError:
            with self.lock:
                strong = graph.is_strong(self.state, member)
            return CustomerLink.start(member, strong=strong)
