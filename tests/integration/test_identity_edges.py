"""The identity graph's edges keep their earliest claim, whatever order the batches that
claim them come in (one upsert over arrays a batch)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from contactstream.adapters.database import Database
from contactstream.adapters.readstore import lock_identity, write_identity

pytestmark = pytest.mark.integration

EDGE = '[["email","email:aa"],["id","id:c-1"]]'
OTHER = '[["id","id:c-1"],["phone","phone:bb"]]'


def _write(db: Database, edges: dict[str, tuple[int, str]]) -> None:
    batch = SimpleNamespace(edges=edges, new_bases={}, separations=[], links={},
                            identifiers={})
    with db.tx() as conn:
        lock_identity(conn)
        write_identity(conn, batch, {})


def _edges(db: Database) -> dict[str, tuple[Any, ...]]:
    return {e: (ms, ev, seq) for e, ms, ev, seq in db.all(
        "SELECT edge, claim_ms, claim_event, seq FROM identity_edges")}


def test_an_edge_keeps_its_earliest_claim_in_any_order(db: Database) -> None:
    _write(db, {EDGE: (200, "ev-b")})
    first = _edges(db)[EDGE]
    assert first[:2] == (200, "ev-b")
    _write(db, {EDGE: (300, "ev-c"), OTHER: (300, "ev-c")})  # later: the edge unchanged
    after_later = _edges(db)
    assert after_later[EDGE] == first  # not even its seq moved
    assert after_later[OTHER][:2] == (300, "ev-c")
    _write(db, {EDGE: (100, "ev-a")})  # earlier: the claim moves, with a new seq
    now = _edges(db)
    assert now[EDGE][:2] == (100, "ev-a") and now[EDGE][2] > after_later[OTHER][2]
    _write(db, {EDGE: (100, "ev-0")})  # the same instant: the smaller event id wins
    assert _edges(db)[EDGE][:2] == (100, "ev-0")
    assert len(_edges(db)) == 2


@pytest.mark.parametrize("order", list(itertools.permutations(
    [(200, "ev-b"), (300, "ev-c"), (100, "ev-a"), (100, "ev-0")])))
def test_the_earliest_claim_wins_whatever_the_batches_order(
        db: Database, order: tuple[tuple[int, str], ...]) -> None:
    for claim in order:
        _write(db, {EDGE: claim})
    assert _edges(db)[EDGE][:2] == (100, "ev-0")


def test_links_and_identifiers_written_again_unchanged_keep_their_row_version(
        db: Database) -> None:
    def write(links: dict[str, str], identifiers: dict[tuple[str, str], str]) -> None:
        batch = SimpleNamespace(edges={}, new_bases={}, separations=[], links=links,
                                identifiers=identifiers)
        with db.tx() as conn:
            lock_identity(conn)
            write_identity(conn, batch, {})

    def versions() -> tuple[Any, Any]:
        return (db.scalar("SELECT xmin::text FROM customer_links WHERE base='b-1'"),
                db.scalar("SELECT xmin::text FROM identifiers WHERE value='email:aa'"))

    write({"b-1": "c-1"}, {("email", "email:aa"): "c-1"})
    first = versions()
    write({"b-1": "c-1"}, {("email", "email:aa"): "c-1"})  # the same again
    assert versions() == first
    write({"b-1": "c-2"}, {("email", "email:aa"): "c-2"})  # a merge moved them
    moved = versions()
    assert moved[0] != first[0] and moved[1] != first[1]
    assert db.one("SELECT survivor FROM customer_links WHERE base='b-1'") == ("c-2",)
    assert db.one("SELECT customer_id FROM identifiers WHERE value='email:aa'") == ("c-2",)
