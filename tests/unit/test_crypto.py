"""Field encryption and keyed identifier hashes, over the forgetting key store (the key
stores themselves: tests/integration/test_keystore.py)."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contactstream.adapters.avro import EmbeddedSchemaRegistry, EnvelopeCodec
from contactstream.adapters.crypto import (
    PERSONAL_CUSTOMER_FIELDS,
    CryptoError,
    FieldCipher,
    UnknownKeyError,
    decrypt_envelope,
    encrypt_envelope,
    hashing_key,
    identifier_hash,
    is_token,
    load_master_key,
    new_master_key,
    wrapping_key,
)
from contactstream.adapters.keystore import DataKeyStore, ForgettingKeyStore
from contactstream.projections.identifiers import normalize
from tests.helpers import envelope

TEXTS = ["Árvíztűrő tükörfúrógép, Kovács Anna", "سلام، سفارش من دو بار پرداخت شد",
         "你好，我的订单被扣了两次款", "plain ascii", ""]
CUSTOMER_KEY = "c-secret-customer-4711"


@pytest.fixture
def master(tmp_path: Path) -> bytes:
    return load_master_key(None, tmp_path / "data")


@pytest.fixture
def store(tmp_path: Path, master: bytes) -> Iterator[DataKeyStore]:
    with ForgettingKeyStore(tmp_path / "data" / "keys.sqlite", master) as ks:
        yield ks


@pytest.fixture
def cipher(store: DataKeyStore) -> FieldCipher:
    return FieldCipher(store)


def _raw(token: str) -> bytes:
    body = token.rsplit(":", 1)[1]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_round_trip_unicode(store: DataKeyStore, cipher: FieldCipher) -> None:
    key_id, key = store.key_for(CUSTOMER_KEY)
    for text in TEXTS:
        token = cipher.encrypt(key_id, key, text)
        assert is_token(token) and token.startswith(f"enc1:{key_id}:")
        assert cipher.decrypt(token) == text
    assert FieldCipher(store).decrypt(cipher.encrypt(key_id, key, TEXTS[0])) == TEXTS[0]
    assert not is_token("hello") and not is_token(None)


def test_ciphertext_contains_none_of_the_plaintext(store: DataKeyStore,
                                                   cipher: FieldCipher) -> None:
    key_id, key = store.key_for(CUSTOMER_KEY)
    for text in TEXTS[:-1]:
        plain = text.encode()
        token = cipher.encrypt(key_id, key, text)
        raw = _raw(token)
        assert len(raw) == 12 + len(plain) + 16
        for i in range(len(plain) - 3):
            window = plain[i:i + 4]
            assert window not in raw and window not in token.encode()
    # a fresh nonce each time: the same text never gives the same token
    assert cipher.encrypt(key_id, key, "x") != cipher.encrypt(key_id, key, "x")


def test_wrong_key_id_or_tampering_raises(store: DataKeyStore, cipher: FieldCipher) -> None:
    key_id, key = store.key_for(CUSTOMER_KEY)
    other_id, _ = store.key_for("another-customer")
    token = cipher.encrypt(key_id, key, "Kovács Anna")
    with pytest.raises(CryptoError, match="authentication"):
        cipher.decrypt(token.replace(key_id, other_id))
    with pytest.raises(UnknownKeyError):
        cipher.decrypt(token.replace(key_id, "0" * len(key_id)))
    body = token.rsplit(":", 1)[1]
    flipped = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    with pytest.raises(CryptoError, match="authentication"):
        cipher.decrypt(token.replace(body, flipped))
    with pytest.raises(CryptoError):
        cipher.decrypt(token[:-4])
    with pytest.raises(CryptoError):
        cipher.decrypt_value(token.replace("enc1:", "enc1j:", 1))
    with pytest.raises(CryptoError):
        cipher.decrypt("enc1:nokey")


def test_master_key_file_is_0600_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = load_master_key(None, data)
    path = data / "master.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key("", data) == key
    assert load_master_key(None, data) == key
    assert [p.name for p in data.iterdir()] == ["master.key"]


def test_master_key_from_configuration(tmp_path: Path) -> None:
    value = new_master_key()
    assert load_master_key(value, tmp_path) == base64.b64decode(value)
    assert not (tmp_path / "master.key").exists()
    with pytest.raises(CryptoError, match="32 bytes"):
        load_master_key(base64.b64encode(b"short").decode(), tmp_path)
    with pytest.raises(CryptoError, match="base64"):
        load_master_key("not base64 at all!", tmp_path)


def test_derived_keys_are_distinct(master: bytes) -> None:
    assert len({master, wrapping_key(master), hashing_key(master)}) == 3
    assert hashing_key(master) == hashing_key(master)


def test_identifier_hashes_stable_and_separated(master: bytes) -> None:
    hk = hashing_key(master)
    h = identifier_hash(hk, "email", "anna@example.com")
    assert h.startswith("email:") and len(h) == len("email:") + 64
    assert h == identifier_hash(hk, "email", "anna@example.com")
    assert identifier_hash(hk, "phone", "anna@example.com").removeprefix("phone:") != \
        h.removeprefix("email:")
    assert identifier_hash(hk, "email", "anna@example.hu") != h
    other = hashing_key(base64.b64decode(new_master_key()))
    assert identifier_hash(other, "email", "anna@example.com") != h
    code = ("import sys; from contactstream.adapters.crypto import identifier_hash;"
            "print(identifier_hash(bytes.fromhex(sys.argv[1]), 'email', 'anna@example.com'))")
    out = subprocess.run([sys.executable, "-c", code, hk.hex()], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == h


def _encrypted(store: DataKeyStore, cipher: FieldCipher, master: bytes,
               env: dict) -> dict:
    return encrypt_envelope(env, cipher, store, CUSTOMER_KEY, hashing_key(master), "HU")


def test_encrypt_envelope_keeps_non_personal_fields(store: DataKeyStore, cipher: FieldCipher,
                                                    master: bytes) -> None:
    env = envelope(1, customer={"id": "c-1001", "email": " Anna@Example.COM",
                                "phone": "06 30 123 4567", "visitor_id": "v-77",
                                "name": "Kovács Anna"},
                   payload={"category": "billing", "priority": "high",
                            "description": "Kétszer vonták le — 两次", "note": {"vip": True}})
    before = json.loads(json.dumps(env))
    enc = _encrypted(store, cipher, master, env)
    assert env == before  # the input is not touched
    for name in ("event_id", "type", "occurred_at", "source", "channel", "agent_id",
                 "queue", "case_id"):
        assert enc[name] == env[name]
    assert enc["customer"]["id"] == "c-1001"
    assert all(is_token(enc["customer"][f]) for f in PERSONAL_CUSTOMER_FIELDS)
    assert enc["payload"]["category"] == "billing" and enc["payload"]["priority"] == "high"
    assert is_token(enc["payload"]["description"]) and is_token(enc["payload"]["note"])
    assert enc["key_id"] == store.key_for(CUSTOMER_KEY)[0]
    hk = hashing_key(master)
    assert enc["identity_hashes"] == {
        kind: identifier_hash(hk, kind, normalize(kind, env["customer"][kind], "HU"))
        for kind in ("email", "phone", "visitor_id")}
    assert enc["identity_hashes"]["phone"] == identifier_hash(hk, "phone", "+36301234567")
    text = json.dumps(enc, ensure_ascii=False)
    for secret in ("Anna", "anna", "123 4567", "+36301234567", "v-77", "Kétszer", "两次", "vip"):
        assert secret not in text
    assert decrypt_envelope(enc, cipher) == env


def test_envelope_kinds_stay_readable(store: DataKeyStore, cipher: FieldCipher,
                                      master: bytes) -> None:
    cases = [
        ("call.ended", {"direction": "inbound", "outcome": "answered", "duration_s": 61.5,
                        "wait_s": 3}),
        ("survey.answered", {"kind": "nps", "score": 9, "comment": "Nagyon jó"}),
        ("purchase.completed", {"amount": "12.50", "currency": "HUF", "order_id": "o-1"}),
        ("web.visit", {"url": "https://shop.example/p/1", "duration_s": 12.0}),
        ("chat.message", {"direction": "outbound", "text": "enc1:looks:like-a-token"}),
    ]
    for etype, payload in cases:
        env = envelope(2, type=etype, payload=payload)
        enc = _encrypted(store, cipher, master, env)
        for name, value in payload.items():
            personal = name in ("comment", "text")
            assert is_token(enc["payload"][name]) if personal else enc["payload"][name] == value
        assert decrypt_envelope(enc, cipher) == env
    with pytest.raises(ValueError, match="already encrypted"):
        _encrypted(store, cipher, master, enc)


def test_erased_envelope_decrypts_to_none(store: DataKeyStore, cipher: FieldCipher,
                                          master: bytes) -> None:
    env = envelope(3, payload={"category": "billing", "priority": "low",
                               "description": "x", "extra_field": [1, 2]})
    enc = _encrypted(store, cipher, master, env)
    store.destroy([enc["key_id"]])
    out = decrypt_envelope(enc, cipher)
    assert out["customer"] == {"id": "c-1001", "email": None, "phone": None,
                               "visitor_id": None, "name": None}
    assert out["payload"] == {"category": "billing", "priority": "low", "description": None,
                              "extra_field": None}
    assert out["queue"] == "billing"


def test_encrypted_envelope_fits_the_avro_codec(store: DataKeyStore, cipher: FieldCipher,
                                                master: bytes) -> None:
    env = envelope(4, payload={"category": "billing", "priority": "high",
                               "description": "Árvíztűrő", "extra": {"a": 1}})
    enc = _encrypted(store, cipher, master, env)
    codec = EnvelopeCodec(EmbeddedSchemaRegistry())
    wire = {k: v for k, v in enc.items() if k not in ("key_id", "identity_hashes")}
    back = codec.decode(codec.encode(wire))
    assert back["customer"] == enc["customer"] and back["payload"] == enc["payload"]
    assert decrypt_envelope({**back, "key_id": enc["key_id"]}, cipher)["payload"] == \
        env["payload"]
