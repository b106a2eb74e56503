"""Satisfaction from ``survey.answered``: CSAT, NPS and CES, overall, windowed and per group."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

DAY_MS = 86_400_000
KINDS = ("csat", "nps", "ces")
GroupBy = Literal["agent", "channel", "queue"]
Block = dict[str, Any]  # {"score": float | None, "responses": int}


@dataclass(frozen=True, slots=True)
class SurveyAnswer:
    """One ``survey.answered`` event. The caller fills agent/queue from the case it refers
    to when the survey event itself carries none."""

    event_id: str
    customer_id: str
    occurred_ms: int
    kind: str  # csat 1-5, nps 0-10, ces 1-7
    score: int
    agent_id: str | None = None
    channel: str | None = None
    queue: str | None = None
    case_id: str | None = None


def csat(scores: Iterable[int]) -> Block:
    """% of answers that are 4 or 5, one decimal."""
    s = list(scores)
    return {"score": round(100 * sum(1 for x in s if x >= 4) / len(s), 1) if s else None,
            "responses": len(s)}


def nps(scores: Iterable[int]) -> Block:
    """% promoters (9-10) minus % detractors (0-6), in points, one decimal."""
    s = list(scores)
    if not s:
        return {"score": None, "responses": 0}
    net = sum(1 for x in s if x >= 9) - sum(1 for x in s if x <= 6)
    return {"score": round(100 * net / len(s), 1), "responses": len(s)}


def ces(scores: Iterable[int]) -> Block:
    """Mean effort score, two decimals."""
    s = list(scores)
    return {"score": round(sum(s) / len(s), 2) if s else None, "responses": len(s)}


_FORMULAS = {"csat": csat, "nps": nps, "ces": ces}


def _unique(answers: Iterable[SurveyAnswer]) -> Iterator[SurveyAnswer]:
    """Each event id once: the id is the idempotency key, so a repeat is the same event."""
    seen: set[str] = set()
    for a in answers:
        if a.event_id not in seen:
            seen.add(a.event_id)
            yield a


def _in_window(a: SurveyAnswer, now_ms: int | None, window_days: int | None) -> bool:
    if now_ms is None:
        if window_days is not None:
            raise ValueError("window_days needs now_ms")
        return True
    lo = now_ms - window_days * DAY_MS if window_days is not None else None
    return a.occurred_ms <= now_ms and (lo is None or a.occurred_ms > lo)


def summarize(answers: Iterable[SurveyAnswer], *, now_ms: int | None = None,
              window_days: int | None = None) -> dict[str, Block]:
    """CSAT/NPS/CES over answers whose EVENT time is in (now - window, now]; no window means
    all time (up to ``now_ms`` when given). Order and duplicates do not change the result."""
    scores: dict[str, list[int]] = {k: [] for k in KINDS}
    for a in _unique(answers):
        if a.kind in scores and _in_window(a, now_ms, window_days):
            scores[a.kind].append(a.score)
    return {k: _FORMULAS[k](scores[k]) for k in KINDS}


_KEY = {"agent": "agent_id", "channel": "channel", "queue": "queue"}


def by_group(answers: Iterable[SurveyAnswer], group_by: GroupBy, now_ms: int | None = None,
             window_days: int | None = None) -> list[dict[str, Any]]:
    """One row per group, sorted by group; answers without a value go in group ``None``,
    which sorts last, so the rows add up to the overall summary."""
    attr = _KEY[group_by]
    groups: dict[str | None, list[SurveyAnswer]] = {}
    for a in _unique(answers):
        groups.setdefault(getattr(a, attr), []).append(a)
    rows = [{"group": g, **summarize(xs, now_ms=now_ms, window_days=window_days)}
            for g, xs in groups.items()]
    rows = [r for r in rows if any(r[k]["responses"] for k in KINDS)]  # type: ignore[index]
    return sorted(rows, key=lambda r: (r["group"] is None, r["group"] or ""))


@dataclass(slots=True)
class Counts:
    """All-time sufficient statistics of one customer's answers."""

    csat_n: int = 0
    csat_satisfied: int = 0
    nps_n: int = 0
    nps_promoters: int = 0
    nps_detractors: int = 0
    ces_n: int = 0
    ces_sum: int = 0

    def summary(self) -> dict[str, Block]:
        def pct(x: int, n: int) -> float | None:
            return round(100 * x / n, 1) if n else None
        return {
            "csat": {"score": pct(self.csat_satisfied, self.csat_n), "responses": self.csat_n},
            "nps": {"score": pct(self.nps_promoters - self.nps_detractors, self.nps_n),
                    "responses": self.nps_n},
            "ces": {"score": round(self.ces_sum / self.ces_n, 2) if self.ces_n else None,
                    "responses": self.ces_n},
        }


@dataclass
class SatisfactionState:
    """Per-customer all-time counts plus the event ids already folded in."""

    seen: set[str] = field(default_factory=set)
    customers: dict[str, Counts] = field(default_factory=dict)


def apply(state: SatisfactionState, answer: SurveyAnswer) -> SatisfactionState:
    """Fold one answer in; a repeated event id changes nothing."""
    if answer.event_id in state.seen or answer.kind not in KINDS:
        return state
    state.seen.add(answer.event_id)
    c = state.customers.setdefault(answer.customer_id, Counts())
    s = answer.score
    if answer.kind == "csat":
        c.csat_n += 1
        c.csat_satisfied += s >= 4
    elif answer.kind == "nps":
        c.nps_n += 1
        c.nps_promoters += s >= 9
        c.nps_detractors += s <= 6
    else:
        c.ces_n += 1
        c.ces_sum += s
    return state


def customer_summary(state: SatisfactionState, customer_id: str) -> dict[str, Block]:
    """The customer view's ``satisfaction`` block, all time (all ``None`` if never asked)."""
    return state.customers.get(customer_id, Counts()).summary()
