"""Explainable churn risk (0-1): a logistic model over a few signals anyone can read.

risk = 1 / (1 + exp(-(BIAS + sum of contributions))), BIAS = -3 (about 0.05 with no
signal). Each contribution is a weight times a signal capped so that no one signal
decides alone; a factor is listed only when its contribution is positive, strongest first.

- recency: days since the last contact or purchase against the customer's OWN rhythm, the
  median gap between their distinct active days (at least 1 day; 30 days when they have
  fewer than 3 active days). 2.0 x clamp(log2(gap / rhythm) - 1, 0, 3): nothing up to
  twice the usual gap, +2.0 at 4x, +4.0 at 8x, +6.0 from 16x.
- falling frequency: contacts and purchases in the last 90 days against the 90 before,
  when there were at least 3 before: 2.0 x the fractional drop.
- complaints in the last 30 days: 1.5 x log2(1 + n), n capped at 7.
- open cases 0.5 each; cases breached in the last 90 days (a case counts from its first
  SLA breach, for 90 days) 1.0 each; each count capped at 3.
- falling satisfaction: CSAT and NPS answers on a 0-1 scale ((csat-1)/4, nps/10); the
  mean of the last 90 days below the mean before by more than 0.1: 3.0 x the drop. A
  detractor (NPS 0-6) or CSAT 1-2 in the last 90 days: +1.0. CES is left out because
  surveys disagree on which end of its scale is good.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median

DAY_MS = 86_400_000
BIAS = -3.0
DEFAULT_RHYTHM_DAYS = 30.0
BREACH_DAYS = 90  # how long a case's SLA breach weighs on the risk


@dataclass(frozen=True, slots=True)
class ChurnFacts:
    contact_ms: Sequence[int] = ()
    purchase_ms: Sequence[int] = ()
    complaint_ms: Sequence[int] = ()
    surveys: Sequence[tuple[int, str, int]] = ()  # (occurred_ms, kind, score)
    open_cases: int = 0
    breached_ms: Sequence[int] = ()  # when each case first breached its SLA (its deadline)


@dataclass(frozen=True, slots=True)
class ChurnRisk:
    score: float
    factors: list[str] = field(default_factory=list)


Signal = tuple[float, str]


def _recency(active_ms: list[int], now_ms: int) -> list[Signal]:
    if not active_ms:
        return []
    days = sorted({t // DAY_MS for t in active_ms})
    gaps = [b - a for a, b in zip(days, days[1:], strict=False)]
    rhythm = max(1.0, median(gaps)) if len(gaps) >= 2 else DEFAULT_RHYTHM_DAYS
    ratio = (now_ms - max(active_ms)) / DAY_MS / rhythm
    x = min(max(math.log2(ratio) - 1, 0.0), 3.0) if ratio > 0 else 0.0
    return [(2.0 * x, f"no contact for {ratio:.1f}x the usual interval ({rhythm:g} days)")]


def _frequency(active_ms: list[int], now_ms: int) -> list[Signal]:
    recent = sum(1 for t in active_ms if now_ms - 90 * DAY_MS < t)
    before = sum(1 for t in active_ms if now_ms - 180 * DAY_MS < t <= now_ms - 90 * DAY_MS)
    if before < 3 or recent >= before:
        return []
    drop = 1 - recent / before
    return [(2.0 * drop, f"contacts down {drop:.0%} ({recent} in the last 90 days, "
                         f"{before} in the 90 before)")]


def _cases(facts: ChurnFacts, now_ms: int) -> list[Signal]:
    n = sum(1 for t in facts.complaint_ms if now_ms - 30 * DAY_MS < t)
    out: list[Signal] = []
    if n:
        out.append((1.5 * math.log2(1 + min(n, 7)),
                    f"{n} complaint{'s' * (n > 1)} in the last 30 days"))
    if facts.open_cases:
        out.append((0.5 * min(facts.open_cases, 3), f"{facts.open_cases} unresolved case"
                    + "s" * (facts.open_cases > 1)))
    breached = sum(1 for t in facts.breached_ms if now_ms - BREACH_DAYS * DAY_MS < t)
    if breached:
        out.append((1.0 * min(breached, 3), f"{breached} case"
                    + "s" * (breached > 1) + " past its SLA"))
    return out


def _unit(kind: str, score: int) -> float | None:
    return (score - 1) / 4 if kind == "csat" else score / 10 if kind == "nps" else None


def _satisfaction(surveys: Sequence[tuple[int, str, int]], now_ms: int) -> list[Signal]:
    cut = now_ms - 90 * DAY_MS
    scored = [(t, u, k, s) for t, k, s in surveys if (u := _unit(k, s)) is not None]
    recent = [(u, k, s) for t, u, k, s in scored if t > cut]
    before = [u for t, u, _, _ in scored if t <= cut]
    out: list[Signal] = []
    if recent and before:
        r = sum(u for u, _, _ in recent) / len(recent)
        b = sum(before) / len(before)
        if b - r > 0.1:
            out.append((3.0 * (b - r), f"satisfaction falling ({b:.0%} to {r:.0%} of scale)"))
    low = [x for x in recent if (x[1] == "nps" and x[2] <= 6) or (x[1] == "csat" and x[2] <= 2)]
    if low:
        _, k, s = min(low)
        out.append((1.0, f"low {k.upper()} score ({s}) in the last 90 days"))
    return out


def churn_risk(facts: ChurnFacts, now_ms: int) -> ChurnRisk:
    """The risk as of ``now_ms``; facts after ``now_ms`` are ignored."""
    active = [t for t in (*facts.contact_ms, *facts.purchase_ms) if t <= now_ms]
    past = ChurnFacts(facts.contact_ms, facts.purchase_ms,
                      [t for t in facts.complaint_ms if t <= now_ms],
                      [a for a in facts.surveys if a[0] <= now_ms],
                      facts.open_cases, [t for t in facts.breached_ms if t <= now_ms])
    signals = [*_recency(active, now_ms), *_frequency(active, now_ms),
               *_cases(past, now_ms), *_satisfaction(past.surveys, now_ms)]
    signals = sorted((s for s in signals if s[0] > 0), key=lambda s: -s[0])
    z = BIAS + sum(w for w, _ in signals)
    return ChurnRisk(round(1 / (1 + math.exp(-z)), 2), [text for _, text in signals])



# the kind of each factor text above, for reports that count customers per driver: texts
# that start with the mark first, then texts that contain it
FACTOR_STARTS = (("no contact for", "recency"), ("contacts down", "falling_frequency"),
                 ("satisfaction falling", "falling_satisfaction"), ("low ", "low_score"))
FACTOR_HOLDS = (("past its SLA", "sla_breaches"), ("unresolved case", "open_cases"),
                ("complaint", "complaints"))


def factor_kind(text: str) -> str:
    """``recency``, ``falling_frequency``, ``falling_satisfaction``, ``low_score``,
    ``sla_breaches``, ``open_cases`` or ``complaints``; ``other`` for a text this model
    does not write."""
    for mark, kind in FACTOR_STARTS:
        if text.startswith(mark):
            return kind
    for mark, kind in FACTOR_HOLDS:
        if mark in text:
            return kind
    return "other"
