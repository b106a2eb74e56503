"""The identity graph's edges as the read store keeps them (migration 22): each edge's
identifiers in a compact byte form that gives them back exactly, keyed by a digest of it.

An edge is a set of (kind, value) identifiers. Stored before as JSON text (~112 bytes),
which was also its primary key (the B-tree held the text again, ~200 bytes a row). Now:

- ``edge``: the identifiers sorted by (kind, value), each either ``0x80 + kind's number``
  and 32 bytes when its value is ``kind:`` and 64 lowercase hex digits (the keyed hashes
  of ingest, adapters/crypto.py ``identifier_hash``), or else the kind's length in a byte,
  the kind, the value's length in 4 bytes and the value (UTF-8): ~45 bytes an edge;
- ``edge_id``: the first 16 bytes of SHA-256 of ``edge`` as a uuid, the primary key
  (two different edges share one with a chance of about n²/2¹²⁹: 10⁻²¹ for 10⁹ edges).

adapters/migrations/0022_identity_edges_compact.sql is ``encode`` and ``edge_id`` in SQL,
for the rows stored before (tests/integration/test_identity_edges.py compares them).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from ..projections.identifiers import KINDS
from .crypto import hash_digest

Ident = tuple[str, str]

HASHED = 0x80   # tag bit of a hashed identifier: its kind's number in KINDS follows it


def _hashed(kind: str, value: str) -> bytes | None:
    """The 32 bytes of ``kind:<64 lowercase hex>`` of a known kind, None for any other."""
    return hash_digest(kind, value) if kind in KINDS else None


def encode(idents: Iterable[Ident]) -> bytes:
    """An edge's identifiers in their stored form (the same set gives the same bytes)."""
    out = bytearray()
    for kind, value in sorted(idents):
        raw = _hashed(kind, value)
        if raw is not None:
            out.append(HASHED | KINDS.index(kind))
            out += raw
            continue
        k, v = kind.encode(), value.encode()
        if not 0 < len(k) < HASHED:
            raise ValueError(f"an identifier kind of {len(k)} bytes")
        out.append(len(k))
        out += k
        out += len(v).to_bytes(4, "big")
        out += v
    return bytes(out)


def decode(edge: bytes) -> list[Ident]:
    """The identifiers of a stored edge, sorted by (kind, value)."""
    idents: list[Ident] = []
    at, end = 0, len(edge)
    while at < end:
        tag = edge[at]
        if tag & HASHED:
            kind = KINDS[tag & ~HASHED]
            idents.append((kind, f"{kind}:{edge[at + 1:at + 33].hex()}"))
            at += 33
            continue
        kind = edge[at + 1:at + 1 + tag].decode()
        at += 1 + tag
        size = int.from_bytes(edge[at:at + 4], "big")
        idents.append((kind, edge[at + 4:at + 4 + size].decode()))
        at += 4 + size
    return idents


def edge_id(edge: bytes) -> uuid.UUID:
    """The primary key of a stored edge."""
    return uuid.UUID(bytes=hashlib.sha256(edge).digest()[:16])


def row(idents: Iterable[Ident]) -> tuple[uuid.UUID, bytes]:
    edge = encode(idents)
    return edge_id(edge), edge
