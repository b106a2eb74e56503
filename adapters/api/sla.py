"""SLA policies and business calendars: put, list, delete. The models give the shapes;
the domain (SlaPolicy, BusinessCalendar) checks what a schema cannot (a real time zone,
spans that do not overlap, a calendar that exists)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ...domain.calendars import BusinessCalendar, CalendarError
from ...domain.sla import PolicyError, SlaPolicy
from ..control import CalendarInUse
from ..logging import get_logger
from .auth import role
from .bodies import StorableBody
from .context import ctx
from .errors import V1, ApiError, invalid_as, responses
from .paging import CURSOR, Page, offset_page, only_known_params

log = get_logger(__name__)
router = APIRouter(tags=["sla"], dependencies=[Depends(only_known_params)])

Priority = Literal["low", "normal", "high", "urgent"]
# domain.interactions.CHANNELS, spelled out for the type checker (tests/unit/test_api_models.py)
Channel = Literal["voice", "email", "chat", "sms", "social", "web", "in_person"]
Span = Annotated[list[str], Field(min_length=2, max_length=2,
                                  description='["HH:MM", "HH:MM"]')]
# the RFM segments a policy may match on (domain/segments.py)
Segment = Literal["champions", "loyal", "potential_loyalist", "new", "promising",
                  "need_attention", "about_to_sleep", "at_risk", "cannot_lose",
                  "hibernating", "lost", "prospect"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
NAME = Path(min_length=1, max_length=200, pattern=r"\S")
LIMIT = Query(100, ge=1, le=1000)


class PolicyIn(StorableBody):
    """`PUT /v1/sla-policies/{name}`: targets in seconds of business time."""
    model_config = ConfigDict(extra="forbid", strict=True)
    priority: list[Priority] | None = Field(None, min_length=1)
    channel: list[Channel] | None = Field(None, min_length=1)
    first_response_s: float = Field(gt=0, allow_inf_nan=False)
    next_response_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    resolution_s: float = Field(gt=0, allow_inf_nan=False)
    warn_at: float = Field(0.8, gt=0, lt=1)
    calendar: str | None = None
    segment: list[Segment] | None = Field(
        None, min_length=1, description="the customer's RFM segment when the case opens")
    min_lifetime_revenue: str | int | float | None = Field(
        None, examples=["1000.00"],
        description="the customer's lifetime revenue in the base currency when the case"
                    " opens, at least this (a decimal string)")
    name: str | None = Field(None, description="ignored: the name is the path's")


class Policy(BaseModel):
    name: str
    priority: list[Priority] | None
    channel: list[str] | None
    first_response_s: float
    next_response_s: float | None
    resolution_s: float
    warn_at: float
    calendar: str | None
    segment: list[str] | None = None
    min_lifetime_revenue: str | None = None


class CalendarIn(StorableBody):
    """`PUT /v1/calendars/{name}`: opening hours per weekday in the calendar's time zone."""
    model_config = ConfigDict(extra="forbid", strict=True)
    timezone: str = Field(min_length=1, examples=["Europe/Budapest"])
    hours: dict[Weekday, list[Span]] = Field(
        examples=[{"mon": [["09:00", "17:00"]]}])
    holidays: list[str] = Field(default_factory=list, examples=[["2026-12-25"]])


class Calendar(BaseModel):
    name: str
    timezone: str
    hours: dict[str, list[list[str]]]
    holidays: list[str]


GONE = responses(*V1, 404)


@router.put("/v1/sla-policies/{name}", response_model=Policy,
            summary="Create or replace an SLA policy", responses=responses(*V1))
@invalid_as("invalid_policy")
async def put_policy(body: PolicyIn, request: Request, name: str = NAME,
                     _: str = Depends(role("supervise"))) -> dict[str, Any]:
    control = ctx(request).need_control()
    try:
        policy = SlaPolicy.from_json(name, body.model_dump(exclude_unset=True))
    except PolicyError as exc:
        raise ApiError(422, "invalid_policy", str(exc)) from exc
    if policy.calendar is not None:
        known = await run_in_threadpool(control.calendars)
        if policy.calendar not in known:
            raise ApiError(422, "invalid_policy",
                           f"calendar {policy.calendar!r} is unknown: PUT "
                           f"/v1/calendars/{policy.calendar} first")
    await run_in_threadpool(control.put_policy, policy)
    log.info("sla.policy_put", policy=name)
    return policy.to_dict()


@router.get("/v1/sla-policies", response_model=Page[Policy],
            summary="SLA policies in matching order", responses=responses(*V1))
def list_policies(request: Request, limit: int = LIMIT, cursor: str | None = CURSOR,
                  _: str = Depends(role("supervise"))) -> dict[str, Any]:
    policies = [p.to_dict() for p in ctx(request).need_control().policies()]
    return offset_page(policies, limit, cursor)


@router.delete("/v1/sla-policies/{name}", status_code=204, response_class=Response,
               summary="Delete an SLA policy (open cases keep the one they took)",
               responses=GONE)
def delete_policy(request: Request, name: str = NAME,
                  _: str = Depends(role("supervise"))) -> Response:
    if not ctx(request).need_control().delete_policy(name):
        raise ApiError(404, "not_found", "no such policy")
    log.info("sla.policy_deleted", policy=name)
    return Response(status_code=204)


@router.put("/v1/calendars/{name}", response_model=Calendar,
            summary="Create or replace a business calendar", responses=responses(*V1))
@invalid_as("invalid_calendar")
async def put_calendar(body: CalendarIn, request: Request, name: str = NAME,
                       _: str = Depends(role("supervise"))) -> dict[str, Any]:
    try:
        cal = BusinessCalendar.from_json(name, body.model_dump(mode="json"))
    except CalendarError as exc:
        raise ApiError(422, "invalid_calendar", str(exc)) from exc
    await run_in_threadpool(ctx(request).need_control().put_calendar, cal, name)
    log.info("sla.calendar_put", calendar=name)
    return {"name": name, **cal.to_dict()}


@router.get("/v1/calendars", response_model=Page[Calendar], summary="Business calendars",
            responses=responses(*V1))
def list_calendars(request: Request, limit: int = LIMIT, cursor: str | None = CURSOR,
                   _: str = Depends(role("supervise"))) -> dict[str, Any]:
    calendars = ctx(request).need_control().calendars()
    rows = [{"name": n, **c.to_dict()} for n, c in sorted(calendars.items())]
    return offset_page(rows, limit, cursor)


@router.delete("/v1/calendars/{name}", status_code=204, response_class=Response,
               summary="Delete a calendar no policy names (open cases keep theirs)",
               responses=responses(*V1, 404, 409, e409="in_use: a policy names it"))
def delete_calendar(request: Request, name: str = NAME,
                    _: str = Depends(role("supervise"))) -> Response:
    try:
        found = ctx(request).need_control().delete_calendar(name)
    except CalendarInUse as exc:
        raise ApiError(409, "in_use", f"{exc}: change or delete the policy first") from exc
    if not found:
        raise ApiError(404, "not_found", "no such calendar")
    log.info("sla.calendar_deleted", calendar=name)
    return Response(status_code=204)
