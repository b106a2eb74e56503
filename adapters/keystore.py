"""Per-customer data keys, wrapped by the master key: the port ``DataKeyStore`` and its two
adapters, the forgetting SQLite file of the embedded default and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, Self

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .crypto import (
    KEY_BYTES,
    NONCE_BYTES,
    CryptoError,
    hash_digest,
    hashing_key,
    identifier_hash,
    wrapping_key,
)
from .database import Database
from .logging import get_logger

log = get_logger(__name__)

KEYS_FILE = "keys.sqlite"
CUSTOMER_KIND = "customer_key"  # the identifier_hash kind of customer keys
# The master-key check value's label: the same in both adapters, so a keys.sqlite brought
# over to PostgreSQL row by row keeps its check value.
CHECK_LABEL = b"contactstream keys.sqlite check"
SYNC_INTERVAL = 1.0  # s; how stale PostgresKeyStore's caches may be after another's destroy

WAL_LIMIT = 1 << 20  # bytes of keys.sqlite-wal kept after a checkpoint

# Format 2 (issue 12's footprint): a customer hash ("customer_key:" and 64 hex digits) is
# kept as its 32 bytes (``stored_hash``; any other text as it is), and ``customers`` has no
# rowid (its primary key is the table): ~280 bytes a data key instead of ~520. A file of
# format 1 is converted when a store opens it (``_upgrade``).
FORMAT = "2"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
  customer_hash PRIMARY KEY,
  generation INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS data_keys (
  key_id TEXT PRIMARY KEY,
  customer_hash TEXT NOT NULL,
  generation INTEGER NOT NULL,
  wrapped BLOB,
  created_at TEXT NOT NULL,
  destroyed_at TEXT,
  UNIQUE (customer_hash, generation)
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('destroy_seq', '0');
INSERT OR IGNORE INTO meta (name, value) VALUES ('format', '2');
"""
_HASH_PREFIX = f"{CUSTOMER_KIND}:"


def stored_hash(chash: str) -> bytes | str:
    """How keys.sqlite keeps a customer hash: the 32 bytes of ``customer_key:<64 hex>``,
    any other text as it is (a text and bytes never compare equal in SQLite)."""
    return hash_digest(CUSTOMER_KIND, chash) or chash


def shown_hash(value: bytes | str) -> str:
    """The customer hash ``stored_hash`` kept."""
    return _HASH_PREFIX + value.hex() if isinstance(value, bytes) else value

