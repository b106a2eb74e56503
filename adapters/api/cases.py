"""Cases: the list, one case with its SLA clocks, and the agents' commands on it."""

from __future__ import annotations

from typing import Any, Literal

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ...domain.cases import CaseError, InvalidCommand, InvalidTransition
from ..caseservice import CaseNotFound, case_json
from ..logging import get_logger
from .auth import role
from .bodies import StorableBody
from .context import ApiContext, ctx
from .errors import V1, ApiError, invalid_as, responses
from .paging import CURSOR, Page, decode_cursor, encode_cursor, only_known_params

log = get_logger(__name__)
router = APIRouter(tags=["cases"], dependencies=[Depends(only_known_params)])

Status = Literal["open", "waiting", "resolved"]
CASE_COLUMNS = ("case_id", "customer_id", "status", "priority", "channel", "queue",
                "agent_id", "policy", "opened_at", "opened_ms")
COMMAND_ERRORS = responses(*V1, 404, 409, e404="no such case",
                           e409="invalid_transition, or conflict (changed concurrently)",
                           e422="invalid_command")


class CaseRow(BaseModel):
    id: str
    customer_id: str
    status: Status
    priority: str
    channel: str | None
    queue: str | None
    agent_id: str | None
    policy: str | None
    opened_at: str
    breached: bool


class Clock(BaseModel):
    target_s: float | None
    started_at: str | None
    due_at: str | None
    warn_at: str | None
    paused: bool
    stopped_at: str | None
    breached: bool
    remaining_s: float | None


class CaseView(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    customer_id: str
    status: Status
    priority: str
    channel: str | None
    queue: str | None
    agent_id: str | None
    opened_at: str | None
    first_response_at: str | None
    resolved_at: str | None
    resolution: str | None
    policy: str | None
    version: int
    sla: dict[str, Clock]
    breached: dict[str, bool]


class Assign(StorableBody):
    agent_id: str = Field(min_length=1)


class Reply(Assign):
    text: str | None = None


class Resolve(StorableBody):
    resolution: str | None = None


class NoBody(StorableBody):
    """Nothing is read from the body; it may be left out."""


@router.get("/v1/cases", response_model=Page[CaseRow], summary="Cases, newest first",
            responses=responses(*V1))
def list_cases(request: Request, status: Status | None = None,
               breached: bool | None = None, queue: str | None = None,
               customer_id: str | None = None,
               segment: str | None = Query(None, description="the customer's segment its"
                                           " SLA policy was chosen on (issue 14)"),
               limit: int = Query(50, ge=1, le=500),
               cursor: str | None = CURSOR, _: str = Depends(role("read")),
               ) -> dict[str, Any]:
    api = ctx(request)
    store, control = api.store, api.need_control()
    sql = [f"SELECT {', '.join(CASE_COLUMNS)} FROM cases WHERE 1=1"]
    args: list[Any] = []
    if status is not None:
        sql.append("AND status=%s")
        args.append(status)
    if queue is not None:
        sql.append("AND queue=%s")
        args.append(queue)
    if customer_id is not None:
        # the customer and every base customer merged into it
        sql.append("AND customer_id = ANY(%s)")
        args.append(store.members(store.resolve(customer_id) or customer_id))
    if segment is not None:  # the segment its SLA policy was chosen on (issue 14)
        sql.append("AND case_id IN (SELECT case_id FROM timeline WHERE type ="
                   " 'case.opened' AND payload->>'segment' = %s)")
        args.append(segment)
    breached_ids = control.breached_case_ids()
    if breached is not None:
        # one parameter however many: the ids travel as an array
        sql.append("AND case_id = ANY(%s)" if breached else "AND NOT case_id = ANY(%s)")
        args.append(sorted(breached_ids))
    if cursor:
        sql.append("AND (opened_ms, case_id) < (%s, %s)")
        args += list(decode_cursor(cursor))
    sql.append("ORDER BY opened_ms DESC, case_id DESC LIMIT %s")
    args.append(limit + 1)
    rows = [dict(zip(CASE_COLUMNS, r, strict=True)) for r in store.db.all(" ".join(sql), args)]
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1]["opened_ms"], rows[-1]["case_id"])
    items = []
    for r in rows:
        r.pop("opened_ms")
        r["id"] = r.pop("case_id")
        r["breached"] = r["id"] in breached_ids
        items.append({k: r[k] for k in ("id", "customer_id", "status", "priority", "channel",
                                         "queue", "agent_id", "policy", "opened_at",
                                         "breached")})
    return {"items": items, "next": nxt}


