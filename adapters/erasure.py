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
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..projections.identifiers import erased_pseudonym
from .control import ControlStore
from .crypto import is_token
from .logging import get_logger
from .privacy import Privacy, token_key_id

log = get_logger(__name__)


@dataclass
class Erasure:
    customer_id: str
    keys_destroyed: int
    timeline_rows: int
    pseudonyms: list[str]


def destroy_keys(conn: sqlite3.Connection, privacy: Privacy, cid: str,
                 ) -> tuple[list[str], list[str], int]:
    """Step 1, in the API at once: the customer's base ids and data keys; the keys are
    destroyed, so from this instant nothing of the person can be decrypted anywhere."""
    bases = [b for (b,) in conn.execute(
        "SELECT base FROM customer_links WHERE survivor=?", (cid,))] or [cid]
    marks = f"({','.join('?' * len(bases))})"
    key_ids = {k for (k,) in conn.execute(
        f"SELECT DISTINCT key_id FROM timeline WHERE customer_id IN {marks} AND key_id IS"
        " NOT NULL", bases)}
    for (display,) in conn.execute(
            "SELECT display FROM identifiers WHERE customer_id=? AND display IS NOT NULL",
            (cid,)):
        if (k := token_key_id(display)) is not None:
            key_ids.add(k)
    for (name,) in conn.execute(f"SELECT name FROM customers WHERE customer_id IN {marks}",
                                bases):
        if name and (k := token_key_id(name)) is not None:
            key_ids.add(k)
    return bases, sorted(key_ids), privacy.keystore.destroy(sorted(key_ids))


def purge(conn: sqlite3.Connection, control: ControlStore, cid: str, bases: list[str],
          key_ids: list[str]) -> Erasure:
    """Step 2, in the worker between two batches (so no commit in flight can write the
    person back): the read models and the control store forget the person."""
    marks = f"({','.join('?' * len(bases))})"
    first = erased_pseudonym(key_ids[0]) if key_ids else erased_pseudonym(f"customer:{cid}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute("SELECT event_id, key_id, payload FROM timeline WHERE"
                            f" customer_id IN {marks}", bases).fetchall()
        conn.executemany(
            "UPDATE timeline SET customer_id=?, payload=? WHERE event_id=?",
            [(erased_pseudonym(k) if k else first, _strip(p), eid) for eid, k, p in rows])
        conn.execute(f"UPDATE cases SET customer_id=? WHERE customer_id IN {marks}",
                     (first, *bases))
        idents = conn.execute("SELECT kind, value FROM identifiers WHERE customer_id=?",
                              (cid,)).fetchall()
        _forget_edges(conn, {v for _, v in idents})
        conn.execute("DELETE FROM identifiers WHERE customer_id=?", (cid,))
        conn.execute(f"DELETE FROM customers WHERE customer_id IN {marks}", bases)
        # the identity graph forgets the person: a return starts a new customer
        conn.execute(f"DELETE FROM customer_links WHERE base IN {marks}", bases)
        conn.execute(f"DELETE FROM identity_bases WHERE base IN {marks}", bases)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    at_ms = int(datetime.now(UTC).timestamp() * 1000)
    with control.batch():
        for base in {cid, *bases}:
            control.conn.execute("INSERT OR IGNORE INTO erasures VALUES (?,?,?)",
                                 (base, at_ms, first))
            control.conn.execute("DELETE FROM case_index WHERE customer_id=?", (base,))
            control.conn.execute("UPDATE complaints SET customer_id=? WHERE customer_id=?",
                                 (first, base))
            control.conn.execute("UPDATE alerts SET customer_id=? WHERE customer_id=?",
                                 (first, base))
    pseudonyms = sorted({erased_pseudonym(k) for k in key_ids} or {first})
    log.info("customer.erased", keys=len(key_ids), timeline_rows=len(rows))
    return Erasure(cid, len(key_ids), len(rows), pseudonyms)


def _forget_edges(conn: Any, values: set[str]) -> None:
    """Drop the identity graph's edges that name any of these identifier values."""
    doomed = []
    for (edge,) in conn.execute("SELECT edge FROM identity_edges"):
        if any(v in values for _, v in json.loads(edge)):
            doomed.append((edge,))
    conn.executemany("DELETE FROM identity_edges WHERE edge=?", doomed)


def _strip(payload_json: str) -> str:
    payload = json.loads(payload_json)
    return json.dumps({k: v for k, v in payload.items() if not is_token(v)},
                      ensure_ascii=False, separators=(",", ":"))
