"""Per-customer data keys, wrapped by the master key, in their own SQLite file."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .crypto import KEY_BYTES, NONCE_BYTES, CryptoError, hashing_key, identifier_hash, wrapping_key

KEYS_FILE = "keys.sqlite"
CUSTOMER_KIND = "customer_key"  # the identifier_hash kind of customer keys in keys.sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
  customer_hash TEXT PRIMARY KEY,
  generation INTEGER NOT NULL DEFAULT 0
);
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
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyStore:
    """Data keys per customer key, generation by generation; ``destroy`` shreds them.

    Stored: key id, the customer key's identifier_hash (never the customer key), the
    generation and the key wrapped with AES-GCM under the HKDF wrapping key (associated
    data = key id). Several processes may share the file: creation is INSERT OR IGNORE
    then SELECT, and every process drops its caches when another one destroyed keys.
    """

    def __init__(self, path: Path, master_key: bytes, cache_size: int = 65536) -> None:
        self.path = path
        self.cache_size = cache_size
        self._wrap = AESGCM(wrapping_key(master_key))
        self._hash_key = hashing_key(master_key)
        self._lock = threading.Lock()
        self._by_customer: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._by_id: OrderedDict[str, bytes] = OrderedDict()
        self._destroyed: set[str] = set()  # destruction is final: safe to keep forever
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # wrapped keys are no one else's business either
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.execute("PRAGMA journal_mode=WAL")
        # a key must outlive any event encrypted with it; shredded bytes are zeroed
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA secure_delete=ON")
        self._conn.executescript(_SCHEMA)
        self._check_master_key()
        self._data_version = self._pragma_data_version()
        self._destroy_seq = self._read_destroy_seq()

    def _check_master_key(self) -> None:
        check = hmac.new(self._hash_key, b"contactstream keys.sqlite check",
                         hashlib.sha256).hexdigest()
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

    def _sync(self) -> None:
        """Drop the caches when another connection destroyed keys since we last looked."""
        version = self._pragma_data_version()
        if version == self._data_version:
            return
        self._data_version = version
        seq = self._read_destroy_seq()
        if seq != self._destroy_seq:
            self._destroy_seq = seq
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
            raise CryptoError(f"{self.path}: key {key_id!r} cannot be unwrapped") from None

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
            chash = self.customer_hash(customer_key)
            for _ in range(5):
                row = self._current(chash)
                if row is None or row[1] is None:
                    self._create(chash)
                    row = self._current(chash)
                if row is not None and row[1] is not None:
                    key = self._unwrap(row[0], row[1])
                    self._remember(customer_key, row[0], key)
                    return row[0], key
            raise CryptoError("could not create a data key (destroyed concurrently?)")

    def prepare(self, customer_keys: Iterable[str]) -> None:
        """Create the missing keys of many customers in one transaction (one fsync), so a
        batch of new customers does not pay one flush each."""
        with self._lock:
            self._sync()
            hashes = {ck: self.customer_hash(ck) for ck in set(customer_keys)
                      if ck not in self._by_customer}
            need = [h for h in hashes.values()
                    if (row := self._current(h)) is None or row[1] is None]
            if need:
                with self._conn:
                    self._conn.execute("BEGIN IMMEDIATE")
                    for chash in need:
                        self._insert_key(chash)
        for ck in hashes:
            self.key_for(ck)  # unwrap once into the cache

    def _current(self, chash: str) -> tuple[str, bytes | None] | None:
        return self._conn.execute(
            "SELECT k.key_id, k.wrapped FROM customers c JOIN data_keys k"
            " ON k.customer_hash = c.customer_hash AND k.generation = c.generation"
            " WHERE c.customer_hash = ?", (chash,)).fetchone()

    def _create(self, chash: str) -> None:
        with self._conn:  # one transaction; a racing process's row wins, ours is ignored
            self._conn.execute("BEGIN IMMEDIATE")
            self._insert_key(chash)

    def _insert_key(self, chash: str) -> None:
        key_id = secrets.token_hex(10)
        key = os.urandom(KEY_BYTES)
        nonce = os.urandom(NONCE_BYTES)
        wrapped = nonce + self._wrap.encrypt(nonce, key, key_id.encode())
        self._conn.execute(
            "INSERT OR IGNORE INTO customers (customer_hash, generation) VALUES (?, 0)",
            (chash,))
        self._conn.execute(
            "INSERT OR IGNORE INTO data_keys"
            " (key_id, customer_hash, generation, wrapped, created_at)"
            " SELECT ?, customer_hash, generation, ?, ? FROM customers"
            " WHERE customer_hash = ?", (key_id, wrapped, _now(), chash))

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
            row = self._conn.execute("SELECT wrapped FROM data_keys WHERE key_id = ?",
                                     (key_id,)).fetchone()
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
            row = self._conn.execute("SELECT destroyed_at FROM data_keys WHERE key_id = ?",
                                     (key_id,)).fetchone()
            if row is not None and row[0] is not None:
                self._destroyed.add(key_id)
                return True
            return False

    def key_ids_of(self, customer_key: str) -> list[str]:
        """Every key id the customer key ever had, oldest generation first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key_id FROM data_keys WHERE customer_hash = ? ORDER BY generation",
                (self.customer_hash(customer_key),)).fetchall()
        return [r[0] for r in rows]

    def destroy(self, key_ids: Iterable[str]) -> int:
        """Shred the keys: the wrapped bytes are deleted (zeroed on disk, the WAL is
        truncated), the customer key moves to a new generation. Returns how many were live."""
        ids = list(dict.fromkeys(key_ids))
        done: list[str] = []
        with self._lock:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                for key_id in ids:
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
            self._destroyed.update(done)
            self._by_customer.clear()
            self._by_id.clear()
            self._destroy_seq = self._read_destroy_seq()
            self._data_version = self._pragma_data_version()
            if done:
                # the old page versions (with the wrapped key) live in the WAL until then
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(done)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
