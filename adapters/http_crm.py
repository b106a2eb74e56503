"""HTTP routes of issue 14 (what the CRM texts ask for): churn economics, purchase cohorts
and workload reports, as one APIRouter with pydantic response models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .crmstore import CrmReports

Role = Callable[[str], Callable[..., Awaitable[str]]]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The contract's error envelope."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no or unknown bearer token"},
    403: {"model": ErrorBody, "description": "the role may not read reports"},
    422: {"model": ErrorBody, "description": "a query parameter out of its range"},
    503: {"model": ErrorBody, "description": "the database is not answering; retry"},
}
Money = str  # a decimal string with two places, in the base currency


class ChurnFactor(BaseModel):
    factor: str = Field(description="recency, falling_frequency, falling_satisfaction,"
                                    " low_score, sla_breaches, open_cases or complaints")
    customers: int
    revenue_at_risk: Money


class ChurnReport(BaseModel):
    window_days: int
    active_start: int = Field(description="customers active in the window before the last")
    active_end: int = Field(description="customers active in the last window")
    retained: int = Field(description="active in both windows")
    retention_rate: float | None = Field(description="retained / active_start")
    churned: int = Field(description="active_start - retained")
    revenue_lost: Money = Field(description="the churned customers' revenue in the window"
                                            " before the last")
    revenue_at_risk: Money = Field(description="revenue of the last 90 days of customers"
                                               " whose churn risk is at least 0.5")
    currency: str
    at_risk_customers: int
    factors: list[ChurnFactor]
    as_of: str


class Cohort(BaseModel):
    cohort: str = Field(description="the period of the first purchase: 2026-03 or 2026-Q1")
    customers: int
    repeat_rate: float | None = Field(description="share with more than one purchase")
    revenue_per_customer: list[Money] = Field(description="per period since the first")
    retained: list[int] = Field(description="customers who bought, per period since the"
                                            " first")


class NewVsReturning(BaseModel):
    period: str
    new_avg_spend: Money | None
    returning_avg_spend: Money | None


class CohortReport(BaseModel):
    period: Literal["month", "quarter"]
    currency: str
    timezone: str
    cohorts: list[Cohort]
    new_vs_returning: list[NewVsReturning]
    as_of: str


class QueueLoad(BaseModel):
    queue: str | None
    open: int
    waiting: int
    breached: int
    oldest_open_s: int
    unassigned: int


class AgentLoad(BaseModel):
    agent_id: str
    open: int
    waiting: int
    breached: int
    assigned_today: int
    resolved_today: int


class Workload(BaseModel):
    queues: list[QueueLoad]
    agents: list[AgentLoad]
    timezone: str
    day_start: str
    as_of: str


def crm_router(role: Role, reports: CrmReports) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["reports"], responses=ERRORS)

    @router.get("/reports/churn", response_model=ChurnReport,
                summary="Retention, churn, revenue lost and at risk, and what drives it")
    async def churn(window_days: int = Query(90, ge=1, le=3650),
                    _: str = Depends(role("supervise"))) -> Any:
        return await run_in_threadpool(reports.churn, window_days)

    @router.get("/reports/cohorts", response_model=CohortReport,
                summary="Acquisition cohorts by the period of the first purchase")
    async def cohorts(period: Literal["month", "quarter"] = "month",
                      _: str = Depends(role("supervise"))) -> Any:
        return await run_in_threadpool(reports.cohorts, period)

    @router.get("/reports/workload", response_model=Workload,
                summary="Unresolved cases per queue and agent; today's assignments and"
                        " resolutions")
    async def workload(_: str = Depends(role("supervise"))) -> Any:
        return await run_in_threadpool(reports.workload)

    return router


def add_crm_routes(app: FastAPI, reports: CrmReports) -> None:
    app.include_router(crm_router(app.state.role, reports))
