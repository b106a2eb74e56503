"""The figures of a customer that move with the clock, not with events: satisfaction
windows, churn risk, RFM recency. Pure functions of the customer's aggregates
(projections/figures.py) and an instant, ``as_of``.

The worker stores them with that instant and with ``valid_until``, the next instant at
which the same facts would give different figures (an answer leaving a window, an event
leaving the 90 days of the frequency signal, a breached case its 90 days, the recency
factor's text or the rounded score moving); a periodic job recomputes the rows whose
``valid_until`` has passed.

RFM scores are quintiles across the base: a periodic job scores every buyer
(``value.rfm``) and keeps the quintile bounds (``Bounds``); a customer touched between two
runs is scored against the last bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import median
from typing import Any

from . import churn, satisfaction, value
from .figures import COMPLAINT, PURCHASE, Tally, summary, tally

DAY_MS = 86_400_000
WINDOWS = (7, 30, 90)


@dataclass(frozen=True)
class CustomerFacts:
    """Everything the clock-bound figures need, over all the customer's member bases."""

    activity: Sequence[tuple[int, str]] = ()  # (occurred_ms, figures kind) per interaction
    surveys: Sequence[tuple[str, int, str, int]] = ()  # (event_id, occurred_ms, kind, score)
    revenue: Mapping[str, tuple[Decimal, int, int]] = field(default_factory=dict)
    open_cases: int = 0
    breached_ms: Sequence[int] = ()  # when each case first breached its SLA

    def answers(self) -> list[satisfaction.SurveyAnswer]:
        return [satisfaction.SurveyAnswer(e, "", ms, k, s) for e, ms, k, s in self.surveys]

    def churn_facts(self) -> churn.ChurnFacts:
        # surveys in event-id order, as the fold over timeline rows always gave them
        return churn.ChurnFacts(
            sorted(t for t, k in self.activity if k != PURCHASE),
            sorted(t for t, k in self.activity if k == PURCHASE),
            sorted(t for t, k in self.activity if k == COMPLAINT),
            [(ms, k, s) for _, ms, k, s in sorted(self.surveys)],
            self.open_cases, sorted(self.breached_ms))

    def value_facts(self, base: str, rates: Mapping[str, Decimal]) -> value.CustomerValueFacts:
        life = lifetime(self.revenue, base, rates)
        n = sum(p for _, p, _ in self.revenue.values())
        last = max((ms for _, _, ms in self.revenue.values()), default=None)
        return value.CustomerValueFacts(last if n else None, n, Decimal(life["lifetime_revenue"]))


def lifetime(revenue: Mapping[str, tuple[Decimal, int, int]], base: str,
             rates: Mapping[str, Decimal]) -> dict[str, Any]:
    """``value.lifetime_revenue`` from totals per currency."""
    return value.lifetime_revenue(
        [value.Purchase(cur, "", 0, amount, cur) for cur, (amount, _, _) in
         sorted(revenue.items())], base, rates)


@dataclass(frozen=True)
class Bounds:
    """RFM quintile bounds: for scores 2..5, the least 'better' key that reaches it (R's
    key is minus the recency days); None when no buyer reaches that score."""

    r: tuple[int | None, ...]
    f: tuple[int | None, ...]
    m: tuple[Decimal | None, ...]

    def json(self) -> dict[str, Any]:
        return {"r": list(self.r), "f": list(self.f),
                "m": [None if x is None else str(x) for x in self.m]}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Bounds:
        return cls(tuple(body["r"]), tuple(body["f"]),
                   tuple(None if x is None else Decimal(x) for x in body["m"]))


def base_rfm(customers: Mapping[str, value.CustomerValueFacts], now_ms: int,
             ) -> tuple[dict[str, value.RFM], Bounds]:
    """Every customer's RFM as of ``now_ms`` and the bounds that reproduce them."""
    scored = value.rfm(customers, now_ms)
    lows: list[list[Any]] = [[None] * 4, [None] * 4, [None] * 4]
    for x in scored.values():
        if x.r is None or x.f is None or x.m is None or x.recency_days is None:
            continue
        for low, s, key in zip(lows, (x.r, x.f, x.m),
                               (-x.recency_days, x.frequency, x.monetary), strict=True):
            for i in range(s - 1):
                if low[i] is None or key < low[i]:
                    low[i] = key
    return scored, Bounds(tuple(lows[0]), tuple(lows[1]), tuple(lows[2]))


def _score(bounds: Sequence[Any], key: Any) -> int:
    return 1 + sum(1 for t in bounds if t is not None and key >= t)


