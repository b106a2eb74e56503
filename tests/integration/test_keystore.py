"""The data-key store (crypto-shredding) behind its port: the same behaviour from the
forgetting SQLite file and from PostgreSQL, then what each adapter adds on its own."""

from __future__ import annotations

import base64
import multiprocessing
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from contactstream.adapters.crypto import (
    CryptoError,
    FieldCipher,
    load_master_key,
    new_master_key,
    wrapping_key,
)
from contactstream.adapters.database import Database
from contactstream.adapters.keystore import (
    SYNC_INTERVAL,
    WAL_LIMIT,
    DataKeyStore,
    ForgettingKeyStore,
    PostgresKeyStore,
    shown_hash,
    stored_hash,
)

pytestmark = pytest.mark.integration

CUSTOMER_KEY = "c-secret-customer-4711"
KINDS = ["forgetting", "postgres"]

Opener = Callable[[bytes], DataKeyStore]


@pytest.fixture
def master(tmp_path: Path) -> bytes:
    return load_master_key(None, tmp_path / "data")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def where(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The keys' home: a file for the forgetting store, a database URL for PostgreSQL."""
    if kind == "forgetting":
        return str(tmp_path / "data" / "keys.sqlite")
    return str(request.getfixturevalue("database_url"))


def _open(kind: str, where: str, master: bytes, sync_interval: float = SYNC_INTERVAL,
          ) -> tuple[DataKeyStore, Database | None]:
    if kind == "forgetting":
        return ForgettingKeyStore(Path(where), master), None
    db = Database(where, max_size=2)  # a pool of its own, as another process would have
    try:
        return PostgresKeyStore(db, master, sync_interval=sync_interval), db
    except BaseException:
        db.close()
        raise


@pytest.fixture
def open_store(kind: str, where: str) -> Iterator[Opener]:
    """Opens a store on the test's keys: each call is another process (or a restart).
    PostgreSQL stores look for others' destructions on every call unless told otherwise,
    as the forgetting store does."""
    opened: list[tuple[DataKeyStore, Database | None]] = []

    def open_(master: bytes) -> DataKeyStore:
        pair = _open(kind, where, master, sync_interval=0.0)
        opened.append(pair)
        return pair[0]
    yield open_
    for store, db in opened:
        store.close()
        if db is not None:
            db.close()


@pytest.fixture
def store(open_store: Opener, master: bytes) -> DataKeyStore:
    return open_store(master)


def _cells(kind: str, where: str) -> list[object]:
    """Every value the key store's tables hold."""
    if kind == "forgetting":
        conn = sqlite3.connect(where)
        try:
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")]
            return [c for t in tables for row in conn.execute(f"SELECT * FROM {t}") for c in row]
        finally:
            conn.close()
    with psycopg.connect(where) as pg:
        return [c for t in ("key_meta", "key_customers", "data_keys")
                for row in pg.execute(f"SELECT * FROM {t}") for c in row]


def _row(kind: str, where: str, key_id: str) -> tuple[object, ...]:
    sql = "SELECT key_id, customer_hash, wrapped, destroyed_at FROM data_keys WHERE key_id = "
    if kind == "forgetting":
        conn = sqlite3.connect(where)
        try:
            return tuple(conn.execute(sql + "?", (key_id,)).fetchone())
        finally:
            conn.close()
    with psycopg.connect(where) as pg:
        row = pg.execute(sql + "%s", (key_id,)).fetchone()
    assert row is not None
    return tuple(bytes(c) if isinstance(c, memoryview) else c for c in row)


# -- the port: both adapters ---------------------------------------------------------------

def test_destroy_shreds_the_key(kind: str, where: str, store: DataKeyStore,
                                open_store: Opener, master: bytes) -> None:
    key_id, key = store.key_for(CUSTOMER_KEY)
    token = FieldCipher(store).encrypt(key_id, key, "Kovács Anna")
    wrapped = _row(kind, where, key_id)[2]
    assert isinstance(wrapped, bytes) and len(wrapped) == 12 + 32 + 16

    assert store.destroy([key_id, key_id, "no-such-key"]) == 1
    assert store.destroy([key_id]) == 0
    assert FieldCipher(store).decrypt(token) is None
    assert store.get(key_id) is None and store.is_destroyed(key_id)
    assert not store.is_destroyed("no-such-key") and store.get("no-such-key") is None
    assert not any(isinstance(c, bytes) and (wrapped in c or key in c)
                   for c in _cells(kind, where))
    row = _row(kind, where, key_id)
    chash = store.customer_hash(CUSTOMER_KEY)  # keys.sqlite keeps its 32 bytes
    assert row[0] == key_id and row[1] == (stored_hash(chash) if kind == "forgetting" else chash)
    assert row[2] is None and row[3] is not None

    new_id, new_key = store.key_for(CUSTOMER_KEY)  # writes again: a new customer key
    assert new_id != key_id and new_key != key
    assert store.key_ids_of(CUSTOMER_KEY) == [key_id, new_id]
    again = open_store(master)  # a restart agrees
    assert again.key_for(CUSTOMER_KEY) == (new_id, new_key)
    assert again.get(key_id) is None and again.is_destroyed(key_id)


def test_two_stores_on_the_same_keys_agree(open_store: Opener, master: bytes) -> None:
    a, b = open_store(master), open_store(master)
    kid, key = a.key_for(CUSTOMER_KEY)
    assert b.key_for(CUSTOMER_KEY) == (kid, key)
    assert b.get(kid) == key
    token = FieldCipher(a).encrypt(kid, key, "سلام")
    assert FieldCipher(b).decrypt(token) == "سلام"
    # b destroys: a's caches must not keep the key alive
    assert b.destroy([kid]) == 1
    assert a.get(kid) is None
    assert FieldCipher(a).decrypt(token) is None
    new_a = a.key_for(CUSTOMER_KEY)
    assert new_a[0] != kid and b.key_for(CUSTOMER_KEY) == new_a


def _race(args: tuple[str, str, str]) -> list[str]:
    kind, where, master_b64 = args
    store, db = _open(kind, where, base64.b64decode(master_b64))
    try:
        return [store.key_for(f"cust-{i}")[0] for i in range(30)]
    finally:
        store.close()
        if db is not None:
            db.close()


def test_processes_racing_to_create_agree(kind: str, where: str) -> None:
    master = new_master_key()
    store, db = _open(kind, where, base64.b64decode(master))
    store.close()
    if db is not None:
        db.close()  # no pool threads in the parent when it forks
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_race, [(kind, where, master)] * 4)
    assert all(r == results[0] for r in results)
    assert len(set(results[0])) == 30


