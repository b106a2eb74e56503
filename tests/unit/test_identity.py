"""The identity graph: one person through many channels is one customer, in any order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contactstream.projections import identity as ig
from contactstream.projections.identifiers import derived_customer_id

PHONE = ("phone", "+36301234567")
EMAIL = ("email", "anna@example.com")
VISITOR = ("visitor_id", "v-42")
CS_EMAIL = derived_customer_id(*EMAIL)
CS_PHONE = derived_customer_id(*PHONE)
CS_VISITOR = derived_customer_id(*VISITOR)


def ev(event_id: str, at: int, *idents: tuple[str, str]) -> ig.Sighting:
    return ig.sighting(event_id, at, idents)


def fold(events: list[ig.Sighting], state: ig.IdentityState | None = None,
         ) -> tuple[ig.IdentityState, list[ig.Change]]:
    state = state if state is not None else ig.IdentityState()
    changes: list[ig.Change] = []
    for event in events:
        state, more = ig.apply(state, event)
        changes += more
    return state, changes


STORY = [
    ev("call-1", 1_000, PHONE),                  # a call: the phone number only
    ev("mail-1", 2_000, EMAIL),                  # a complaint by email
    ev("web-1", 3_000, VISITOR),                 # an anonymous web visit
    ev("web-2", 4_000, VISITOR, EMAIL),          # the visitor logs in with the email
    ev("call-2", 5_000, PHONE, EMAIL),           # a call where the agent captured the email
]


def test_the_same_person_through_call_email_and_web_is_one_customer():
    state, changes = fold(STORY)
    assert ig.survivors(state) == {CS_EMAIL}
    for kind, value in (PHONE, EMAIL, VISITOR):
        assert ig.resolve(state, kind, value) == CS_EMAIL
    assert ig.members(state, CS_EMAIL) == {CS_PHONE, CS_EMAIL, CS_VISITOR}
    assert ig.identifiers(state, CS_EMAIL) == {PHONE, EMAIL, VISITOR}
    assert ig.links(state) == {CS_PHONE: CS_EMAIL, CS_EMAIL: CS_EMAIL, CS_VISITOR: CS_EMAIL}
    for base in (CS_PHONE, CS_EMAIL, CS_VISITOR):
        assert ig.resolve_id(state, base) == CS_EMAIL
    # the merges, with the events that linked them, for the aggregate and the read store
    assert [(c.kind, c.survivor, c.absorbed, c.members, c.event_id) for c in changes] == [
        ("merged", CS_EMAIL, (CS_VISITOR,), (CS_VISITOR,), "web-2"),
        ("merged", CS_EMAIL, (CS_PHONE,), (CS_PHONE,), "call-2"),
    ]


def test_a_learned_email_renames_the_customer_to_its_best_identifier():
    state, changes = fold([ev("call-1", 1, PHONE), ev("call-2", 2, PHONE, EMAIL)])
    assert ig.survivors(state) == {CS_EMAIL}
    assert changes == [ig.Change(survivor=CS_EMAIL, absorbed=(CS_PHONE,), moved_from=(),
                                 members=(CS_PHONE,), identifiers=(PHONE,),
                                 event_id="call-2")]


def test_the_survivor_is_the_customer_id_once_the_publisher_names_one():
    state, changes = fold([*STORY, ev("crm-1", 6_000, ("id", "c-1001"), PHONE)])
    assert ig.survivors(state) == {"c-1001"}
    assert all(ig.resolve(state, k, v) == "c-1001" for k, v in (PHONE, EMAIL, VISITOR))
    assert ig.members(state, "c-1001") == {"c-1001", CS_PHONE, CS_EMAIL, CS_VISITOR}
    assert changes[-1].absorbed == (CS_EMAIL,) and changes[-1].event_id == "crm-1"
    assert ig.is_strong(state, "c-1001") and not ig.is_strong(state, CS_EMAIL)


def test_an_unmerge_restores_both_and_they_stay_apart():
    state, _ = fold(STORY)
    state = ig.unmerge(state, CS_EMAIL, CS_PHONE)
    assert ig.survivors(state) == {CS_EMAIL, CS_PHONE}
    assert ig.members(state, CS_PHONE) == {CS_PHONE}
    assert ig.members(state, CS_EMAIL) == {CS_EMAIL, CS_VISITOR}
    assert ig.identifiers(state, CS_PHONE) == {PHONE}
    assert ig.identifiers(state, CS_EMAIL) == {EMAIL, VISITOR}
    # later events naming both do not link them again
    state, changes = fold([ev("call-3", 7_000, PHONE, EMAIL),
                           ev("call-4", 8_000, EMAIL, PHONE, VISITOR)], state)
    assert changes == []
    assert ig.resolve(state, *PHONE) == CS_PHONE and ig.resolve(state, *EMAIL) == CS_EMAIL
    # nor does a replay of everything, in another order, on the persisted state
    again = ig.IdentityState.from_json(state.to_json())
    assert ig.identifier_map(again) == ig.identifier_map(state)


def test_unmerge_tells_what_was_rekeyed():
    state, _ = fold(STORY)
    state, changes = ig.unmerge_changes(state, CS_EMAIL, CS_VISITOR, reason="ticket-9")
    assert [(c.kind, c.survivor, c.moved_from, c.members, c.event_id) for c in changes] \
        == [("moved", CS_VISITOR, (CS_EMAIL,), (CS_VISITOR,), "ticket-9")]
    assert ig.resolve(state, *PHONE) == CS_EMAIL   # the phone came by another event


def test_unmerge_refuses_what_is_not_merged():
    state, _ = fold([*STORY, ev("other", 1, ("email", "bob@example.com"))])
    bob = derived_customer_id("email", "bob@example.com")
    with pytest.raises(ValueError):
        ig.unmerge(state, CS_EMAIL, bob)
    with pytest.raises(ValueError):
        ig.unmerge(state, CS_EMAIL, CS_EMAIL)
    with pytest.raises(KeyError):
        ig.unmerge(state, "nobody", CS_PHONE)


def test_two_customer_ids_sharing_an_email_are_never_merged():
    events = [ev("crm-a", 1_000, ("id", "c-A"), EMAIL, PHONE),
              ev("crm-b", 2_000, ("id", "c-B"), EMAIL, VISITOR)]
    for order in (events, events[::-1]):
        state, _ = fold(order)
        assert ig.survivors(state) == {"c-A", "c-B"}
        assert ig.resolve(state, *EMAIL) == "c-A"        # the earlier claim keeps it
        assert ig.resolve(state, *PHONE) == "c-A"
        assert ig.resolve(state, *VISITOR) == "c-B"      # the later one keeps its own
        # an anonymous event naming identifiers of both does not bridge them
        state, changes = fold([ev("web-9", 3_000, VISITOR, PHONE)], state)
        assert changes == [] and ig.survivors(state) == {"c-A", "c-B"}


def test_an_earlier_claim_arriving_late_takes_the_identifier_over():
    state, changes = fold([ev("crm-b", 2_000, ("id", "c-B"), EMAIL),
                           ev("crm-a", 1_000, ("id", "c-A"), EMAIL)])
    assert ig.resolve(state, *EMAIL) == "c-A"
    assert [(c.kind, c.survivor, c.moved_from, c.identifiers) for c in changes] \
        == [("moved", "c-A", ("c-B",), (EMAIL,))]


def test_duplicates_and_empty_events_change_nothing():
    state, _ = fold(STORY)
    before = state.to_json()
    state, changes = fold([*STORY, ev("empty", 1)], state)
    assert changes == [] and state.to_json() == before


def test_an_envelope_becomes_a_sighting():
    sighting = ig.from_envelope({"event_id": "e-1", "occurred_at": "2026-11-23T09:00:00Z",
                                 "customer": {"email": " Anna@Example.com ",
                                              "phone": "06 30 123 4567"}})
    assert sighting.identifiers == (EMAIL, PHONE)
    assert ig.base_id(sighting) == CS_EMAIL and sighting.strong_id is None


# --- properties -----------------------------------------------------------------------------

POOL = [EMAIL, ("email", "anna.k@example.org"), PHONE, ("phone", "+36209998877"),
        VISITOR, ("visitor_id", "v-43")]


def person_events(strong: str | None, prefix: str, pool: list[tuple[str, str]]):
    """Random events over one person's identifiers, chained so that all are linked."""

    @st.composite
    def build(draw: st.DrawFn) -> list[ig.Sighting]:
        n = draw(st.integers(1, len(pool)))
        idents = pool[:n]
        events = []
        # a spanning chain, each with a random partner, then random extra events
        for i in range(1, n):
            j = draw(st.integers(0, i - 1))
            events.append((idents[i], idents[j]))
        if n == 1:
            events.append((idents[0],))
        extra = draw(st.lists(st.lists(st.sampled_from(idents), min_size=1, max_size=3),
                              max_size=5))
        events += [tuple(e) for e in extra]
        out = []
        for k, group in enumerate(events):
            named = list(group)
            if strong is not None and draw(st.booleans()):
                named.append(("id", strong))
            out.append(ig.sighting(f"{prefix}-{k}", draw(st.integers(0, 50)), named))
        if strong is not None:
            out.append(ig.sighting(f"{prefix}-crm", draw(st.integers(0, 50)),
                                   [("id", strong), idents[0]]))
        return out

    return build()