def _view(api: ApiContext, case: Any) -> dict[str, Any]:
    privacy = api.store.privacy
    view = case_json(case, api.now(), api.need_control().calendars(),
                     privacy.open if privacy is not None else (lambda v: v))
    view["breached"] = {m: c["breached"] for m, c in view["sla"].items()}
    return view


@router.get("/v1/cases/{case_id}", response_model=CaseView,
            summary="A case with its SLA clocks", responses=responses(*V1, 404))
def get_case(case_id: str, request: Request, _: str = Depends(role("read"))) -> dict[str, Any]:
    api = ctx(request)
    try:
        case = api.need_cases().get(case_id)
    except CaseNotFound as exc:
        raise ApiError(404, "not_found", "no such case") from exc
    return _view(api, case)


def _command(api: ApiContext, case_id: str, action: str, body: dict[str, Any],
             ) -> dict[str, Any]:
    try:
        case = api.need_cases().command(case_id, action, body)
    except CaseNotFound as exc:
        raise ApiError(404, "not_found", "no such case") from exc
    except InvalidTransition as exc:
        raise ApiError(409, "invalid_transition", str(exc)) from exc
    except (InvalidCommand, CaseError) as exc:
        raise ApiError(422, "invalid_command", str(exc)) from exc
    except IntegrityError as exc:
        raise ApiError(409, "conflict", "the case was changed concurrently; "
                       "fetch it and try again") from exc
    log.debug("case.command", case_id=str(case.id), action=action, version=case.version)
    return _view(api, case)


async def _act(request: Request, case_id: str, action: str, body: BaseModel | None,
               ) -> dict[str, Any]:
    given = body.model_dump(exclude_none=True) if body is not None else {}
    return await run_in_threadpool(_command, ctx(request), case_id, action, given)


@router.post("/v1/cases/{case_id}/assign", response_model=CaseView, summary="Assign a case",
             responses=COMMAND_ERRORS)
@invalid_as("invalid_command")
async def case_assign(case_id: str, request: Request, body: Assign | None = Body(None),
                      _: str = Depends(role("act"))) -> dict[str, Any]:
    return await _act(request, case_id, "assign", body)


@router.post("/v1/cases/{case_id}/reply", response_model=CaseView, summary="Reply on a case",
             responses=COMMAND_ERRORS)
@invalid_as("invalid_command")
async def case_reply(case_id: str, request: Request, body: Reply | None = Body(None),
                     _: str = Depends(role("act"))) -> dict[str, Any]:
    return await _act(request, case_id, "reply", body)


@router.post("/v1/cases/{case_id}/wait", response_model=CaseView,
             summary="Wait on the customer: the clocks pause", responses=COMMAND_ERRORS)
@invalid_as("invalid_command")
async def case_wait(case_id: str, request: Request, body: NoBody | None = Body(None),
                    _: str = Depends(role("act"))) -> dict[str, Any]:
    return await _act(request, case_id, "wait", None)


@router.post("/v1/cases/{case_id}/resolve", response_model=CaseView,
             summary="Resolve a case", responses=COMMAND_ERRORS)
@invalid_as("invalid_command")
async def case_resolve(case_id: str, request: Request, body: Resolve | None = Body(None),
                       _: str = Depends(role("act"))) -> dict[str, Any]:
    return await _act(request, case_id, "resolve", body)


@router.post("/v1/cases/{case_id}/reopen", response_model=CaseView,
             summary="Reopen a case", responses=COMMAND_ERRORS)
@invalid_as("invalid_command")
async def case_reopen(case_id: str, request: Request, body: NoBody | None = Body(None),
                      _: str = Depends(role("act"))) -> dict[str, Any]:
    return await _act(request, case_id, "reopen", None)