def test_refuses_another_master_key(open_store: Opener, master: bytes) -> None:
    open_store(master)
    with pytest.raises(CryptoError, match="another master key"):
        open_store(base64.b64decode(new_master_key()))
    assert open_store(master).key_for("c-1")  # the right key still opens it


def test_holds_no_customer_key_and_no_master_key(kind: str, where: str, store: DataKeyStore,
                                                 master: bytes) -> None:
    for i in range(20):
        store.key_for(f"{CUSTOMER_KEY}-{i}")
    kid, _ = store.key_for(CUSTOMER_KEY)
    store.destroy([kid])
    store.key_for(CUSTOMER_KEY)
    cells = _cells(kind, where)
    assert len(cells) > 20
    assert not any(isinstance(c, str) and CUSTOMER_KEY in c for c in cells)
    secrets_ = (master, wrapping_key(master), CUSTOMER_KEY.encode())
    assert not any(isinstance(c, bytes) and any(s in c for s in secrets_) for c in cells)


def test_prepare_creates_many_keys_at_once_and_key_for_agrees(open_store: Opener,
                                                             master: bytes) -> None:
    store = open_store(master)
    store.prepare([f"c-{i}" for i in range(50)] + ["c-1"])
    store.prepare([])
    other = open_store(master)  # another process
    assert all(store.key_for(f"c-{i}") == other.key_for(f"c-{i}") for i in range(50))
    assert len({store.key_for(f"c-{i}")[0] for i in range(50)}) == 50


# -- the forgetting store: the bytes leave the file ------------------------------------------

