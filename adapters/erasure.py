"""Erasure (``DELETE /v1/customers/{id}``): crypto-shredding plus a purge of the read
models, keeping every count and score.

1. Every data key the customer's events were encrypted with is destroyed (the key
   store scrubs the wrapped key bytes): what Kafka, the ingest journal, the archives
   and the event store hold of the person becomes unreadable ciphertext for good.
2. The read store forgets the person: identifiers and name deleted; timeline rows and
   cases move to a pseudonym per data key (``erased-…``) with every encrypted field
   dropped, so satisfaction, value, service and SLA figures stay as they were.
3. The control store drops the case index entries (a returning person opens new cases)
   and moves complaints and alerts to the pseudonym.
A replay after erasure puts the erased events under the same pseudonyms
(projections/timeline.py), and a person who writes again gets a new data key and starts
as a new customer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from ..projections.identifiers import erased_pseudonym
from . import edges
from .crypto import is_token
from .database import EVENT_IS, Database
from .figurestore import TIMELINE_COLUMNS, FigureWriter, timeline_entry
from .logging import get_logger
from .privacy import Privacy, token_key_id
from .readstore import bump_identity_epoch

log = get_logger(__name__)


@dataclass
class Erasure:
    customer_id: str
    keys_destroyed: int
    timeline_rows: int
    pseudonyms: list[str]


def destroy_keys(db: Database, privacy: Privacy, cid: str,
                 ) -> tuple[list[str], list[str], int]:
    """Step 1, in the API at once: the customer's base ids and data keys; the keys are
    destroyed, so from this instant nothing of the person can be decrypted anywhere."""
    with db.tx() as conn:
        bases = [b for (b,) in conn.execute(
            "SELECT base FROM customer_links WHERE survivor=%s", (cid,))] or [cid]
        key_ids = {k for (k,) in conn.execute(
            "SELECT DISTINCT key_id FROM timeline WHERE customer_id = ANY(%s) AND key_id IS"
            " NOT NULL", (bases,))}
        for (display,) in conn.execute(
                "SELECT display FROM identifiers WHERE customer_id=%s AND display IS NOT NULL",
                (cid,)):
            if (k := token_key_id(display)) is not None:
                key_ids.add(k)
        for (name,) in conn.execute("SELECT name FROM customers WHERE customer_id = ANY(%s)",
                                    (bases,)):
            if name and (k := token_key_id(name)) is not None:
                key_ids.add(k)
    return bases, sorted(key_ids), privacy.keystore.destroy(sorted(key_ids))


def purge(db: Database, cid: str, bases: list[str], key_ids: list[str],
          figures: FigureWriter | None = None) -> Erasure:
    """Step 2, in the worker between two batches (so no commit in flight can write the
    person back): the read models and the case stage's memory forget the person, in
    one transaction. The customer's figures move with its timeline rows, so every count
    and score across the base stays as it was."""
    first = erased_pseudonym(key_ids[0]) if key_ids else erased_pseudonym(f"customer:{cid}")
    at_ms = int(datetime.now(UTC).timestamp() * 1000)
    everyone = sorted({cid, *bases})
    with db.tx() as conn:
        # identity rows go: every other worker reloads its graph and redoes its batch in
        # flight, so none writes the person back (adapters/readstore.py)
        bump_identity_epoch(conn)
        rows = [timeline_entry(r) for r in conn.execute(
            f"SELECT {TIMELINE_COLUMNS} FROM timeline WHERE"  # type: ignore[call-overload]
            " customer_id = ANY(%s)", (bases,))]
        to = {e.event_id: erased_pseudonym(e.key_id) if e.key_id else first for e in rows}
        conn.cursor().executemany(
            f"UPDATE timeline_rows SET customer_id=%s, payload=%s::jsonb WHERE {EVENT_IS}",
            [(to[e.event_id], _strip(e.payload), e.event_id, e.event_id) for e in rows])
        conn.execute("UPDATE cases SET customer_id=%s WHERE customer_id = ANY(%s)",
                     (first, bases))
        idents = conn.execute("SELECT kind, value FROM identifiers WHERE customer_id=%s",
                              (cid,)).fetchall()
        _forget_edges(conn, {v for _, v in idents})
        conn.execute("DELETE FROM identifiers WHERE customer_id=%s", (cid,))
        conn.execute("DELETE FROM customers WHERE customer_id = ANY(%s)", (bases,))
        # the identity graph forgets the person: a return starts a new customer
        conn.execute("DELETE FROM customer_links WHERE base = ANY(%s)", (bases,))
        conn.execute("DELETE FROM identity_bases WHERE base = ANY(%s)", (bases,))
        conn.cursor().executemany(
            "INSERT INTO erasures VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
            [(base, at_ms, first) for base in everyone])
        # the reports count the pseudonyms as the one customer they were (migration 9)
        conn.cursor().executemany(
            "INSERT INTO erased_groups VALUES (%s,%s) ON CONFLICT DO NOTHING",
            [(p, first) for p in sorted({*to.values(), first})])
        conn.execute("DELETE FROM case_index WHERE customer_id = ANY(%s)", (everyone,))
        conn.execute("UPDATE complaints SET customer_id=%s WHERE customer_id = ANY(%s)",
                     (first, everyone))
        conn.execute("UPDATE alerts SET customer_id=%s WHERE customer_id = ANY(%s)",
                     (first, everyone))
        (figures or FigureWriter()).move(conn, rows, to, bases, [*everyone, first])
    pseudonyms = sorted({erased_pseudonym(k) for k in key_ids} or {first})
    log.info("customer.erased", keys=len(key_ids), timeline_rows=len(rows))
    return Erasure(cid, len(key_ids), len(rows), pseudonyms)


def _forget_edges(conn: psycopg.Connection[Any], values: set[str]) -> None:
    """Drop the identity graph's edges that name any of these identifier values."""
    rows = conn.execute("SELECT edge_id, edge FROM identity_edges")
    doomed = [edge_id for edge_id, edge in rows
              if any(v in values for _, v in edges.decode(edge))]
    if doomed:
        conn.execute("DELETE FROM identity_edges WHERE edge_id = ANY(%s)", (doomed,))


def _strip(payload: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in payload.items() if not is_token(v)},
                      ensure_ascii=False, separators=(",", ":"))
