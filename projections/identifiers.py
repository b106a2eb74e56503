"""Normalised customer identifiers: how an email, phone or visitor id is matched."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import phonenumbers

# the stored identity edges name a kind by its place here (adapters/edges.py and its
# migration): new kinds go at the end, none moves
KINDS = ("id", "email", "phone", "visitor_id")


def normalize_email(value: str) -> str:
    return value.strip().lower()


@lru_cache(maxsize=65536)
def normalize_phone(value: str, region: str = "HU") -> str:
    """E.164 when the number parses (national numbers use ``region``), else '+digits'."""
    raw = value.strip()
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else region)
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        pass
    digits = "".join(ch for ch in raw if ch.isdigit())
    return "+" + digits if digits else raw


@lru_cache(maxsize=65536)
def possible_phone(value: str, region: str = "HU") -> bool:
    """Whether libphonenumber takes ``value`` for a phone number of a possible length for
    its country (national numbers in ``region``): what ingest accepts as a phone."""
    raw = value.strip()
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_possible_number(number))


def normalize(kind: str, value: str, region: str = "HU") -> str:
    if kind == "email":
        return normalize_email(value)
    if kind == "phone":
        return normalize_phone(value, region)
    return value.strip()


def identifiers_of(customer: Mapping[str, object], region: str = "HU") -> list[tuple[str, str]]:
    """The customer's identifiers as (kind, normalised value), strongest first."""
    found = []
    for kind in KINDS:
        value = customer.get(kind)
        if isinstance(value, str) and value.strip():
            found.append((kind, normalize(kind, value, region)))
    return found


def derived_customer_id(kind: str, value: str) -> str:
    """A stable system id for a customer first known by a weak identifier only."""
    return "cs-" + hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:16]


def envelope_identifiers(env: Mapping[str, Any], region: str = "HU") -> list[tuple[str, str]]:
    """An envelope's identifiers, strongest first: the publisher's id in plain, the others
    as the keyed hashes ingest put in ``identity_hashes`` (adapters/crypto.py) — or, for an
    envelope that was never encrypted, normalised plain values."""
    hashes = env.get("identity_hashes")
    if not hashes:
        return identifiers_of(env["customer"], region)
    cid = env["customer"].get("id")
    found = [("id", cid.strip())] if isinstance(cid, str) and cid.strip() else []
    return found + [(k, hashes[k]) for k in KINDS[1:] if k in hashes]


def customer_key(idents: list[tuple[str, str]]) -> str:
    """The base customer of an event: its publisher id, else a stable id derived from its
    strongest identifier. It is the Kafka key and names the customer's data key."""
    if not idents:
        return ""
    kind, value = idents[0]
    return value if kind == "id" else derived_customer_id(kind, value)


def erased_pseudonym(key_id: str) -> str:
    """Where the rows of an erased customer's data key go: counts and scores stay, the
    person does not."""
    return "erased-" + hashlib.sha256(key_id.encode()).hexdigest()[:16]


def partition_key(customer: Mapping[str, object], region: str = "HU") -> bytes:
    """The Kafka key of an unencrypted envelope (see ``customer_key``)."""
    return customer_key(identifiers_of(customer, region)).encode()