def rfm_with(bounds: Bounds | None, f: value.CustomerValueFacts, now_ms: int) -> value.RFM:
    """One customer's RFM against stored bounds; before the first bounds, as if the
    customer were the only buyer (the middle score, 3, on each axis)."""
    if f.frequency == 0 or f.last_purchase_ms is None:
        return value.RFM(value.PROSPECT)
    days = max(0, (now_ms - f.last_purchase_ms) // DAY_MS)
    if bounds is None or bounds.r[0] is None:  # none yet, or a base without buyers
        r = fq = m = 3
    else:
        r, fq, m = (_score(bounds.r, -days), _score(bounds.f, f.frequency),
                    _score(bounds.m, f.monetary))
    return value.RFM(value._GRID[r - 1][fq - 1], days, f.frequency, f.monetary,  # noqa: SLF001
                     r, fq, m)


@dataclass(frozen=True)
class Scores:
    as_of: int
    valid_until: int | None
    windows: dict[str, Any]
    churn: churn.ChurnRisk
    worth: value.CustomerValueFacts  # last purchase, purchases, revenue in the base currency
    rfm: value.RFM


def scores(facts: CustomerFacts, as_of: int, bounds: Bounds | None, base: str,
           rates: Mapping[str, Decimal]) -> Scores:
    cf = facts.churn_facts()
    vf = facts.value_facts(base, rates)
    return Scores(as_of, next_change(facts, as_of, cf), windows(facts, as_of),
                  churn.churn_risk(cf, as_of), vf, rfm_with(bounds, vf, as_of))


def windows(facts: CustomerFacts, as_of: int) -> dict[str, Any]:
    """``satisfaction.summarize`` over the 7, 30 and 90 days up to ``as_of``, in one pass."""
    tallies: dict[int, dict[str, Tally]] = {d: {} for d in WINDOWS}
    for _, ms, kind, score in facts.surveys:
        if ms > as_of or kind not in satisfaction.KINDS:
            continue
        for d in WINDOWS:
            if ms > as_of - d * DAY_MS:
                tallies[d].setdefault(kind, Tally()).add(tally(kind, score))
    return {f"{d}d": summary(tallies[d]) if tallies[d] else _EMPTY for d in WINDOWS}


_EMPTY = summary({})  # shared: the stored figures are only read


def next_change(facts: CustomerFacts, as_of: int, cf: churn.ChurnFacts | None = None,
                ) -> int | None:
    """The first instant after ``as_of`` at which the windows or the churn risk of these
    facts can differ from theirs at ``as_of`` (None: not by the clock alone)."""
    best: int | None = None
    for ms, kind in (*((ms, "s") for _, ms, _, _ in facts.surveys), *facts.activity,
                     *((ms, "b") for ms in facts.breached_ms)):
        # an answer enters every window and leaves each in turn; an interaction counts in
        # the frequency signal's two 90 days, a complaint 30 days, a breach its 90 days
        steps = _SURVEY_STEPS if kind == "s" else _BREACH_STEPS if kind == "b" else \
            _COMPLAINT_STEPS if kind == COMPLAINT else _ACTIVITY_STEPS
        for step in steps:
            t = ms + step
            if t > as_of:
                if best is None or t < best:
                    best = t
                break  # steps are ascending
    for t in _recency_changes(cf or facts.churn_facts(), as_of):
        if best is None or t < best:
            best = t
    return best


_SURVEY_STEPS = (0, *(d * DAY_MS for d in WINDOWS))
_ACTIVITY_STEPS = (0, 90 * DAY_MS, 180 * DAY_MS)
_COMPLAINT_STEPS = (0, 30 * DAY_MS, 90 * DAY_MS, 180 * DAY_MS)
_BREACH_STEPS = (0, churn.BREACH_DAYS * DAY_MS)


def _recency_changes(cf: churn.ChurnFacts, as_of: int) -> list[int]:
    """When the recency factor moves on its own: it appears at twice the rhythm, then its
    text (the ratio to one decimal), the rounded score and the factors' order change
    until its contribution is capped at 16x."""
    active = [t for t in (*cf.contact_ms, *cf.purchase_ms) if t <= as_of]
    if not active:
        return []
    last = max(active)
    days = sorted({t // DAY_MS for t in active})
    gaps = [b - a for a, b in zip(days, days[1:], strict=False)]
    rhythm = max(1.0, median(gaps)) if len(gaps) >= 2 else churn.DEFAULT_RHYTHM_DAYS

    def at(ratio: float) -> int:  # a little early rather than late: float rounding
        return last + math.floor(ratio * rhythm * DAY_MS) - 2

    ratio = (as_of - last) / DAY_MS / rhythm  # as churn._recency has it
    if ratio <= 2:
        return [max(at(2) + 3, as_of + 1)]
    out = [at(float(f"{ratio:.1f}") + 0.05)]  # the text shows the ratio to one decimal
    x = min(math.log2(ratio) - 1, 3.0)
    if x < 3:
        others = _other_weights(cf, active, as_of)
        z = churn.BIAS + sum(others) + 2 * x
        b = round(1 / (1 + math.exp(-z)), 2) + 0.005
        if b < 1:
            xb = x + (math.log(b / (1 - b)) - z) / 2
            if xb < 3:
                out.append(at(2 ** (xb + 1)))
        out += [at(2 ** (w / 2 + 1)) for w in others if x < w / 2 < 3]
    return [t if t > as_of else as_of + 1 for t in out]


def _other_weights(cf: churn.ChurnFacts, active: list[int], now: int) -> list[float]:
    """The positive contributions of every churn signal but recency, as churn_risk has them."""
    past = churn.ChurnFacts(cf.contact_ms, cf.purchase_ms,
                            [t for t in cf.complaint_ms if t <= now],
                            [a for a in cf.surveys if a[0] <= now],
                            cf.open_cases, [t for t in cf.breached_ms if t <= now])
    signals = [*churn._frequency(active, now), *churn._cases(past, now),  # noqa: SLF001
               *churn._satisfaction(past.surveys, now)]  # noqa: SLF001
    return [w for w, _ in signals if w > 0]
