"""Personal-data crypto: master key, derived keys, keyed identifier hashes, field tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from contactstream.domain.interactions import EVENT_TYPES
from contactstream.projections.identifiers import normalize

# Production must set this (32 random bytes, base64) from a secret store, and keep it apart
# from the data dir and its backups: whoever holds the master key and an old copy of
# keys.sqlite can read everything that copy's keys encrypted. Without it, the embedded
# default keeps DATA_DIR/master.key (mode 0600) next to the data, fit for a laptop only.
MASTER_KEY_ENV = "CONTACTSTREAM_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
KEY_BYTES = 32
NONCE_BYTES = 12

# HKDF info labels: one derived key per purpose, never the master key itself.
WRAPPING_INFO = b"contactstream/v1/key-wrapping"
HASHING_INFO = b"contactstream/v1/identifier-hashing"
SECRETS_INFO = b"contactstream/v1/configuration-secrets"
# a secret of the configuration (a webhook's signing secret) sealed by SecretBox
SECRET_TOKEN = "encs1:"

# Token prefixes: enc1 holds a string, enc1j the JSON text of any value (extra payload keys).
TOKEN = "enc1:"
JSON_TOKEN = "enc1j:"
_JSON_AAD = b"json:"

PERSONAL_CUSTOMER_FIELDS = ("email", "phone", "visitor_id", "name")
PERSONAL_PAYLOAD_FIELDS = ("subject", "body", "text", "description", "comment")
HASHED_IDENTIFIERS = ("email", "phone", "visitor_id")


class CryptoError(ValueError):
    """A token or key that fails authentication or cannot be read."""


class UnknownKeyError(CryptoError):
    """A token names a key id the key store never held (not an erased one)."""


class KeySource(Protocol):
    """What field encryption needs from a key store (``keystore.KeyStore``)."""

    def key_for(self, customer_key: str) -> tuple[str, bytes]: ...

    def get(self, key_id: str) -> bytes | None: ...

    def is_destroyed(self, key_id: str) -> bool: ...


def _b64decode_key(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(f"{where}: not base64") from None
    if len(raw) != KEY_BYTES:
        raise CryptoError(f"{where}: must be {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def new_master_key() -> str:
    """A fresh master key as the base64 text CONTACTSTREAM_MASTER_KEY expects."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def load_master_key(value: str | None, data_dir: Path) -> bytes:
    """The master key: ``value`` (base64 of 32 bytes, from CONTACTSTREAM_MASTER_KEY) when
    set, else DATA_DIR/master.key, created with mode 0600 on first use (embedded default
    only: production must set the variable and keep the key apart from the data)."""
    if value is not None and value.strip():
        return _b64decode_key(value, MASTER_KEY_ENV)
    path = data_dir / MASTER_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".master.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (new_master_key() + "\n").encode())
            os.fsync(fd)
            os.close(fd)
            os.link(tmp, path)  # atomic: a racing process either wins or reads ours whole
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return _b64decode_key(path.read_text(), str(path))