def shuffled_with_duplicates(events: list[ig.Sighting], seed: int) -> list[ig.Sighting]:
    rnd = random.Random(seed)
    out = events + [rnd.choice(events) for _ in range(rnd.randint(0, len(events)))]
    rnd.shuffle(out)
    return out


def outcome(state: ig.IdentityState) -> tuple[object, ...]:
    return (ig.survivors(state), ig.identifier_map(state), ig.links(state),
            {s: ig.members(state, s) for s in ig.survivors(state)})


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.just("c-1001")).flatmap(lambda s: person_events(s, "p", POOL)),
       st.lists(st.integers(0, 10_000), min_size=1, max_size=4))
def test_any_interleaving_of_one_persons_events_gives_the_same_customer(events, seeds):
    reference, _ = fold(events)
    assert len(ig.survivors(reference)) == 1
    (survivor,) = ig.survivors(reference)
    assert {s for s in ig.identifier_map(reference).values()} == {survivor}
    for seed in seeds:
        state, _ = fold(shuffled_with_duplicates(events, seed))
        assert outcome(state) == outcome(reference)
        assert ig.IdentityState.from_json(state.to_json()).to_json() == state.to_json()


@settings(max_examples=200, deadline=None)
@given(person_events("c-A", "a", POOL[0::2] + POOL[1::2]),
       person_events("c-B", "b", POOL[1::2] + POOL[0::2]),
       st.lists(st.integers(0, 10_000), min_size=1, max_size=4))
