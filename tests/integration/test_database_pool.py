"""The connection pool without a check round trip: a connection the server closed is
found by its socket and replaced; reads in autocommit open no transaction."""

from __future__ import annotations

import os
import resource
import time

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from contactstream.adapters.database import Database, alive, with_database

pytestmark = pytest.mark.integration


def _backends(db: Database) -> set[int]:
    """The server pids of the pool's idle connections."""
    pids = set()
    for _ in range(db.pool.max_size):
        with db.pool.connection() as conn:
            pids.add(conn.info.backend_pid)
    return pids


def test_connections_the_server_closed_are_replaced_on_checkout(database_url: str) -> None:
    db = Database(database_url, min_size=4, max_size=4)
    try:
        db.pool.wait()
        pids = _backends(db)
        with psycopg.connect(with_database(database_url, "postgres"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                          (sorted(pids),))
            deadline = time.monotonic() + 10
            while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                                (sorted(pids),)).fetchone() != (0,):
                assert time.monotonic() < deadline
                time.sleep(0.02)
        # every pooled connection is dead now: each use still answers, on a new one
        for _ in range(db.pool.max_size + 1):
            assert db.scalar("SELECT 1") == 1
            with db.tx() as conn:
                assert conn.info.backend_pid not in pids
    finally:
        db.close()


def test_alive_tells_a_closed_connection_without_asking(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert alive(conn)
        with psycopg.connect(with_database(database_url, "postgres"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        deadline = time.monotonic() + 10
        while alive(conn):
            assert time.monotonic() < deadline, "the socket never told"
            time.sleep(0.02)


def test_reads_open_no_transaction_and_give_the_connection_back_transactional(
        db: Database) -> None:
    db.execute("CREATE TABLE pool_probe (n int)")
    with db.autocommit() as conn:
        conn.execute("SELECT 1").fetchall()
        assert conn.info.transaction_status == TransactionStatus.IDLE  # no BEGIN was sent
    # the pool's connections are transactional again: a failed block leaves nothing
    for _ in range(db.pool.max_size):
        with pytest.raises(RuntimeError), db.tx() as conn:
            conn.execute("INSERT INTO pool_probe VALUES (1)")
            raise RuntimeError("undo")
    assert db.scalar("SELECT count(*) FROM pool_probe") == 0


def test_alive_works_past_select_s_descriptor_limit(database_url: str) -> None:
    """A busy API holds many sockets: a connection's descriptor can be 1024 or more."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip("too few file descriptors allowed")
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with psycopg.connect(database_url) as conn:
            assert conn.fileno() >= 1024
            assert alive(conn)
    finally:
        for fd in filler:
            os.close(fd)
