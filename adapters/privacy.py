"""The privacy kit of a process: the key store, the field cipher and the identifier
hashing key, built once from the master key (adapters/crypto.py, adapters/keystore.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..projections.identifiers import customer_key, normalize
from .config import Settings
from .crypto import (
    FieldCipher,
    SecretBox,
    encrypt_envelope,
    hashing_key,
    identifier_hash,
    is_token,
)
from .crypto import load_master_key as _load_master_key
from .database import Database
from .keystore import DataKeyStore, ForgettingKeyStore, PostgresKeyStore


@dataclass
class Privacy:
    keystore: DataKeyStore
    cipher: FieldCipher
    hash_key: bytes
    region: str
    secrets: SecretBox | None = None  # the configuration's secrets (webhooks)

    def encrypt_batch(self, envelopes: list[dict[str, Any]],
                      ) -> list[tuple[dict[str, Any], bytes]]:
        """Each envelope with its personal fields encrypted under its customer's key, and
        its Kafka key. The keys a batch's new customers need are created in one
        transaction; identifiers are hashed once per envelope."""
        plans = []
        for env in envelopes:
            idents = _hashed_identifiers(env, self.hash_key, self.region)
            # the key is named by the base customer: the publisher id, or the id derived
            # from the keyed hash of the strongest identifier (never from plain text)
            plans.append((env, customer_key(idents), {k: v for k, v in idents if k != "id"}))
        self.keystore.prepare(base for _, base, _ in plans)
        return [(encrypt_envelope(env, self.cipher, self.keystore, base, self.hash_key,
                                  self.region, hashes), base.encode())
                for env, base, hashes in plans]

    def seal(self, customer_key: str, text: str) -> str:
        """Free text about a customer (an agent's resolution note) under their data key."""
        key_id, key = self.keystore.key_for(customer_key)
        return self.cipher.encrypt(key_id, key, text)

    def lookup_value(self, kind: str, value: str) -> str:
        """What the identifiers table holds for a looked-up identifier."""
        if kind == "id":
            return value.strip()
        return identifier_hash(self.hash_key, kind, normalize(kind, value, self.region))

    def open(self, value: Any) -> Any:
        """A token opened (None when its key was destroyed); anything else as it is."""
        if is_token(value):
            try:
                return self.cipher.decrypt_value(value)
            except Exception:  # noqa: BLE001 - unreadable is as good as erased here
                return None
        return value

    def open_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {k: self.open(v) for k, v in payload.items()}


def _hashed_identifiers(env: dict[str, Any], hash_key: bytes, region: str,
                        ) -> list[tuple[str, str]]:
    customer = env.get("customer") or {}
    out = []
    cid = customer.get("id")
    if isinstance(cid, str) and cid.strip():
        out.append(("id", cid.strip()))
    for kind in ("email", "phone", "visitor_id"):
        value = customer.get(kind)
        if isinstance(value, str) and value.strip():
            out.append((kind, identifier_hash(hash_key, kind, normalize(kind, value, region))))
    return out


def token_key_id(token: str) -> str | None:
    parts = token.split(":", 2)
    return parts[1] if len(parts) == 3 and is_token(token) else None


def privacy(settings: Settings, db: Database) -> Privacy:
    """The kit of one set of services: data keys in the forgetting file store of the
    data dir for the embedded default, in PostgreSQL for an external database
    (``CONTACTSTREAM_KEY_STORE`` = ``file`` or ``postgres`` chooses explicitly)."""
    master = _load_master_key(settings.master_key or None, settings.data_dir)
    kind = settings.key_store or ("file" if settings.embedded_database else "postgres")
    store: DataKeyStore
    if kind == "file":
        store = ForgettingKeyStore(settings.keys_db, master)
    elif kind == "postgres":
        store = PostgresKeyStore(db, master)
    else:
        raise ValueError(f"CONTACTSTREAM_KEY_STORE must be file or postgres, not {kind!r}")
    return Privacy(store, FieldCipher(store), hashing_key(master), settings.default_region,
                   SecretBox(master))
