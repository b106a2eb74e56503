"""The worker's identity graph while the projector resolves batch N+1 beside batch N's
commit (issue 12): a fold of other workers' rows that commit takes in meanwhile is not
lost on batch N+1, whose links are rewritten from the graph at its own commit."""

from __future__ import annotations

from typing import Any

from contactstream.projections import identity as graph
from contactstream.projections.identifiers import envelope_identifiers
from contactstream.streams.identity import IdentityBatch, IdentityKeeper, edge_key


def envelope(event_id: str, at: str, **customer: str) -> dict[str, Any]:
    return {"event_id": event_id, "occurred_at": at, "customer": customer,
            "type": "call.started", "channel": "voice"}


def foreign_rows(env: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """What another worker committed for ``env``: its edge and its base."""
    idents = envelope_identifiers(env, "HU")
    seen = graph.sighting(env["event_id"], 1_000, idents)
    base = graph.base_id(seen)
    return [(edge_key(frozenset(idents)), 1_000, env["event_id"])], [(base, *idents[0])]


def test_a_batch_resolved_before_a_fold_is_rewritten_from_the_graph_after_it() -> None:
    keeper = IdentityKeeper()
    mine = keeper.resolve_batch(
        [envelope("e2", "2026-12-01T10:00:00+00:00", email="A@x.org")], frozenset())
    (email_base,) = mine.links
    assert mine.links[email_base] == email_base  # alone: the e-mail is the customer

    # meanwhile the commit in flight folds in another worker's earlier event naming the
    # customer id with the same e-mail
    edges, bases = foreign_rows(envelope("e1", "2026-12-01T09:00:00+00:00",
                                         id="C-1", email="a@x.org"))
    keeper.fold_foreign(edges, bases, IdentityBatch(folds_seen=keeper.folds))
    assert mine.folds_seen != keeper.folds  # what the read store checks at commit

    keeper.fold_foreign([], [], mine)  # the rewrite alone, at this batch's commit
    assert mine.links[email_base] == "C-1"
    assert mine.identifiers[("email", "a@x.org")] == "C-1"
    assert mine.folds_seen == keeper.folds


def test_a_batch_resolved_after_the_fold_needs_no_rewrite() -> None:
    keeper = IdentityKeeper()
    edges, bases = foreign_rows(envelope("e1", "2026-12-01T09:00:00+00:00",
                                         id="C-1", email="a@x.org"))
    keeper.fold_foreign(edges, bases, IdentityBatch())
    mine = keeper.resolve_batch(
        [envelope("e2", "2026-12-01T10:00:00+00:00", email="A@x.org")], frozenset())
    assert mine.folds_seen == keeper.folds
    assert set(mine.links.values()) == {"C-1"}


def test_a_batch_carries_an_edge_only_when_it_is_new_or_claimed_earlier() -> None:
    keeper = IdentityKeeper()
    first = keeper.resolve_batch(
        [envelope("e2", "2026-12-01T10:00:00+00:00", id="C-1", email="a@x.org")], frozenset())
    (edge,) = first.edges
    later = keeper.resolve_batch(  # the same identifiers, seen later: nothing to write
        [envelope("e3", "2026-12-01T11:00:00+00:00", id="C-1", email="a@x.org")], frozenset())
    assert later.edges == {}
    assert later.links == first.links  # the links and identifiers still go with it
    earlier = keeper.resolve_batch(  # seen earlier (a late event): the claim moves back
        [envelope("e1", "2026-12-01T09:00:00+00:00", id="C-1", email="a@x.org")], frozenset())
    assert list(earlier.edges) == [edge] and earlier.edges[edge] < first.edges[edge]


def test_an_edge_seen_again_is_rewritten_too_when_a_fold_merged_its_customer() -> None:
    """A batch carries no edge for an event that only saw a stored edge again, but it
    writes that event's link and identifiers, resolved before the fold: the fold rewrites
    them from the graph as it is now, or the link would put back the survivor another
    worker's merge had moved (seen as one customer too many with three workers)."""
    keeper = IdentityKeeper()
    first = envelope("e1", "2026-12-01T09:00:00+00:00", email="a@x.org")
    edges, bases = foreign_rows(first)
    keeper.fold_foreign(edges, bases, IdentityBatch())
    (email_base,) = [b for b, *_ in bases]

    mine = keeper.resolve_batch(
        [envelope("e3", "2026-12-01T11:00:00+00:00", email="a@x.org")], frozenset())
    assert mine.edges == {}  # seen before: nothing new to store
    assert mine.links == {email_base: email_base}

    # meanwhile another worker committed an earlier event naming a customer id with it
    edges, bases = foreign_rows(envelope("e0", "2026-12-01T08:00:00+00:00",
                                         id="C-1", email="a@x.org"))
    keeper.fold_foreign(edges, bases, mine)  # at this batch's commit
    assert mine.links[email_base] == "C-1"
    assert mine.identifiers[("email", "a@x.org")] == "C-1"