def test_two_people_with_different_customer_ids_are_never_merged(a, b, seeds):
    reference, _ = fold(a + b)
    assert ig.resolve(reference, "id", "c-A") == "c-A"
    assert ig.resolve(reference, "id", "c-B") == "c-B"
    assert set(ig.identifier_map(reference).values()) <= {"c-A", "c-B"} | {
        derived_customer_id(*i) for i in POOL}
    for seed in seeds:
        state, _ = fold(shuffled_with_duplicates(a + b, seed))
        assert outcome(state) == outcome(reference)
        assert "c-B" not in ig.members(state, "c-A") and "c-A" not in ig.members(state, "c-B")


@settings(max_examples=100, deadline=None)
@given(person_events("c-A", "a", POOL), person_events(None, "b", POOL[::-1]),
       st.integers(0, 10_000))
def test_changes_keep_a_links_table_exact(a, b, seed):
    """What the read store does: re-key the members of each change, link each new base."""
    state, table = ig.IdentityState(), {}
    for event in shuffled_with_duplicates(a + b, seed):
        state, changes = ig.apply(state, event)
        for change in changes:
            table.update(dict.fromkeys(change.members, change.survivor))
        base = ig.base_id(event)
        table[base] = ig.resolve_id(state, base)
    assert table == ig.links(state)