# (key id, wrapped key or None once destroyed) of a customer's current generation
Current = tuple[str, bytes | None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DataKeyStore(Protocol):
    """Data keys per customer key, generation by generation; ``destroy`` shreds them."""

    def customer_hash(self, customer_key: str) -> str: ...

    def key_for(self, customer_key: str) -> tuple[str, bytes]:
        """(key id, key) of the customer key's current generation, created if missing."""
        ...

    def prepare(self, customer_keys: Iterable[str]) -> None:
        """Create the missing keys of many customers in one transaction."""
        ...

    def get(self, key_id: str) -> bytes | None:
        """The key, None once destroyed (or never known: see ``is_destroyed``)."""
        ...

    def is_destroyed(self, key_id: str) -> bool:
        """Exact, whoever destroyed it and however recently."""
        ...

    def key_ids_of(self, customer_key: str) -> list[str]:
        """Every key id the customer key ever had, oldest generation first."""
        ...

    def destroy(self, key_ids: Iterable[str]) -> int:
        """Shred the keys and move their customers to a new generation; returns how many
        were live."""
        ...

    def close(self) -> None: ...


class _CachingKeyStore(ABC):
    """What both adapters share: wrapping, the caches and the generation logic. An
    adapter supplies the storage steps (the abstract methods), each one transaction."""

    where: str  # names the store in errors

    def __init__(self, master_key: bytes, cache_size: int) -> None:
        self.cache_size = cache_size
        self._wrap = AESGCM(wrapping_key(master_key))
        self._hash_key = hashing_key(master_key)
        self._lock = threading.Lock()
        self._by_customer: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._by_id: OrderedDict[str, bytes] = OrderedDict()
        self._destroyed: set[str] = set()  # destruction is final: safe to keep forever

    # -- storage steps -----------------------------------------------------------------------
    @abstractmethod
    def _stale(self, force: bool) -> bool:
        """True when another process destroyed keys since we last looked; ``force`` asks
        to look now (an adapter may otherwise look only every so often)."""

    @abstractmethod
    def _current(self, chashes: Sequence[str]) -> dict[str, Current]:
        """The current generation's key of each customer hash that has one."""

    @abstractmethod
    def _create(self, chashes: Sequence[str]) -> None:
        """A key for each customer hash's current generation, in one transaction; a
        racing process's key wins, ours is dropped."""

    @abstractmethod
    def _lookup(self, key_id: str) -> tuple[bytes | None, str | None] | None:
        """(wrapped, destroyed_at) of a key id, None when never known."""

    @abstractmethod
    def _key_ids(self, chash: str) -> list[str]: ...

    @abstractmethod
    def _shred(self, key_ids: list[str]) -> list[str]:
        """Drop the wrapped bytes of the live ones among ``key_ids``, move their customers
        to the next generation and count the destruction, in one transaction; returns
        the key ids that were live."""

    @abstractmethod
    def _scrub(self) -> None:
        """After a committed ``_shred``, outside the lock: get the old bytes off the disk."""

    # -- shared ----------------------------------------------------------------------------
    def _check_value(self) -> str:
        return hmac.new(self._hash_key, CHECK_LABEL, hashlib.sha256).hexdigest()

    def _new_key(self) -> tuple[str, bytes]:
        """(key id, wrapped key) of a fresh data key."""
        key_id = secrets.token_hex(10)
        nonce = os.urandom(NONCE_BYTES)
        return key_id, nonce + self._wrap.encrypt(nonce, os.urandom(KEY_BYTES), key_id.encode())

    def _sync(self, force: bool = False) -> None:
        if self._stale(force):
            self._by_customer.clear()
            self._by_id.clear()

    def _remember(self, customer_key: str | None, key_id: str, key: bytes) -> None:
        self._by_id[key_id] = key
        if len(self._by_id) > self.cache_size:
            self._by_id.popitem(last=False)
        if customer_key is not None:
            self._by_customer[customer_key] = (key_id, key)
            if len(self._by_customer) > self.cache_size:
                self._by_customer.popitem(last=False)

    def _unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return self._wrap.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                      key_id.encode())
        except InvalidTag:
            raise CryptoError(f"{self.where}: key {key_id!r} cannot be unwrapped") from None

    # -- the port --------------------------------------------------------------------------
    def customer_hash(self, customer_key: str) -> str:
        return identifier_hash(self._hash_key, CUSTOMER_KIND, customer_key)

    def key_for(self, customer_key: str) -> tuple[str, bytes]:
        """(key id, key) of the customer key's current generation, created if missing."""
        with self._lock:
            self._sync()
            hit = self._by_customer.get(customer_key)
            if hit is not None:
                self._by_customer.move_to_end(customer_key)
                return hit
            self._sync(force=True)  # going to the store anyway
            chash = self.customer_hash(customer_key)
            for _ in range(5):
                row = self._current([chash]).get(chash)
                if row is None or row[1] is None:
                    self._create([chash])
                    row = self._current([chash]).get(chash)
                if row is not None and row[1] is not None:
                    key = self._unwrap(row[0], row[1])
                    self._remember(customer_key, row[0], key)
                    return row[0], key
            raise CryptoError("could not create a data key (destroyed concurrently?)")

    def prepare(self, customer_keys: Iterable[str]) -> None:
        """Create the missing keys of many customers in one transaction (one flush), so a
        batch of new customers does not pay one each, and unwrap them into the cache. A
        batch also looks for other processes' destructions first, so no batch encrypts
        under a key destroyed before it began."""
        with self._lock:
            self._sync(force=True)
            hashes = {ck: self.customer_hash(ck) for ck in set(customer_keys)
                      if ck not in self._by_customer}
            if not hashes:
                return
            rows = self._current(list(hashes.values()))
            need = sorted({h for h in hashes.values() if rows.get(h, (None, None))[1] is None})
            if need:
                self._create(need)
                rows.update(self._current(need))
            for ck, chash in hashes.items():
                key_id, wrapped = rows.get(chash, ("", None))
                if wrapped is not None:
                    self._remember(ck, key_id, self._unwrap(key_id, wrapped))
        # a key destroyed in between is left to key_for, which retries

    def get(self, key_id: str) -> bytes | None:
        """The key, None once destroyed (or never known: see ``is_destroyed``)."""
        with self._lock:
            self._sync()
            key = self._by_id.get(key_id)
            if key is not None:
                self._by_id.move_to_end(key_id)
                return key
            if key_id in self._destroyed:
                return None
            self._sync(force=True)
            row = self._lookup(key_id)
            if row is None:
                return None
            if row[0] is None:
                self._destroyed.add(key_id)
                return None
            key = self._unwrap(key_id, row[0])
            self._remember(None, key_id, key)
            return key

    def is_destroyed(self, key_id: str) -> bool:
        with self._lock:
            if key_id in self._destroyed:
                return True
            row = self._lookup(key_id)
            if row is not None and row[1] is not None:
                self._destroyed.add(key_id)
                return True
            return False

    def key_ids_of(self, customer_key: str) -> list[str]:
        """Every key id the customer key ever had, oldest generation first."""
        with self._lock:
            return self._key_ids(self.customer_hash(customer_key))

    def destroy(self, key_ids: Iterable[str]) -> int:
        """Shred the keys: the wrapped bytes are deleted, the customer key moves to a new
        generation. Returns how many were live."""
        ids = list(dict.fromkeys(key_ids))
        with self._lock:
            done = self._shred(ids) if ids else []
            self._destroyed.update(done)
            self._by_customer.clear()
            self._by_id.clear()
        if done:
            self._scrub()
        return len(done)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None: ...