def _file_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_forgetting_store_leaves_no_wrapped_key_on_disk(tmp_path: Path, master: bytes) -> None:
    path = tmp_path / "keys.sqlite"
    with ForgettingKeyStore(path, master) as store:
        key_id, key = store.key_for(CUSTOMER_KEY)
        wrapped = _row("forgetting", str(path), key_id)[2]
        assert isinstance(wrapped, bytes) and wrapped in _file_bytes(path)  # proves the check
        store.destroy([key_id])
        assert wrapped not in _file_bytes(path) and key not in _file_bytes(path)
        assert CUSTOMER_KEY.encode() not in _file_bytes(path)
        assert CUSTOMER_KEY.encode("utf-16-le") not in _file_bytes(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_key_file_s_log_is_cut_back_after_a_checkpoint(tmp_path: Path,
                                                          master: bytes) -> None:
    """Its write-ahead log does not stay at its high-water mark (issue 12's footprint)."""
    path = tmp_path / "keys.sqlite"
    wal = tmp_path / "keys.sqlite-wal"
    with ForgettingKeyStore(path, master) as store:
        for batch in range(25):  # thousands of pages through the log
            store.prepare([f"customer-{batch}-{i}" for i in range(1000)])
        peak = wal.stat().st_size
        with sqlite3.connect(path) as other:
            other.execute("PRAGMA wal_checkpoint(PASSIVE)")
        store.prepare(["one-more"])  # a write after the checkpoint starts the log anew
        assert peak > 2 * WAL_LIMIT
        assert wal.stat().st_size <= WAL_LIMIT


# -- PostgreSQL: what it adds ------------------------------------------------------------------

def test_postgres_destroy_reaches_another_instance(database_url: str, master: bytes) -> None:
    """The default check interval: a fresh instance and ``is_destroyed`` know at once; an
    instance that had the key cached forgets it within the interval."""
    dbs = [Database(database_url, max_size=2) for _ in range(3)]
    try:
        a = PostgresKeyStore(dbs[0], master)
        b = PostgresKeyStore(dbs[1], master, sync_interval=0.3)
        kid, key = a.key_for(CUSTOMER_KEY)
        assert b.get(kid) == key  # now in b's cache
        assert a.destroy([kid]) == 1
        assert b.is_destroyed(kid)
        c = PostgresKeyStore(dbs[2], master)
        assert c.get(kid) is None and c.is_destroyed(kid)
        time.sleep(0.35)
        assert b.get(kid) is None
        assert b.key_for(CUSTOMER_KEY)[0] not in (kid, None)
    finally:
        for db in dbs:
            db.close()


def test_postgres_prepare_sees_a_destruction_at_once(database_url: str, master: bytes) -> None:
    """A batch never encrypts under a key another process destroyed before it began,
    even inside the cache's check interval."""
    dbs = [Database(database_url, max_size=2) for _ in range(2)]
    try:
        ingest = PostgresKeyStore(dbs[0], master, sync_interval=3600)
        api = PostgresKeyStore(dbs[1], master)
        ingest.prepare([CUSTOMER_KEY])
        old_id, _ = ingest.key_for(CUSTOMER_KEY)
        api.destroy([old_id])
        ingest.prepare([CUSTOMER_KEY, "c-other"])
        new_id, _ = ingest.key_for(CUSTOMER_KEY)
        assert new_id != old_id and api.key_ids_of(CUSTOMER_KEY) == [old_id, new_id]
    finally:
        for db in dbs:
            db.close()


def test_postgres_destroy_vacuums_the_wrapped_key_out_of_the_table(database_url: str,
                                                                   master: bytes) -> None:
    """No page of ``data_keys`` keeps the old row version (the WAL still does: see the
    adapter's docstring)."""
    db = Database(database_url, max_size=2)
    try:
        store = PostgresKeyStore(db, master)
        for i in range(30):
            store.key_for(f"c-{i}")
        key_id, _ = store.key_for(CUSTOMER_KEY)
        wrapped = db.scalar("SELECT wrapped FROM data_keys WHERE key_id = %s", (key_id,))
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")

            def pages() -> bytes:
                """Every page of the table, raw: live, dead and free space alike."""
                rows = conn.execute(
                    "SELECT get_raw_page('data_keys', n::int) FROM generate_series(0,"
                    " pg_relation_size('data_keys') / current_setting('block_size')::int - 1)"
                    " AS n").fetchall()
                assert rows
                return b"".join(bytes(r[0]) for r in rows)
            assert bytes(wrapped) in pages()  # so the check below proves something
            store.destroy([key_id])
            assert bytes(wrapped) not in pages()
    finally:
        db.close()


def test_postgres_store_and_forgetting_store_share_the_check_value(
        tmp_path: Path, database_url: str, master: bytes) -> None:
    """keys.sqlite's check value carried over to key_meta opens under the same master key."""
    ForgettingKeyStore(tmp_path / "keys.sqlite", master).close()
    conn = sqlite3.connect(tmp_path / "keys.sqlite")
    (check,) = conn.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
    conn.close()
    db = Database(database_url, max_size=2)
    try:
        db.execute("INSERT INTO key_meta (name, value) VALUES ('key_check', %s)", (check,))
        PostgresKeyStore(db, master).close()
        with pytest.raises(CryptoError, match="another master key"):
            PostgresKeyStore(db, base64.b64decode(new_master_key()))
    finally:
        db.close()


def test_a_key_store_of_format_1_is_converted_and_keeps_every_key(
        tmp_path: Path, master: bytes) -> None:
    """keys.sqlite of before (hashes as text, customers with a rowid) opens as format 2:
    the same keys, found by their customers, destroyed by them; the text nowhere left."""
    path = tmp_path / "keys.sqlite"
    with ForgettingKeyStore(path, master) as store:
        old = {ck: store.key_for(ck) for ck in ("cust-a", "cust-b", "cust-c")}
        store.destroy([old["cust-c"][0]])
        chashes = {ck: store.customer_hash(ck) for ck in old}
    conn = sqlite3.connect(path, isolation_level=None)  # back to format 1
    conn.execute("PRAGMA secure_delete=ON")
    conn.create_function("shown_hash", 1, shown_hash)
    conn.executescript("""
        CREATE TABLE customers_v1 (customer_hash TEXT PRIMARY KEY,
                                   generation INTEGER NOT NULL DEFAULT 0);
        INSERT INTO customers_v1 SELECT shown_hash(customer_hash), generation FROM customers;
        DROP TABLE customers; ALTER TABLE customers_v1 RENAME TO customers;
        UPDATE data_keys SET customer_hash = shown_hash(customer_hash);
        DELETE FROM meta WHERE name = 'format';""")
    assert {r[0] for r in conn.execute("SELECT customer_hash FROM customers")} == set(
        chashes.values())
    conn.close()

    with ForgettingKeyStore(path, master) as store:
        assert store.key_for("cust-a") == old["cust-a"]
        assert store.key_for("cust-b") == old["cust-b"]
        assert store.get(old["cust-c"][0]) is None and store.is_destroyed(old["cust-c"][0])
        assert store.key_ids_of("cust-c")[0] == old["cust-c"][0]
        assert store.destroy(store.key_ids_of("cust-a")) == 1
        assert store.get(old["cust-a"][0]) is None
    conn = sqlite3.connect(path)
    try:
        kept = {r[0] for r in conn.execute("SELECT customer_hash FROM customers")}
        assert kept == {stored_hash(h) for h in chashes.values()}
        assert all(isinstance(h, bytes) and len(h) == 32 for h in kept)
        assert conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone() == ("2",)
        assert conn.execute("SELECT COUNT(*) FROM data_keys WHERE typeof(customer_hash)"
                            " <> 'blob'").fetchone() == (0,)
    finally:
        conn.close()
    assert not any(h.encode() in path.read_bytes() for h in chashes.values())


@pytest.mark.parametrize("chash", [
    "customer_key:" + "ab" * 32, "customer_key:" + "AB" * 32, "customer_key:" + "ab" * 31,
    "customer_key:" + "zz" * 32, "customer_key: " + "ab" * 32, "other:" + "ab" * 32, ""])
def test_a_customer_hash_comes_back_as_it_was_kept(chash: str) -> None:
    kept = stored_hash(chash)
    assert shown_hash(kept) == chash
    assert isinstance(kept, bytes) == (chash == "customer_key:" + "ab" * 32)
