"""Campaign audiences within the law (issue 14, item 5): the customers a filter on segment
and churn risk selects who granted consent for a purpose on a channel (their latest
``consent.changed`` over every member base), each with that channel's contact identifier
decrypted. Customers without consent, or whose latest answer withdrew it, are never in it;
how many were left out for that is counted. Reads the figures the worker keeps
(customer_scores, customer_consent) and the identifiers; decryption is the API's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..projections.identifiers import normalize
from .readstore import ReadStore

# the identifier that reaches a customer on each channel an audience may use
CONTACT_KIND = {"email": "email", "sms": "phone", "voice": "phone"}
COLUMNS = ("customer_id", "contact", "segment", "churn_risk", "consent_at")


@dataclass(frozen=True)
class Audience:
    items: list[dict[str, Any]]  # in customer id order
    excluded: int  # selected, but without a granted consent (none, or withdrawn)
    unreachable: int  # granted, but no readable contact identifier for the channel


def audience(store: ReadStore, channel: str, purpose: str, segment: str | None,
             min_churn_risk: float | None) -> Audience:
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    if segment is not None:
        where.append("segment = %s")
        args.append(segment)
    if min_churn_risk is not None:
        where.append("churn_score >= %s")
        args.append(min_churn_risk)
    with store.reading() as conn:
        rows = conn.execute(
            "WITH cand AS (SELECT customer_id, segment, churn_score FROM customer_scores"
            f" WHERE {' AND '.join(where)}),"
            " mem AS (SELECT c.customer_id, COALESCE(l.base, c.customer_id) AS base FROM cand c"
            " LEFT JOIN customer_links l ON l.survivor = c.customer_id),"
            " said AS (SELECT DISTINCT ON (m.customer_id) m.customer_id, k.granted,"
            " k.occurred_at FROM mem m JOIN customer_consent k ON k.base = m.base"
            " AND k.channel = %s AND k.purpose = %s"
            " ORDER BY m.customer_id, k.occurred_ms DESC, k.event_id DESC)"
            " SELECT c.customer_id, c.segment, c.churn_score, s.occurred_at FROM cand c"
            " LEFT JOIN said s USING (customer_id) WHERE s.granted IS TRUE"
            " ORDER BY c.customer_id", [*args, channel, purpose]).fetchall()
        selected = int(conn.execute(
            f"SELECT COUNT(*) FROM customer_scores WHERE {' AND '.join(where)}",
            args).fetchone()[0])  # type: ignore[index]
        contacts = _contacts(store, [r[0] for r in rows], CONTACT_KIND[channel])
    items = []
    for cid, seg, risk, at in rows:
        contact = contacts.get(cid)
        if contact is not None:
            items.append({"customer_id": cid, "contact": contact, "segment": seg,
                          "churn_risk": risk, "consent_at": at})
    return Audience(items, selected - len(rows), len(rows) - len(items))


def _contacts(store: ReadStore, customers: Sequence[str], kind: str) -> dict[str, str]:
    """Each customer's newest identifier of this kind, decrypted (a destroyed key: none)
    and normalised as matching has it (an e-mail trimmed and lowercased, a phone E.164)."""
    if not customers:
        return {}
    out = {}
    for cid, display in store.db.all(
            "SELECT DISTINCT ON (customer_id) customer_id, display FROM identifiers"
            " WHERE kind = %s AND customer_id = ANY(%s) AND display IS NOT NULL"
            " ORDER BY customer_id, display_ms DESC NULLS LAST, value", (kind, list(customers))):
        opened = store.privacy.open(display) if store.privacy is not None else display
        if isinstance(opened, str) and opened.strip():
            region = store.privacy.region if store.privacy is not None else "HU"
            out[cid] = normalize(kind, opened, region)
    return out