def derive_key(master_key: bytes, info: bytes) -> bytes:
    """A 32-byte key for one purpose (HKDF-SHA256, ``info`` names the purpose)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(
        master_key)


class SecretBox:
    """Secrets the configuration holds (webhook signing secrets), sealed with AES-GCM
    under a key derived from the master key, bound to the name they belong to: the
    database, its dumps and replicas hold no secret in the clear."""

    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(derive_key(master_key, SECRETS_INFO))

    def seal(self, name: str, secret: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        return SECRET_TOKEN + _b64(nonce + self._aead.encrypt(nonce, secret.encode(),
                                                               name.encode()))

    def open(self, name: str, value: str) -> str:
        """The secret; a value stored in the clear (before sealing existed) as it is."""
        if not value.startswith(SECRET_TOKEN):
            return value
        raw = _unb64(value[len(SECRET_TOKEN):])
        try:
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                      name.encode()).decode()
        except InvalidTag:
            raise CryptoError(f"the secret of {name!r} does not open with this master"
                              " key") from None


def wrapping_key(master_key: bytes) -> bytes:
    return derive_key(master_key, WRAPPING_INFO)


def hashing_key(master_key: bytes) -> bytes:
    return derive_key(master_key, HASHING_INFO)


_hmac_bases: dict[bytes, Any] = {}


def identifier_hash(hash_key: bytes, kind: str, normalised_value: str) -> str:
    """``kind:hex`` of HMAC-SHA256(hash_key, kind NUL value): stable, kind-separated."""
    base = _hmac_bases.get(hash_key)
    if base is None:
        base = _hmac_bases[hash_key] = hmac.new(hash_key, digestmod=hashlib.sha256)
    mac = base.copy()
    mac.update(f"{kind}\x00{normalised_value}".encode())
    return f"{kind}:{mac.hexdigest()}"


def hash_digest(kind: str, text: str) -> bytes | None:
    """The 32 bytes of an ``identifier_hash`` of ``kind`` (``kind:`` and 64 lowercase hex
    digits), None for any other text: what the stores keep in place of the text, which
    ``kind:`` plus ``.hex()`` of them gives back exactly."""
    digits = text[len(kind) + 1:]
    if len(digits) != 64 or not text.startswith(kind) or text[len(kind)] != ":":
        return None
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return None
    # fromhex also takes upper case and spaces: only the form it gives back is packed
    return raw if raw.hex() == digits else None


def is_token(s: object) -> bool:
    return isinstance(s, str) and (s.startswith(TOKEN) or s.startswith(JSON_TOKEN))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FieldCipher:
    """AES-GCM field tokens ``enc1:<key_id>:<base64url(nonce|ciphertext)>`` (associated
    data = the key id), with the AES objects of recently used keys kept."""

    def __init__(self, keystore: KeySource, cache_size: int = 4096) -> None:
        self.keystore = keystore
        self.cache_size = cache_size
        self._aes: OrderedDict[str, tuple[bytes, AESGCM]] = OrderedDict()

    def _cipher(self, key_id: str, key: bytes) -> AESGCM:
        hit = self._aes.get(key_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        aes = AESGCM(key)
        self._aes[key_id] = (key, aes)
        if len(self._aes) > self.cache_size:
            self._aes.popitem(last=False)
        return aes

    def _seal(self, prefix: str, aad: bytes, key_id: str, key: bytes, data: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher(key_id, key).encrypt(nonce, data, aad)
        return f"{prefix}{key_id}:{_b64(nonce + sealed)}"

    def encrypt(self, key_id: str, key: bytes, plaintext: str) -> str:
        return self._seal(TOKEN, key_id.encode(), key_id, key, plaintext.encode())

    def encrypt_json(self, key_id: str, key: bytes, value: object) -> str:
        """An ``enc1j:`` token of any JSON value (for payload keys outside the schema)."""
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return self._seal(JSON_TOKEN, _JSON_AAD + key_id.encode(), key_id, key, text.encode())

    def _open(self, token: str, keys: dict[str, bytes | None] | None = None
              ) -> tuple[bool, str | None]:
        """(is JSON, plaintext or None when the key was destroyed); ``keys`` memoises the
        key store's answers within one envelope."""
        is_json = token.startswith(JSON_TOKEN)
        if not is_json and not token.startswith(TOKEN):
            raise CryptoError("not an encrypted field token")
        key_id, sep, body = token[len(JSON_TOKEN if is_json else TOKEN):].partition(":")
        if not sep or not key_id:
            raise CryptoError("malformed field token")
        if keys is None:
            key = self.keystore.get(key_id)
        elif key_id in keys:
            key = keys[key_id]
        else:
            key = keys[key_id] = self.keystore.get(key_id)
        if key is None:
            if self.keystore.is_destroyed(key_id):
                self._aes.pop(key_id, None)
                return is_json, None
            raise UnknownKeyError(f"field token names unknown key id {key_id!r}")
        try:
            raw = _unb64(body)
        except (binascii.Error, ValueError):
            raise CryptoError(f"field token under key {key_id!r}: bad base64") from None
        aad = (_JSON_AAD if is_json else b"") + key_id.encode()
        try:
            plain = self._cipher(key_id, key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except InvalidTag:
            raise CryptoError(
                f"field token under key {key_id!r} fails authentication (tampered, or "
                "its key id was changed)") from None
        return is_json, plain.decode()

    def decrypt(self, token: str) -> str | None:
        """The plaintext, None once the key is destroyed; CryptoError when tampered."""
        return self._open(token)[1]

    def decrypt_value(self, token: str, keys: dict[str, bytes | None] | None = None) -> Any:
        """Like ``decrypt``, and an ``enc1j:`` token gives back its JSON value."""
        is_json, text = self._open(token, keys)
        return json.loads(text) if is_json and text is not None else text


def encrypt_envelope(env: dict[str, Any], cipher: FieldCipher, keystore: KeySource,
                     customer_key: str, hash_key: bytes, region: str = "HU",
                     hashes: dict[str, str] | None = None) -> dict[str, Any]:
    """A new envelope whose personal fields are tokens under the customer's current key,
    with ``key_id`` and ``identity_hashes`` {kind: identifier_hash} added. Every personal
    value is encrypted, even one that looks like a token; an envelope that already has a
    ``key_id`` is refused."""
    if env.get("key_id"):
        raise ValueError("envelope is already encrypted (it has a key_id)")
    key_id, key = keystore.key_for(customer_key)
    out = dict(env)
    customer = dict(env.get("customer") or {})
    hashes_: dict[str, str] = {}
    if hashes is not None:  # the caller computed them already
        hashes_ = dict(hashes)
    else:
        for kind in HASHED_IDENTIFIERS:
            value = customer.get(kind)
            if isinstance(value, str) and value.strip():
                hashes_[kind] = identifier_hash(hash_key, kind,
                                                normalize(kind, value, region))
    for name in PERSONAL_CUSTOMER_FIELDS:
        value = customer.get(name)
        if isinstance(value, str):
            customer[name] = cipher.encrypt(key_id, key, value)
    payload = dict(env.get("payload") or {})
    known = EVENT_TYPES.get(str(env.get("type")), {})
    for name, value in payload.items():
        if name in PERSONAL_PAYLOAD_FIELDS and isinstance(value, str):
            payload[name] = cipher.encrypt(key_id, key, value)
        elif name not in known:
            payload[name] = cipher.encrypt_json(key_id, key, value)
    out["customer"] = customer
    out["payload"] = payload
    out["key_id"] = key_id
    out["identity_hashes"] = hashes_
    return out


def decrypt_envelope(env: dict[str, Any], cipher: FieldCipher) -> dict[str, Any]:
    """A new envelope with its personal fields opened (None where the key is destroyed),
    without ``key_id`` and ``identity_hashes``: the envelope as it was published. Only the
    fields ``encrypt_envelope`` encrypts are opened, so a look-alike in another is data."""
    out = {k: v for k, v in env.items() if k not in ("key_id", "identity_hashes")}
    keys: dict[str, bytes | None] = {}
    customer = env.get("customer")
    if isinstance(customer, dict):
        out["customer"] = {
            k: cipher.decrypt_value(v, keys) if k in PERSONAL_CUSTOMER_FIELDS and is_token(v)
            else v
            for k, v in customer.items()}
    payload = env.get("payload")
    if isinstance(payload, dict):
        known = EVENT_TYPES.get(str(env.get("type")), {})
        out["payload"] = {
            k: cipher.decrypt_value(v, keys)
            if is_token(v) and (k in PERSONAL_PAYLOAD_FIELDS or k not in known) else v
            for k, v in payload.items()}
    return out
