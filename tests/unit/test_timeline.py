"""The timeline projection and identifier normalisation, pure, no broker."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from contactstream.projections import timeline
from contactstream.projections.identifiers import (
    derived_customer_id,
    identifiers_of,
    normalize_email,
    normalize_phone,
    partition_key,
)
from tests.helpers import envelope


def fold(events: list[dict], known: dict | None = None) -> timeline.TimelineState:
    state = timeline.TimelineState(known=dict(known or {}))
    for e in events:
        state = timeline.apply(state, e)
    return state


def test_identifiers_are_normalised() -> None:
    assert normalize_email("  Anna.Kovacs@Example.COM ") == "anna.kovacs@example.com"
    assert normalize_phone("06 30 123 4567", "HU") == "+36301234567"
    assert normalize_phone("+36 (30) 123-4567") == "+36301234567"
    assert normalize_phone("+98 912 345 6789") == "+989123456789"
    assert normalize_phone("12") == "+12"  # not a number we can parse: digits kept
    assert identifiers_of({"id": "c-1", "email": " A@B.hu", "visitor_id": "v-1 ",
                           "name": "x"}) == [("id", "c-1"), ("email", "a@b.hu"),
                                             ("visitor_id", "v-1")]


def test_partition_key_never_carries_an_address() -> None:
    assert partition_key({"id": "c-1", "email": "a@b.hu"}) == b"c-1"
    key = partition_key({"email": "Anna@Example.com"})
    assert b"anna" not in key.lower() and key.startswith(b"cs-")
    assert key == partition_key({"email": " anna@example.com"})


def test_an_event_lands_on_its_customer_with_its_payload() -> None:
    e = envelope(1, customer={"id": "c-1", "email": "a@b.hu", "name": "Ádám"})
    state = fold([e])
    [entry] = state.entries
    assert (entry.customer_id, entry.event_id, entry.type) == ("c-1", e["event_id"],
                                                               "complaint.filed")
    # 09:01 at +01:00 is 08:01 UTC
    assert entry.occurred_ms == datetime(2026, 11, 22, 8, 1, tzinfo=UTC).timestamp() * 1000
    assert state.new_identifiers[("email", "a@b.hu")] == ("c-1", True)
    assert state.names["c-1"][2] == "Ádám"


def test_an_email_only_event_finds_the_customer_that_owns_the_email() -> None:
    state = fold([envelope(1, customer={"id": "c-1", "email": "a@b.hu"}),
                  envelope(2, customer={"email": "A@B.hu "})])
    assert [e.customer_id for e in state.entries] == ["c-1", "c-1"]


def test_unknown_weak_identifier_gets_a_stable_system_id() -> None:
    state = fold([envelope(1, customer={"visitor_id": "v-9"})])
    assert state.entries[0].customer_id == derived_customer_id("visitor_id", "v-9")


def test_a_publisher_id_claims_an_identifier_held_by_a_system_id() -> None:
    state = fold([envelope(1, customer={"email": "a@b.hu"}),
                  envelope(2, customer={"id": "c-1", "email": "a@b.hu"})])
    assert state.known[("email", "a@b.hu")] == ("c-1", True)
    # but a second publisher id does not take it away (conflicts are identity's job)
    state = fold([envelope(3, customer={"id": "c-2", "email": "a@b.hu"})], state.known)
    assert state.known[("email", "a@b.hu")] == ("c-1", True)


def test_the_newest_name_wins_whatever_the_order() -> None:
    old = envelope(1, customer={"id": "c-1", "name": "Old"}, occurred_at="2026-01-01T00:00:00Z")
    new = envelope(2, customer={"id": "c-1", "name": "New"}, occurred_at="2026-06-01T00:00:00Z")
    assert fold([old, new]).names["c-1"][2] == fold([new, old]).names["c-1"][2] == "New"


EVENTS = [envelope(i, customer={"id": f"c-{i % 3}", "email": f"u{i % 3}@x.hu",
                                "name": f"N{i}"}, event_id=f"e-{i}") for i in range(12)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=40).flatmap(st.permutations))
def test_any_order_and_any_duplicates_give_the_same_timeline(events: list[dict]) -> None:
    """Idempotent by event id: what a store keyed by event id keeps is order-free."""
    state = fold(events)
    rows = {}
    for entry in state.entries:
        rows.setdefault(entry.event_id, entry)
    expected = {e["event_id"]: e for e in events}
    assert set(rows) == set(expected)
    for eid, entry in rows.items():
        assert entry.customer_id == expected[eid]["customer"]["id"]
    names = {cid: n for cid, (_, _, n) in state.names.items()}
    newest = {}
    for e in sorted(set(map(lambda e: e["event_id"], events))):
        ev = expected[e]
        cid = ev["customer"]["id"]
        key = (timeline.occurred_ms(ev["occurred_at"]), ev["event_id"])
        if cid not in newest or key > newest[cid][0]:
            newest[cid] = (key, ev["customer"]["name"])
    assert names == {cid: n for cid, (_, n) in newest.items()}


def test_an_identifier_shows_its_earliest_events_form_whatever_the_arrival_order() -> None:
    early = envelope(1, occurred_at="2026-11-20T09:00:00+00:00",
                     customer={"id": "c-1", "email": " Anna@Example.com "})
    late = envelope(2, occurred_at="2026-11-21T09:00:00+00:00",
                    customer={"id": "c-1", "email": "anna@example.com"})
    shown = {tuple(fold(order).displays[("email", "anna@example.com")])
             for order in ([early, late], [late, early])}
    assert shown == {(timeline.occurred_ms(early["occurred_at"]), early["event_id"],
                      " Anna@Example.com ")}
