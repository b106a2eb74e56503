"""Reports for supervisors: satisfaction, RFM segments, the revenue pareto, and the
service report (SLA attainment, backlog, response times, abandonment)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ...projections.service import CallEnded, CaseRow, service_report, today_start
from .auth import role
from .context import ctx
from .customers import Open, Satisfaction
from .errors import V1, responses
from .paging import only_known_params

router = APIRouter(tags=["reports"], dependencies=[Depends(only_known_params)])
# the service report reads cases and alerts: registered with them (add_case_routes)
service_router = APIRouter(tags=["reports"], dependencies=[Depends(only_known_params)])
WINDOW_DOC = "0 means all time"


class SatisfactionRow(Satisfaction):
    group: str | None


class SatisfactionReport(Open):
    group_by: Literal["agent", "channel", "queue"]
    window_days: int | None
    items: list[SatisfactionRow]


class SegmentRow(BaseModel):
    segment: str
    customers: int
    revenue: str | None


class SegmentsReport(Open):
    currency: str
    items: list[SegmentRow]


class ParetoReport(Open):
    currency: str
    share: float
    customers: int
    top_customers: list[str]
    top_share_of_revenue: float
    top_revenue: str | None
    total_revenue: str | None


class ServiceReport(Open):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    window_days: int | None = Field(description="null with today=true")
    sla_attainment_pct: float | None
    backlog: dict[str, int]
    mean_first_response_s: float | None
    mean_resolution_s: float | None
    abandonment_rate: float | None
    counts: dict[str, int]
    from_: str | None = Field(alias="from")  # a keyword in Python: named by its alias
    to: str


@router.get("/v1/reports/satisfaction", response_model=SatisfactionReport,
            summary="CSAT, NPS and CES per agent, channel or queue", responses=responses(*V1))
def satisfaction_report(request: Request,
                        group_by: Literal["agent", "channel", "queue"] = "channel",
                        window_days: int = Query(30, ge=0, le=3650, description=WINDOW_DOC),
                        _: str = Depends(role("supervise"))) -> dict[str, Any]:
    return ctx(request).insights.satisfaction_report(group_by, window_days or None)


@router.get("/v1/reports/segments", response_model=SegmentsReport,
            summary="Customers and revenue per RFM segment", responses=responses(*V1))
def segments_report(request: Request, _: str = Depends(role("supervise"))) -> dict[str, Any]:
    return ctx(request).insights.segments_report()


@router.get("/v1/reports/pareto", response_model=ParetoReport,
            summary="Share of revenue from the top customers (80/20)", responses=responses(*V1))
def pareto_report(request: Request, share: float = Query(0.2, gt=0, le=1),
                  _: str = Depends(role("supervise"))) -> dict[str, Any]:
    return ctx(request).insights.pareto_report(share)


@service_router.get(
    "/v1/reports/service", response_model=ServiceReport,
    summary="SLA attainment, backlog, response and resolution times, abandonment",
    responses=responses(*V1))
def service(request: Request,
            window_days: int = Query(1, ge=0, le=3650, description=WINDOW_DOC),
            today: bool = Query(False, description="the window is today, from midnight in"
                                " CONTACTSTREAM_TIMEZONE; window_days is ignored"),
            _: str = Depends(role("supervise"))) -> dict[str, Any]:
    api = ctx(request)
    store, control = api.store, api.need_control()
    at = api.now()
    now_ms = int(at.timestamp() * 1000)
    start_ms = now_ms - window_days * 86_400_000 if window_days else None
    if today:  # the window (start, now]: a case opened at midnight is today's
        start_ms = int(today_start(at, api.tz).timestamp() * 1000) - 1
    rows = store.db.all(
        "SELECT case_id, status, priority, opened_ms, policy, first_response_ms,"
        " resolved_ms, queue FROM cases WHERE status <> 'resolved' OR %s::bigint IS NULL"
        " OR opened_ms > %s ORDER BY case_id",
        (start_ms, start_ms if start_ms is not None else 0))
    case_rows = [CaseRow(*r) for r in rows]
    # counted by outcome in the database: a window holds tens of thousands of calls
    calls = [CallEnded(ms, outcome, n) for ms, outcome, n in store.db.all(
        "SELECT MAX(occurred_ms), payload->>'outcome', COUNT(*) FROM timeline"
        " WHERE type='call.ended' AND occurred_ms > %s AND occurred_ms <= %s GROUP BY 2",
        (start_ms if start_ms is not None else -(2 ** 62), now_ms))]
    report = service_report(case_rows, control.breached_case_ids(), calls, now_ms=now_ms,
                            window_days=window_days or None, start_ms=start_ms)
    report["window_days"] = None if today else window_days
    report["from"] = (datetime.fromtimestamp(start_ms / 1000, UTC).isoformat()
                      if start_ms is not None else None)
    if today:
        report["from"] = today_start(at, api.tz).isoformat()
        report["timezone"] = str(api.tz)
    report["to"] = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat()
    return report
