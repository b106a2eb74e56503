"""Churn economics and purchase cohorts: pure folds over the customers' activity and
purchases (already grouped into customers and converted into the base currency).

"Active" in a window (a, b] means at least one interaction (a contact, a complaint or a
purchase; case events do not count) with a < occurred_ms <= b. Periods are calendar
months or quarters in the report's time zone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from .churn import factor_kind
from .value import money

DAY_MS = 86_400_000
AT_RISK = 0.5  # churn risk from which a customer counts as at risk
RISK_DAYS = 90  # the revenue at risk is the at-risk customers' revenue over these days
PERIODS = ("month", "quarter")


@dataclass(frozen=True, slots=True)
class Spend:
    customer: str
    occurred_ms: int
    amount: Decimal  # in the base currency


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def churn_report(activity: Iterable[tuple[str, int]], purchases: Iterable[Spend],
                 at_risk: Mapping[str, Sequence[str]], now_ms: int, window_days: int,
                 currency: str) -> dict[str, Any]:
    """``activity``: (customer, occurred_ms) of interactions; ``at_risk``: customer ->
    churn factors of every customer whose risk is at least ``AT_RISK``."""
    w = window_days * DAY_MS
    end, start = now_ms - w, now_ms - 2 * w  # the windows: (start, end] and (end, now]
    before: set[str] = set()
    after: set[str] = set()
    for c, ms in activity:
        if start < ms <= end:
            before.add(c)
        elif end < ms <= now_ms:
            after.add(c)
    retained = before & after
    churned = before - after
    lost = Decimal(0)
    risk_cut = now_ms - RISK_DAYS * DAY_MS
    risk_revenue: dict[str, Decimal] = defaultdict(Decimal)
    for p in purchases:
        if p.customer in churned and start < p.occurred_ms <= end:
            lost += p.amount
        if p.customer in at_risk and risk_cut < p.occurred_ms <= now_ms:
            risk_revenue[p.customer] += p.amount
    factors: dict[str, list[Any]] = {}
    for c, texts in at_risk.items():
        for kind in dict.fromkeys(factor_kind(t) for t in texts):
            held = factors.setdefault(kind, [0, Decimal(0)])
            held[0] += 1
            held[1] += risk_revenue.get(c, Decimal(0))
    return {
        "window_days": window_days,
        "active_start": len(before), "active_end": len(after), "retained": len(retained),
        "retention_rate": _rate(len(retained), len(before)), "churned": len(churned),
        "revenue_lost": money(lost),
        "revenue_at_risk": money(sum(risk_revenue.values(), Decimal(0))),
        "currency": currency, "at_risk_customers": len(at_risk),
        "factors": [{"factor": k, "customers": n, "revenue_at_risk": money(r)}
                    for k, (n, r) in sorted(factors.items(),
                                            key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))],
    }


def period_of(ms: int, period: str, tz: tzinfo) -> int:
    """A month or a quarter as a running number (year * 12 + month - 1, year * 4 + q - 1)."""
    at = datetime.fromtimestamp(ms / 1000, tz)
    return at.year * 12 + at.month - 1 if period == "month" else at.year * 4 + (at.month - 1) // 3


def period_name(n: int, period: str) -> str:
    """``2026-03`` for a month, ``2026-Q1`` for a quarter."""
    return f"{n // 12}-{n % 12 + 1:02d}" if period == "month" else f"{n // 4}-Q{n % 4 + 1}"


def cohort_report(purchases: Iterable[Spend], period: str, now_ms: int, tz: tzinfo,
                  currency: str) -> dict[str, Any]:
    """One row per acquisition cohort (the period of a customer's first purchase): its
    size, the share that bought more than once, the revenue per cohort customer and the
    number of its customers who bought in each period since (the first period first, up to
    the current one), and per period the mean spend of new and of returning buyers."""
    spend: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    count: dict[str, int] = defaultdict(int)
    for p in purchases:
        spend[p.customer][period_of(p.occurred_ms, period, tz)] += p.amount
        count[p.customer] += 1
    first = {c: min(by) for c, by in spend.items()}
    last = max([period_of(now_ms, period, tz), *(max(by) for by in spend.values())])
    cohorts: dict[int, list[str]] = defaultdict(list)
    for c, p0 in first.items():
        cohorts[p0].append(c)
    rows = []
    for p0, members in sorted(cohorts.items()):
        n = len(members)
        span = range(p0, last + 1)
        rows.append({
            "cohort": period_name(p0, period), "customers": n,
            "repeat_rate": _rate(sum(1 for c in members if count[c] > 1), n),
            "revenue_per_customer": [money(sum((spend[c].get(k, Decimal(0)) for c in members),
                                               Decimal(0)) / n) for k in span],
            "retained": [sum(1 for c in members if k in spend[c]) for k in span]})
    mixed: dict[int, list[Any]] = defaultdict(lambda: [Decimal(0), 0, Decimal(0), 0])
    for c, by in spend.items():
        for k, amount in by.items():
            slot = mixed[k]
            i = 0 if k == first[c] else 2
            slot[i] += amount
            slot[i + 1] += 1
    return {"period": period, "currency": currency, "cohorts": rows,
            "new_vs_returning": [
                {"period": period_name(k, period),
                 "new_avg_spend": money(s[0] / s[1]) if s[1] else None,
                 "returning_avg_spend": money(s[2] / s[3]) if s[3] else None}
                for k, s in sorted(mixed.items())]}
