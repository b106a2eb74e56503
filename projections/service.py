"""The service report (`GET /v1/reports/service`) as a pure function of plain rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from typing import Any, Final

from ..domain.interactions import PRIORITIES

DAY_MS: Final = 86_400_000
BACKLOG_STATUSES: Final = ("open", "waiting")


@dataclass(frozen=True, slots=True)
class CaseRow:
    """What the report needs of a case (a row of the read store's `cases` table)."""

    case_id: str
    status: str
    priority: str
    opened_ms: int
    policy: str | None = None
    first_response_ms: int | None = None
    resolved_ms: int | None = None
    queue: str | None = None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> CaseRow:
        return cls(case_id=row["case_id"], status=row["status"], priority=row["priority"],
                   opened_ms=int(row["opened_ms"]), policy=row.get("policy"),
                   first_response_ms=row.get("first_response_ms"),
                   resolved_ms=row.get("resolved_ms"), queue=row.get("queue"))


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A `call.ended` event: when it happened and its payload's `outcome`; or ``count`` of
    them with that outcome, the latest at ``occurred_ms`` (a store counts them by outcome
    in the window rather than sending each)."""

    occurred_ms: int
    outcome: str | None
    count: int = 1


def today_start(now: datetime, tz: tzinfo) -> datetime:
    """The midnight that began ``now``'s day in ``tz`` (after a DST change too)."""
    return datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)


def _mean_s(spans_ms: list[int]) -> float | None:
    return round(sum(spans_ms) / len(spans_ms) / 1000, 3) if spans_ms else None


def service_report(cases: Iterable[CaseRow], breached_case_ids: Collection[str],
                   calls: Iterable[CallEnded], *, now_ms: int,
                   window_days: int | None, start_ms: int | None = None) -> dict[str, Any]:
    """SLA attainment, backlog, mean response and resolution times and abandonment.

    The window is (now - window_days, now]; `window_days` None means all time (up to now);
    ``start_ms``, when given, is the window's start instead (today's midnight, say).
    - `sla_attainment_pct`: of the cases opened in the window that have an SLA policy, the
      share (in %) with no `sla.breached` alert; null when there is none.
    - `backlog`: cases open or waiting, whenever opened, by priority (every priority present).
    - `backlog_by_queue`: the same cases counted by queue, status and priority, one row each
      (`queue` null for cases without one), sorted.
    - `mean_first_response_s` / `mean_resolution_s`: over the cases opened in the window that
      had a first response / are resolved; null when none.
    - `abandonment_rate`: abandoned `call.ended` / all `call.ended` in the window (a fraction
      0–1); null when no call ended.
    """
    if start_ms is None and window_days is not None:
        start_ms = now_ms - window_days * DAY_MS

    def in_window(ms: int) -> bool:
        return ms <= now_ms and (start_ms is None or ms > start_ms)

    backlog = dict.fromkeys(PRIORITIES, 0)
    by_queue: Counter[tuple[str, str, str]] = Counter()
    opened = with_sla = breached = 0
    first_spans: list[int] = []
    resolution_spans: list[int] = []
    for case in cases:
        if case.status in BACKLOG_STATUSES:
            backlog[case.priority] = backlog.get(case.priority, 0) + 1
            by_queue[(case.queue or "", case.status, case.priority)] += 1
        if not in_window(case.opened_ms):
            continue
        opened += 1
        if case.policy:
            with_sla += 1
            if case.case_id in breached_case_ids:
                breached += 1
        if case.first_response_ms is not None:
            # events can arrive out of event-time order: a span is never negative
            first_spans.append(max(0, case.first_response_ms - case.opened_ms))
        if case.status == "resolved" and case.resolved_ms is not None:
            resolution_spans.append(max(0, case.resolved_ms - case.opened_ms))

    ended = abandoned = 0
    for call in calls:
        if in_window(call.occurred_ms):
            ended += call.count
            abandoned += call.count if call.outcome == "abandoned" else 0

    return {
        "window_days": window_days,
        "sla_attainment_pct": (round(100.0 * (with_sla - breached) / with_sla, 2)
                               if with_sla else None),
        "backlog": backlog,
        "backlog_by_queue": [{"queue": q or None, "status": s, "priority": p, "cases": n}
                             for (q, s, p), n in sorted(by_queue.items())],
        "mean_first_response_s": _mean_s(first_spans),
        "mean_resolution_s": _mean_s(resolution_spans),
        "abandonment_rate": round(abandoned / ended, 4) if ended else None,
        "counts": {
            "cases_opened": opened, "cases_with_sla": with_sla, "cases_breached": breached,
            "first_responses": len(first_spans), "resolved": len(resolution_spans),
            "backlog": sum(backlog.values()), "calls_ended": ended,
            "calls_abandoned": abandoned,
        },
    }
