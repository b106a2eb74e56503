"""HTTP routes of issue 14 (what the CRM texts ask for): churn economics, purchase cohorts
and workload reports, consent-aware campaign audiences, as one APIRouter with pydantic
response models."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..domain.retention import RetentionError, RetentionPolicy
from ..domain.segments import SEGMENTS
from .api.bodies import StorableBody
from .api.errors import V1, ApiError, responses
from .api.paging import decode_cursor, encode_cursor, only_known_params
from .audiences import COLUMNS, audience
from .audit import AuditLog
from .crmstore import CrmReports
from .readstore import ReadStore
from .retention import Retention

Role = Callable[[str], Callable[..., Awaitable[str]]]


# the envelope's errors every /v1 operation may answer (adapters/api/errors.py)
ERRORS = responses(*V1)
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


class AudienceMember(BaseModel):
    customer_id: str
    contact: str = Field(description="the e-mail address (email) or phone number (sms,"
                                     " voice), decrypted")
    segment: str
    churn_risk: float
    consent_at: str = Field(description="when the customer granted it (the latest answer)")


class AudiencePage(BaseModel):
    items: list[AudienceMember]
    next: str | None
    excluded: int = Field(description="selected customers left out for lack of consent")
    unreachable: int = Field(description="consenting customers without a readable contact"
                                         " identifier for the channel")


EXCLUDED = "X-Contactstream-Excluded"
UNREACHABLE = "X-Contactstream-Unreachable"
AUDIENCE_PATH = "/v1/audiences"
MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, -, @, a tab or CR first, or +
    not followed by a digit: "+36 30…" stays a phone number) gets a leading apostrophe, as
    OWASP advises for CSV exports; other values as they are."""
    if isinstance(value, str) and value and (
            value[0] in "=-@\t\r" or (value[0] == "+" and not value[1:2].isdigit())):
        return "'" + value
    return value


def _csv(items: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in item.items()} for item in items)
    return out.getvalue()


def crm_router(role: Role, reports: CrmReports, store: ReadStore | None = None,
               audit: AuditLog | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["reports"], responses=ERRORS,
                       dependencies=[Depends(only_known_params)])

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

    if store is not None:
        _audience_route(router, role, store, audit)
    return router


def _audience_route(router: APIRouter, role: Role, store: ReadStore,
                    audit: AuditLog | None) -> None:
    @router.get(
        "/audiences", tags=["audiences"], response_model=AudiencePage,
        summary="Customers to reach with a campaign: only those who consented",
        responses={**responses(400, e400="bad_cursor: a cursor this API did not issue; or"
                                         " unknown_parameter"),
                   200: {"content": {"text/csv": {}, "application/x-ndjson": {}},
                         "description": "format=json: a page; csv and jsonl: the whole"
                                        " audience. Header X-Contactstream-Excluded: how"
                                        " many were left out for lack of consent"}})
    async def audiences(
            request: Request, channel: Literal["email", "sms", "voice"],
            purpose: str = Query("marketing", min_length=1, max_length=100),
            segment: Literal[SEGMENTS] | None = None,  # type: ignore[valid-type]
            min_churn_risk: float | None = Query(None, ge=0, le=1),
            format: Literal["json", "csv", "jsonl"] = "json",
            limit: int = Query(1000, ge=1, le=1000), cursor: str | None = None,
            who: str = Depends(role("admin"))) -> Response:
        found = await run_in_threadpool(audience, store, channel, purpose, segment,
                                        min_churn_risk)
        items, nxt = found.items, None
        if format == "json":
            if cursor is not None:
                try:
                    after = decode_cursor(cursor)[1]
                except ApiError as exc:
                    raise ApiError(400, "bad_cursor", "cursor: not a cursor this API"
                                   " issued") from exc
                items = [i for i in items if i["customer_id"] > after]
            if len(items) > limit:
                items = items[:limit]
                nxt = encode_cursor(0, items[-1]["customer_id"])
        if audit is not None:  # every export, with how many customers it gave out
            audit.record(role=who, token_id=getattr(request.state, "token_id", None),
                         method="GET", path="/v1/audiences", action="audience.export",
                         status=200, items=len(items))
        headers = {EXCLUDED: str(found.excluded), UNREACHABLE: str(found.unreachable)}
        if format == "json":
            return JSONResponse({"items": items, "next": nxt, "excluded": found.excluded,
                                 "unreachable": found.unreachable}, headers=headers)
        body = _csv(items) if format == "csv" else "".join(
            json.dumps(i, ensure_ascii=False) + "\n" for i in items)
        return Response(body, media_type=MEDIA[format], headers=headers)


class RetentionIn(StorableBody):
    model_config = ConfigDict(extra="forbid", strict=True)
    inactive_days: int | None = Field(
        description="erase every customer with no interaction for this many days (1 to"
                    " 36500); null switches the policy off")


class RetentionOut(BaseModel):
    inactive_days: int | None
    set_at: str | None
    last_run_at: str | None
    last_erased: int = Field(description="customers the last run erased")
    erased_total: int = Field(description="customers the policy erased in all")
    next_run_at: str | None
    next_erasure_at: str | None = Field(description="when the customer inactive longest"
                                                    " falls due")


def _retention_routes(router: APIRouter, role: Role, retention: Retention) -> None:
    @router.put("/retention-policy", tags=["privacy"], response_model=RetentionOut,
                summary="Erase customers with no interaction for N days, continuously")
    async def put_retention(body: RetentionIn, request: Request,
                            _: str = Depends(role("admin"))) -> Any:
        try:
            policy = RetentionPolicy.from_json(body.model_dump())
        except RetentionError as exc:
            raise ApiError(422, "invalid_policy", str(exc)) from exc
        return await run_in_threadpool(retention.put, policy,
                                       getattr(request.state, "token_id", None))

    @router.get("/retention-policy", tags=["privacy"], response_model=RetentionOut,
                summary="The retention policy, its last run and when the next falls due")
    async def get_retention(_: str = Depends(role("admin"))) -> Any:
        return await run_in_threadpool(retention.status)


@dataclass(frozen=True)
class Crm:
    """What the routes of issue 14 read and write (adapters/bootstrap.py builds it)."""

    reports: CrmReports
    store: ReadStore | None = None  # audiences: decryption
    audit: AuditLog | None = None  # audiences: every export
    retention: Retention | None = None


def add_crm_routes(app: FastAPI, crm: Crm) -> None:
    router = crm_router(app.state.role, crm.reports, crm.store, crm.audit)
    if crm.retention is not None:
        _retention_routes(router, app.state.role, crm.retention)
    app.include_router(router)
