"""Customer value from ``purchase.completed``: revenue, RFM scores and segments, Pareto."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from ..domain.segments import PROSPECT, SEGMENTS

DAY_MS = 86_400_000
CENT = Decimal("0.01")
# Every published purchase is under 10^12 (domain.interactions.MAX_AMOUNT), so a million
# of them stay under this. A stored amount or total beyond it (or not finite) was written
# before that limit or produced around ingest: the folds skip it rather than fail a view
# or a report over the whole base on one row (money() could not even print it).
TOTAL_LIMIT = Decimal(10) ** 18

# The well-known R/F segment map (rows: recency score 1-5, columns: frequency score 1-5).
_H, _AR, _CL, _AS, _NA = "hibernating", "at_risk", "cannot_lose", "about_to_sleep", "need_attention"
_L, _P, _N, _PL, _C = "loyal", "promising", "new", "potential_loyalist", "champions"
_GRID = (
    ("lost", _H, _AR, _AR, _CL),   # R=1
    (_H, _H, _AR, _AR, _CL),       # R=2
    (_AS, _AS, _NA, _L, _L),       # R=3
    (_P, _PL, _PL, _L, _L),        # R=4
    (_N, _PL, _PL, _C, _C),        # R=5
)
__all__ = ["PROSPECT", "SEGMENTS"]  # named in domain/segments.py, which SLA policies read


def countable(x: Decimal) -> bool:
    """Whether the folds take this stored amount or total (see ``TOTAL_LIMIT``)."""
    return x.is_finite() and x.copy_abs() < TOTAL_LIMIT  # copy_abs: no context, no Overflow


def money(x: Decimal) -> str:
    return str(x.quantize(CENT, rounding=ROUND_HALF_UP))


def money_or_none(x: Decimal) -> str | None:
    """``money`` of a countable value; None for one the folds skip."""
    return money(x) if countable(x) else None


@dataclass(frozen=True, slots=True)
class Purchase:
    event_id: str
    customer_id: str
    occurred_ms: int
    amount: Decimal
    currency: str


def lifetime_revenue(purchases: Iterable[Purchase], base_currency: str = "EUR",
                     rates: Mapping[str, Decimal] | None = None) -> dict[str, Any]:
    """Totals per currency and in the base currency (``rates``: base units per unit).
    Each event id counts once. A currency without a rate stays out of the total and is
    listed under ``unconverted`` rather than guessed. An amount the folds cannot take
    (``countable``) is left out, and a currency whose total or converted total they cannot
    take is left out whole; either way the currency is listed under ``skipped``."""
    rates = {**(rates or {}), base_currency: Decimal(1)}
    totals: dict[str, Decimal] = {}
    skipped: set[str] = set()
    seen: set[str] = set()
    for p in purchases:
        if p.event_id in seen:
            continue
        seen.add(p.event_id)
        if countable(p.amount):
            totals[p.currency] = totals.get(p.currency, Decimal(0)) + p.amount
        else:
            skipped.add(p.currency)
    converted = {c: t * rates[c] for c, t in totals.items() if c in rates}
    bad = {c for c, t in totals.items()
           if not countable(t) or (c in converted and not countable(converted[c]))}
    base = sum((v for c, v in converted.items() if c not in bad), Decimal(0))
    return {"by_currency": {c: money(t) for c, t in sorted(totals.items()) if c not in bad},
            "lifetime_revenue": money(base), "currency": base_currency,
            "unconverted": sorted(c for c in totals if c not in rates and c not in bad),
            "skipped": sorted(skipped | bad)}


@dataclass(frozen=True, slots=True)
class CustomerValueFacts:
    last_purchase_ms: int | None
    frequency: int  # purchases
    monetary: Decimal  # lifetime revenue in the base currency


@dataclass(frozen=True, slots=True)
class RFM:
    segment: str
    recency_days: int | None = None
    frequency: int = 0
    monetary: Decimal = Decimal(0)
    r: int | None = None
    f: int | None = None
    m: int | None = None


def quintiles(values: Mapping[str, Any], better: Callable[[Any], Any]) -> dict[str, int]:
    """Score 1-5 by mid-rank percentile: 1 + floor(5 * (below + ties/2) / n). Equal values
    always get equal scores, so ties never depend on ids or input order."""
    n = len(values)
    keys = sorted(values, key=lambda k: better(values[k]))
    out: dict[str, int] = {}
    i = 0
    while i < n:
        j = i
        v = better(values[keys[i]])
        while j < n and better(values[keys[j]]) == v:
            j += 1
        score = 1 + (5 * (2 * i + (j - i))) // (2 * n)
        for k in keys[i:j]:
            out[k] = score
        i = j
    return out


def rfm(customers: Mapping[str, CustomerValueFacts], now_ms: int) -> dict[str, RFM]:
    """RFM scores across the customer base; customers without purchases are ``prospect``
    with no scores and do not take part in the quintiles."""
    buyers = {c: f for c, f in customers.items()
              if f.frequency > 0 and f.last_purchase_ms is not None}
    days = {c: max(0, (now_ms - f.last_purchase_ms) // DAY_MS)  # type: ignore[operator]
            for c, f in buyers.items()}
    r = quintiles(days, lambda d: -d)  # fewer days since the last purchase is better
    fq = quintiles({c: f.frequency for c, f in buyers.items()}, lambda x: x)
    m = quintiles({c: f.monetary for c, f in buyers.items()}, lambda x: x)
    out = {c: RFM(PROSPECT) for c in customers if c not in buyers}
    for c, f in buyers.items():
        out[c] = RFM(_GRID[r[c] - 1][fq[c] - 1], days[c], f.frequency, f.monetary,
                     r[c], fq[c], m[c])
    return out


def pareto(revenue_by_customer: Mapping[str, Decimal], share: float = 0.2) -> dict[str, Any]:
    """The top ``share`` of customers by revenue (rounded up; ties broken by id) and the
    share of all revenue they bring."""
    revenue_by_customer = {c: v for c, v in revenue_by_customer.items() if countable(v)}
    n = len(revenue_by_customer)
    k = int((Decimal(str(share)) * n).to_integral_value(rounding=ROUND_CEILING))
    ranked = sorted(revenue_by_customer.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    total = sum(revenue_by_customer.values(), Decimal(0))
    top = sum((v for _, v in ranked), Decimal(0))
    return {"customers": n, "top_customers": [c for c, _ in ranked],
            "top_share_of_revenue": round(float(top / total), 4) if total else 0.0,
            "top_revenue": money(top), "total_revenue": money(total)}


def segments_report(rfm_by_customer: Mapping[str, RFM],
                    revenue_by_customer: Mapping[str, Decimal]) -> list[dict[str, Any]]:
    """Customers and revenue per segment, every segment listed, in ``SEGMENTS`` order."""
    count = dict.fromkeys(SEGMENTS, 0)
    revenue = dict.fromkeys(SEGMENTS, Decimal(0))
    for c, x in rfm_by_customer.items():
        count[x.segment] += 1
        worth = revenue_by_customer.get(c, Decimal(0))
        revenue[x.segment] += worth if countable(worth) else Decimal(0)
    return [{"segment": s, "customers": count[s], "revenue": money(revenue[s])}
            for s in SEGMENTS]