class ForgettingKeyStore(_CachingKeyStore):
    """The embedded default's key store: a SQLite file of its own (mode 0600) that
    forgets a destroyed key.

    It stays SQLite while everything else moved to PostgreSQL because here an erasure
    really removes the wrapped key from the disk: ``secure_delete`` zeroes the freed
    bytes in the database file, and ``destroy`` truncates the WAL, which held the old page
    versions. PostgreSQL keeps old row versions, WAL segments and backups that this file
    does not (see ``PostgresKeyStore``). Copies outside the file (backups, snapshots of
    the volume) are the operator's to keep short-lived.

    Stored: key id, the customer key's identifier_hash (never the customer key; its 32
    bytes, format 2: ``stored_hash``), the generation and the key wrapped with AES-GCM
    under the HKDF wrapping key (associated data = key id). Several processes may share
    the file: creation is INSERT OR IGNORE then SELECT, and every process drops its
    caches when another one destroyed keys (``PRAGMA data_version``, checked on every
    call).
    """

    def __init__(self, path: Path, master_key: bytes, cache_size: int = 65536) -> None:
        super().__init__(master_key, cache_size)
        self.path = path
        self.where = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # wrapped keys are no one else's business either
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.execute("PRAGMA journal_mode=WAL")
        # a key must outlive any event encrypted with it; shredded bytes are zeroed
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA secure_delete=ON")
        # the write-ahead log is cut back to 1 MB after each checkpoint instead of staying
        # at its high-water mark (~4 MB): issue 12's footprint
        self._conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        self._upgrade()
        self._conn.executescript(_SCHEMA)
        self._check_master_key()
        self._data_version = self._pragma_data_version()
        self._destroy_seq = self._read_destroy_seq()

    def _upgrade(self) -> None:
        """A file of format 1 (hashes as text, ``customers`` with a rowid) to format 2, in
        one transaction: a process that opens it meanwhile waits, then finds it done.
        The old pages are zeroed (secure_delete) as they are freed."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            names = {n for (n,) in self._conn.execute("SELECT name FROM sqlite_master")}
            if "customers" not in names or self._conn.execute(
                    "SELECT 1 FROM meta WHERE name = 'format'").fetchone():
                return  # a new file, or converted already
            self._conn.create_function("stored_hash", 1, stored_hash, deterministic=True)
            self._conn.execute("CREATE TABLE customers_v2 (customer_hash PRIMARY KEY,"
                               " generation INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID")
            self._conn.execute("INSERT INTO customers_v2 SELECT stored_hash(customer_hash),"
                               " generation FROM customers")
            self._conn.execute("DROP TABLE customers")
            self._conn.execute("ALTER TABLE customers_v2 RENAME TO customers")
            self._conn.execute("UPDATE data_keys SET customer_hash = stored_hash(customer_hash)")
            self._conn.execute("INSERT INTO meta (name, value) VALUES ('format', ?)", (FORMAT,))
        log.info("keystore.upgraded", to_format=FORMAT)

    def _check_master_key(self) -> None:
        check = self._check_value()
        self._conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('key_check', ?)",
                           (check,))
        stored = self._conn.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
        if stored[0] != check:
            raise CryptoError(f"{self.path}: written under another master key")

    def _pragma_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _read_destroy_seq(self) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE name = 'destroy_seq'").fetchone()
        return str(row[0])

    def _stale(self, force: bool) -> bool:
        version = self._pragma_data_version()  # cheap enough to ask every time
        if version == self._data_version:
            return False
        self._data_version = version
        seq = self._read_destroy_seq()
        if seq == self._destroy_seq:
            return False
        self._destroy_seq = seq
        return True

    def _current(self, chashes: Sequence[str]) -> dict[str, Current]:
        found: dict[str, Current] = {}
        for chash in chashes:
            row = self._conn.execute(
                "SELECT k.key_id, k.wrapped FROM customers c JOIN data_keys k"
                " ON k.customer_hash = c.customer_hash AND k.generation = c.generation"
                " WHERE c.customer_hash = ?", (stored_hash(chash),)).fetchone()
            if row is not None:
                found[chash] = (row[0], row[1])
        return found

    def _create(self, chashes: Sequence[str]) -> None:
        with self._conn:  # one transaction; a racing process's row wins, ours is ignored
            self._conn.execute("BEGIN IMMEDIATE")
            for chash in chashes:
                key_id, wrapped = self._new_key()
                kept = stored_hash(chash)
                self._conn.execute(
                    "INSERT OR IGNORE INTO customers (customer_hash, generation) VALUES (?, 0)",
                    (kept,))
                self._conn.execute(
                    "INSERT OR IGNORE INTO data_keys"
                    " (key_id, customer_hash, generation, wrapped, created_at)"
                    " SELECT ?, customer_hash, generation, ?, ? FROM customers"
                    " WHERE customer_hash = ?", (key_id, wrapped, _now(), kept))

    def _lookup(self, key_id: str) -> tuple[bytes | None, str | None] | None:
        row = self._conn.execute("SELECT wrapped, destroyed_at FROM data_keys WHERE key_id = ?",
                                 (key_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def _key_ids(self, chash: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT key_id FROM data_keys WHERE customer_hash = ? ORDER BY generation",
            (stored_hash(chash),)).fetchall()
        return [r[0] for r in rows]

    def _shred(self, key_ids: list[str]) -> list[str]:
        done: list[str] = []
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            for key_id in key_ids:
                row = self._conn.execute(
                    "SELECT customer_hash, generation FROM data_keys"
                    " WHERE key_id = ? AND wrapped IS NOT NULL", (key_id,)).fetchone()
                if row is None:
                    continue
                self._conn.execute(
                    "UPDATE data_keys SET wrapped = NULL, destroyed_at = ? WHERE key_id = ?",
                    (_now(), key_id))
                self._conn.execute(
                    "UPDATE customers SET generation = MAX(generation, ?)"
                    " WHERE customer_hash = ?", (row[1] + 1, row[0]))
                done.append(key_id)
            if done:
                self._conn.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1"
                    " WHERE name = 'destroy_seq'")
        # our own destruction: nothing to drop again on the next call
        self._destroy_seq = self._read_destroy_seq()
        self._data_version = self._pragma_data_version()
        return done

    def _scrub(self) -> None:
        with self._lock:
            # the old page versions (with the wrapped key) live in the WAL until then
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_PG_CURRENT = (
    "SELECT c.customer_hash, k.key_id, k.wrapped FROM key_customers c JOIN data_keys k"
    " ON k.customer_hash = c.customer_hash AND k.generation = c.generation"
    " WHERE c.customer_hash = ANY(%s)")
_PG_NEW_CUSTOMER = ("INSERT INTO key_customers (customer_hash, generation) VALUES (%s, 0)"
                    " ON CONFLICT DO NOTHING")
_PG_NEW_KEY = (
    "INSERT INTO data_keys (key_id, customer_hash, generation, wrapped, created_at)"
    " SELECT %s, customer_hash, generation, %s, %s FROM key_customers"
    " WHERE customer_hash = %s ON CONFLICT DO NOTHING")
# wrapped set to NULL and the customers moved past the shredded generations, in one go
_PG_SHRED = """
WITH shredded AS (
  UPDATE data_keys SET wrapped = NULL, destroyed_at = %s
  WHERE key_id = ANY(%s) AND wrapped IS NOT NULL
  RETURNING key_id, customer_hash, generation),
