"""An identity edge's stored form (adapters/edges.py, migration 22) gives its identifiers
back exactly, whatever their form, and one set always gives the same bytes and key."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from contactstream.adapters import edges
from contactstream.projections.identifiers import KINDS

HASH = hashlib.sha256(b"a@x.org").hexdigest()


def test_a_keyed_hash_takes_33_bytes_and_comes_back_as_it_was() -> None:
    idents = [("visitor_id", f"visitor_id:{HASH}"), ("email", f"email:{HASH}"),
              ("id", "c-09421")]
    stored = edges.encode(idents)
    assert len(stored) == 33 + 33 + (1 + 2 + 4 + 7)
    assert edges.decode(stored) == sorted(idents)


def test_what_only_looks_like_a_keyed_hash_is_kept_as_text() -> None:
    for value in (f"email:{HASH.upper()}", f"email:{HASH[:-1]}", f"email:{HASH}0",
                  f"phone:{HASH}", f"email:{HASH[:2]} {HASH[2:-1]}", f"mail:{HASH}"):
        stored = edges.encode([("email", value)])
        assert stored[0] == len("email") and edges.decode(stored) == [("email", value)]


def test_one_set_one_key_in_any_order() -> None:
    a = [("id", "c-1"), ("email", f"email:{HASH}")]
    assert edges.row(a) == edges.row(reversed(a)) == edges.row(frozenset(a))
    assert edges.row(a)[0] != edges.row(a[:1])[0]


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
hashed = st.sampled_from(KINDS).flatmap(
    lambda k: st.binary(min_size=32, max_size=32).map(lambda b: (k, f"{k}:{b.hex()}")))
# any kind of up to 20 characters (at most 80 bytes: a kind's length takes 7 bits)
kind = st.one_of(st.sampled_from(KINDS), st.text(st.characters(exclude_categories=("Cs",)),
                                                  min_size=1, max_size=20))
ident = st.one_of(hashed, st.tuples(kind, text))


@given(st.frozensets(ident, min_size=1, max_size=5))
def test_any_edge_comes_back_exactly(idents: frozenset[tuple[str, str]]) -> None:
    assert edges.decode(edges.encode(idents)) == sorted(idents)
