"""The identity graph's edges keep their earliest claim, whatever order the batches that
claim them come in (one upsert over arrays a batch); edges stored as JSON text before
migration 22 are converted to its compact form, the same graph after."""

from __future__ import annotations

import hashlib
import itertools
import json
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from contactstream.adapters import edges, migrations
from contactstream.adapters.database import Database
from contactstream.adapters.readstore import ReadStoreWriter, lock_identity, write_identity
from contactstream.projections import identity as graph
from contactstream.streams.identity import Edge, IdentityKeeper

pytestmark = pytest.mark.integration

EDGE: Edge = (("email", "email:aa"), ("id", "id:c-1"))
OTHER: Edge = (("id", "id:c-1"), ("phone", "phone:bb"))


def _write(db: Database, claims: dict[Edge, tuple[int, str]]) -> None:
    batch = SimpleNamespace(edges=claims, new_bases={}, separations=[], links={},
                            identifiers={})
    with db.tx() as conn:
        lock_identity(conn)
        write_identity(conn, batch, {})


def _edges(db: Database) -> dict[Edge, tuple[Any, ...]]:
    return {tuple(edges.decode(e)): (ms, ev, seq) for e, ms, ev, seq in db.all(
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


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# edges as the worker stored them before migration 22: keyed hashes, plain values (an
# envelope never encrypted), hashes that are not in the packed form, non-ASCII
OLD_EDGES = [
    [["email", f"email:{_hex('a')}"], ["id", "C-1"]],
    [["email", f"email:{_hex('a')}"], ["visitor_id", f"visitor_id:{_hex('v')}"]],
    [["phone", f"phone:{_hex('p')}"]],
    [["email", f"email:{_hex('b')}"], ["id", "C-2"], ["phone", f"phone:{_hex('p')}"]],
    [["id", "C-3"]],
    [["email", "zoë@example.org"], ["id", "ügyfél-7"], ["phone", "+36301234567"]],
    [["email", f"email:{_hex('c').upper()}"], ["visitor_id", "visitor_id:12ab"]],
    [["id", "C-4"], ["visitor_id", "Z"], ["visitor_id", "a"]],
]


def _back_to_version_21(database_url: str) -> list[tuple[str, int, str, int]]:
    """The table as the migrations before 22 left it, holding OLD_EDGES as the worker wrote them."""
    rows = [(json.dumps(sorted(e), separators=(",", ":")), 1_000 + i, f"ev-{i}", 10 + i)
            for i, e in enumerate(OLD_EDGES)]
    with psycopg.connect(database_url) as conn:
        conn.execute("DROP TABLE identity_edges")
        conn.execute("CREATE TABLE identity_edges (edge TEXT COLLATE \"C\" PRIMARY KEY,"
                     " claim_ms BIGINT NOT NULL, claim_event TEXT COLLATE \"C\" NOT NULL,"
                     " seq BIGINT NOT NULL DEFAULT 0)")
        conn.execute("CREATE INDEX identity_edges_seq ON identity_edges (seq)")
        conn.cursor().executemany("INSERT INTO identity_edges VALUES (%s,%s,%s,%s)", rows)
        conn.execute("DELETE FROM schema_migrations WHERE version >= 22")
    return rows


def test_edges_stored_as_json_are_converted_as_the_worker_writes_them(
        database_url: str, db: Database) -> None:
    old = _back_to_version_21(database_url)
    assert migrations.migrate(database_url) == migrations.latest()
    got = {(edge_id, bytes(edge)): (ms, ev, seq) for edge_id, edge, ms, ev, seq in db.all(
        "SELECT edge_id, edge, claim_ms, claim_event, seq FROM identity_edges")}
    # the same bytes and key as the worker's own (one edge: one row, never two)
    assert got == {edges.row(map(tuple, json.loads(e))): (ms, ev, seq)
                   for e, ms, ev, seq in old}
    assert sorted(edges.decode(edge) for _, edge in got) == sorted(
        [tuple(i) for i in json.loads(e)] for e, *_ in old)
    # a later claim of a converted edge updates its row, an earlier one moves it
    _write(db, {tuple(sorted(map(tuple, OLD_EDGES[0]))): (500, "ev-x"),  # type: ignore
                tuple(sorted(map(tuple, OLD_EDGES[1]))): (5_000, "ev-y")})  # type: ignore
    assert db.scalar("SELECT COUNT(*) FROM identity_edges") == len(OLD_EDGES)
    assert sorted(db.all("SELECT claim_ms FROM identity_edges")) == [
        (500,), *[(1_000 + i,) for i in range(1, len(OLD_EDGES))]]
    assert db.scalar("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                     " WHERE conname = 'identity_edges_pkey'") == "PRIMARY KEY (edge_id)"


def test_the_graph_loaded_after_the_conversion_is_the_graph_of_before(
        database_url: str, db: Database) -> None:
    old = _back_to_version_21(database_url)
    before = graph.rebuild({frozenset(map(tuple, json.loads(e))): (ms, ev)  # type: ignore
                            for e, ms, ev, _ in old}, [], {})
    migrations.migrate(database_url)
    keeper = IdentityKeeper()
    keeper.load(ReadStoreWriter(db))
    assert keeper.state.edges == before.edges
    assert keeper.state.survivor_of_node == before.survivor_of_node