moved AS (
  UPDATE key_customers c SET generation = GREATEST(c.generation, s.next)
  FROM (SELECT customer_hash, MAX(generation) + 1 AS next FROM shredded
        GROUP BY customer_hash) s
  WHERE c.customer_hash = s.customer_hash)
SELECT key_id FROM shredded"""


class PostgresKeyStore(_CachingKeyStore):
    """Data keys in PostgreSQL (tables ``key_meta``, ``key_customers``, ``data_keys``), for
    deployments that keep all state in one managed server.

    Same rows and semantics as ``ForgettingKeyStore``: the wrapped key, never the
    customer key; the master key's check value in ``key_meta`` (another master key is
    refused); ``destroy_seq`` in ``key_meta`` counts destructions, and every process
    reads it at most every ``sync_interval`` seconds, on a cache miss and at each
    ``prepare``, dropping its caches when it moved. So a key another process destroyed
    can still be served from this process's cache for up to ``sync_interval``;
    ``is_destroyed`` always asks the database.

    **What an erasure leaves behind.** ``destroy`` sets ``wrapped`` to NULL and commits,
    then runs ``VACUUM data_keys`` (outside any transaction), but PostgreSQL does not
    forget the way the SQLite file does:

    - the old row version with the wrapped key stays in the table's page as a dead tuple
      until a VACUUM prunes it (and the next checkpoint writes the page); the VACUUM
      here shortens that window, but cannot prune while an older snapshot is open (a
      long transaction, a running ``pg_dump``, a replica with ``hot_standby_feedback``),
      and is skipped with a warning (logged as ``keystore.vacuum_notice``) when the
      role neither owns the table nor holds MAINTAIN on it; autovacuum prunes it later;
    - the WAL holds the key from its INSERT (and full-page images of its page) until the
      segments are recycled, and recycled segments are overwritten, not zeroed;
    - base backups, archived WAL (``archive_command``, PITR), streaming or logical
      replicas and ``pg_dump`` files keep it for as long as they are kept.

    Any such copy decrypts that key's events together with the master key, so keep
    backups and WAL archives within the erasure deadline and never next to the master
    key; where that cannot be promised, use the forgetting store.
    """

    def __init__(self, db: Database, master_key: bytes, cache_size: int = 65536,
                 sync_interval: float = SYNC_INTERVAL) -> None:
        super().__init__(master_key, cache_size)
        self.db = db
        self.where = "PostgreSQL key store"
        self.sync_interval = sync_interval
        check = self._check_value()
        with db.tx() as conn:
            conn.execute("INSERT INTO key_meta (name, value) VALUES ('destroy_seq', '0'),"
                         " ('key_check', %s) ON CONFLICT (name) DO NOTHING", (check,))
            row = conn.execute("SELECT value FROM key_meta WHERE name = 'key_check'").fetchone()
        if row is None or row[0] != check:
            raise CryptoError(f"{self.where}: written under another master key")
        self._seq = self._read_seq()
        self._checked = time.monotonic()

    def _read_seq(self) -> str:
        return str(self.db.scalar("SELECT value FROM key_meta WHERE name = 'destroy_seq'"))

    def _stale(self, force: bool) -> bool:
        now = time.monotonic()
        if not force and now - self._checked < self.sync_interval:
            return False
        self._checked = now
        seq = self._read_seq()
        if seq == self._seq:
            return False
        self._seq = seq
        return True

    def _current(self, chashes: Sequence[str]) -> dict[str, Current]:
        rows = self.db.all(_PG_CURRENT, (list(chashes),))
        return {chash: (key_id, wrapped) for chash, key_id, wrapped in rows}

    def _create(self, chashes: Sequence[str]) -> None:
        # sorted: two processes creating overlapping batches wait for each other in the
        # same order instead of deadlocking
        ordered = sorted(chashes)
        now = _now()
        with self.db.tx() as conn:
            cur = conn.cursor()
            cur.executemany(_PG_NEW_CUSTOMER, [(h,) for h in ordered])
            cur.executemany(_PG_NEW_KEY, [(*self._new_key(), now, h) for h in ordered])

    def _lookup(self, key_id: str) -> tuple[bytes | None, str | None] | None:
        row = self.db.one("SELECT wrapped, destroyed_at FROM data_keys WHERE key_id = %s",
                          (key_id,))
        return None if row is None else (row[0], row[1])

    def _key_ids(self, chash: str) -> list[str]:
        rows = self.db.all("SELECT key_id FROM data_keys WHERE customer_hash = %s"
                           " ORDER BY generation", (chash,))
        return [r[0] for r in rows]

    def _shred(self, key_ids: list[str]) -> list[str]:
        with self.db.tx() as conn:
            # rows locked in one order, so two erasures sharing keys cannot deadlock
            conn.execute("SELECT 1 FROM data_keys WHERE key_id = ANY(%s) ORDER BY key_id"
                         " FOR UPDATE", (key_ids,))
            done = [r[0] for r in conn.execute(_PG_SHRED, (_now(), key_ids)).fetchall()]
            seq = None
            if done:
                row = conn.execute(
                    "UPDATE key_meta SET value = (value::bigint + 1)::text"
                    " WHERE name = 'destroy_seq' RETURNING value").fetchone()
                seq = row[0] if row else None
        if seq is not None:  # only once committed: our own destruction is no news to us
            self._seq = str(seq)
        return done

    def _scrub(self) -> None:
        notices: list[str] = []

        def notice(diag: psycopg.errors.Diagnostic) -> None:
            notices.append(str(diag.message_primary))
        try:
            with self.db.autocommit() as conn:  # VACUUM refuses a transaction block
                conn.add_notice_handler(notice)
                try:
                    conn.execute("VACUUM data_keys")
                finally:
                    conn.remove_notice_handler(notice)
        except psycopg.Error as exc:  # the keys are destroyed already; only the window stays
            log.warning("keystore.vacuum_failed", error=type(exc).__name__)
        for message in notices:  # e.g. permission denied: skipped
            log.warning("keystore.vacuum_notice", message=message)

    def close(self) -> None:
        """Nothing of its own to release: the database belongs to the composition root."""
