"""Customers: lookup, the at-risk list, the 360 view, the timeline; a customer's identity
(merge history) and the unmerge an admin asks for."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from ...domain.identity import CustomerLink
from ...projections.identifiers import derived_customer_id, normalize
from .alerts import parse_time
from .auth import role
from .bodies import StorableBody
from .context import ctx
from .errors import V1, ApiError, responses
from .paging import (
    CURSOR,
    MAX_BIGINT,
    Page,
    decode_cursor,
    decode_offset,
    encode_cursor,
    encode_offset,
    only_known_params,
)

router = APIRouter(tags=["customers"], dependencies=[Depends(only_known_params)])
# merges and unmerges: registered with the privacy routes (app.add_privacy_routes)
identity_router = APIRouter(tags=["customers"], dependencies=[Depends(only_known_params)])


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Score(BaseModel):
    score: float | None
    responses: int


class Satisfaction(Open):
    csat: Score
    nps: Score
    ces: Score


class ChurnRisk(BaseModel):
    score: float
    factors: list[str]


class CustomerId(BaseModel):
    id: str


class CustomerRow(Open):
    id: str
    segment: str | None
    lifetime_revenue: str | None
    currency: str
    churn_risk: ChurnRisk


class CustomerPage(Page[CustomerRow]):
    total: int


class OpenCase(Open):
    id: str
    status: str
    priority: str
    queue: str | None


class Value(Open):
    lifetime_revenue: str | None
    currency: str
    segment: str


class CustomerView(Open):
    """The customer 360 view (docs/CONTRACT.md); blocks added later are kept."""
    id: str
    identifiers: dict[str, list[str]]
    name: str | None
    interaction_counts: dict[str, int]
    interactions_total: int
    last_contact_at: str | None
    open_cases: list[OpenCase]
    satisfaction: Satisfaction
    satisfaction_windows: dict[str, Satisfaction]
    value: Value
    churn_risk: ChurnRisk
    consent: list[dict[str, Any]]


class TimelineItem(BaseModel):
    event_id: str
    occurred_at: str
    received_at: int = Field(description="when ingest took it, epoch milliseconds")
    type: str
    channel: str | None
    source: str | None
    agent_id: str | None
    queue: str | None
    case_id: str | None
    payload: dict[str, Any]


class MergeStep(BaseModel):
    member: str
    action: Literal["merged", "unmerged"]
    survivor: str | None
    by: str | None
    reason: str | None
    at: str


class Identity(BaseModel):
    id: str
    members: list[str]
    history: list[MergeStep]


class Unmerge(StorableBody):
    """Give `member` (a base customer id) or `identifier` (`{kind: value}`)."""
    model_config = ConfigDict(extra="forbid")
    member: str | None = Field(None, min_length=1)
    identifier: dict[Literal["email", "phone", "visitor_id"], str] | None = Field(
        None, min_length=1, max_length=1)
    reason: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Unmerge:
        if not self.member and not self.identifier:
            raise ValueError("member (an id) or identifier ({kind: value}) is required")
        return self


class UnmergeAccepted(BaseModel):
    request: int
    status: Literal["pending"]
    survivor: str
    member: str


class UnmergeRequest(Open):
    seq: int
    survivor: str
    member: str
    done_at: str | None
    error: str | None
    status: Literal["pending", "done"]


@router.get("/v1/customers/lookup", response_model=CustomerId,
            summary="A customer's id by one identifier",
            responses=responses(*V1, 404, e400="bad_query: not exactly one identifier given"))
def lookup(request: Request, id: str | None = None, email: str | None = None,
           phone: str | None = None, visitor_id: str | None = None,
           _: str = Depends(role("read"))) -> dict[str, str]:
    given = [(k, v) for k, v in (("id", id), ("email", email), ("phone", phone),
                                 ("visitor_id", visitor_id)) if v]
    if len(given) != 1:
        raise ApiError(400, "bad_query", "give exactly one of id, email, phone, visitor_id")
    kind, value = given[0]
    return {"id": find_customer(request, kind, value)}


def find_customer(request: Request, kind: str, value: str) -> str:
    """The id of the customer with this identifier (matched after normalisation), for the
    lookups (GET here, POST in console.py); 404 when none."""
    store = ctx(request).store
    stored = (store.privacy.lookup_value(kind, value) if store.privacy is not None
              else normalize(kind, value))
    cid = store.lookup(kind, stored)
    request.state.audit_customer_id = cid
    if cid is None:
        raise ApiError(404, "not_found", "no customer with that identifier")
    return cid


@router.get("/v1/customers", response_model=CustomerPage,
            summary="Customers by segment and churn risk, riskiest first",
            responses=responses(*V1))
def customers(request: Request, segment: str | None = None,
              min_churn_risk: float | None = Query(None, ge=0, le=1),
              limit: int = Query(100, ge=1, le=1000), cursor: str | None = CURSOR,
              _: str = Depends(role("read"))) -> dict[str, Any]:
    rows = ctx(request).insights.customers(segment, min_churn_risk)
    start = decode_offset(cursor) if cursor else 0
    page = rows[start:start + limit]
    nxt = encode_offset(start + limit) if start + limit < len(rows) else None
    return {"items": page, "next": nxt, "total": len(rows)}


@router.get("/v1/customers/{customer_id}", response_model=CustomerView,
            summary="The customer 360 view", responses=responses(*V1, 404))
async def customer(customer_id: str, request: Request,
                   _: str = Depends(role("read"))) -> dict[str, Any]:
    # async with the reads in one thread hop: a sync endpoint's response is validated
    # in a second one
    view = await run_in_threadpool(ctx(request).insights.customer_view, customer_id)
    if view is None:
        raise ApiError(404, "not_found", "no such customer")
    request.state.audit_customer_id = view["id"]  # the audit need not resolve it again
    return view


@router.get("/v1/customers/{customer_id}/timeline", response_model=Page[TimelineItem],
            summary="Every interaction and case event of the customer, newest first",
            responses=responses(*V1, 404, e400="bad_cursor, bad_query (as_of without an"
                                " offset) or unknown_parameter"))
async def timeline(customer_id: str, request: Request,
                   limit: int = Query(50, ge=1, le=500), cursor: str | None = CURSOR,
                   before: str | None = Query(None, description="the contract's name of"
                                              " `cursor`, kept as an alias"),
                   channel: list[str] = Query(default=[]),
                   type: list[str] = Query(default=[]),
                   as_of: str | None = Query(None, description="ISO 8601 time with offset",
                                             json_schema_extra={"format": "date-time"}),
                   _: str = Depends(role("read"))) -> dict[str, Any]:
    store = ctx(request).store
    if cursor and before and cursor != before:
        raise ApiError(400, "bad_query", "give cursor or before, not both")
    name, given = ("cursor", cursor) if cursor else ("before", before)
    # an ISO 8601 time, not whatever pydantic would take for one (a number of seconds)
    at = parse_time("as_of", as_of) if as_of is not None else None

    def page() -> list[dict[str, Any]]:
        with store.reading() as conn:  # two round trips on one connection
            who = store.subject(customer_id, conn)
            if who is None:
                raise ApiError(404, "not_found", "no such customer")
            request.state.audit_customer_id = who.id  # the audit need not resolve it
            channels = [c for v in channel for c in v.split(",") if c]
            types = [t for v in type for t in v.split(",") if t]
            return store.timeline(
                who, limit=limit + 1, before=decode_cursor(given, name) if given else None,
                channels=channels, types=types,
                as_of_ms=int(at.timestamp() * 1000) if at else None, conn=conn)
    rows = await run_in_threadpool(page)  # as the view: one thread hop
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1]["occurred_ms"], rows[-1]["event_id"])
    for r in rows:
        r.pop("occurred_ms")
    return {"items": rows, "next": nxt}


@identity_router.get("/v1/customers/{customer_id}/identity", response_model=Identity,
            summary="The base customers merged into this one, with the merge history",
            responses=responses(*V1, 404))
def identity(customer_id: str, request: Request,
             _: str = Depends(role("supervise"))) -> dict[str, Any]:
    api = ctx(request)
    cid = api.store.resolve(customer_id)
    if cid is None:
        raise ApiError(404, "not_found", "no such customer")
    history = []
    for member in api.store.members(cid):
        try:
            link = api.links.repository.get(CustomerLink.id_for(member))
        except AggregateNotFoundError:
            continue
        for kind, survivor, by, reason, at in link.history:
            history.append({"member": member, "action": kind, "survivor": survivor,
                            "by": by, "reason": reason, "at": at.isoformat()})
    history.sort(key=lambda h: h["at"])
    return {"id": cid, "members": api.store.members(cid), "history": history}


@identity_router.post("/v1/customers/{customer_id}/unmerge", status_code=202,
             response_model=UnmergeAccepted,
             summary="Undo a wrong merge: the member becomes a customer of its own again",
             responses=responses(*V1, 404, 409, e409="not_merged: the member is not merged"
                                 " into this customer, or is the customer itself"))
def unmerge(customer_id: str, body: Unmerge, request: Request,
            who: str = Depends(role("admin"))) -> dict[str, Any]:
    api = ctx(request)
    store = api.store
    member = body.member
    if body.identifier and store.privacy is not None:
        # the customer first known by this identifier alone (its base id)
        (kind, value), = body.identifier.items()
        member = derived_customer_id(kind, store.privacy.lookup_value(kind, value))
    if not member:
        raise ApiError(422, "invalid_request",
                       "member (an id) or identifier ({kind: value}) is required")
    cid = store.resolve(customer_id)
    if cid is None:
        raise ApiError(404, "not_found", "no such customer")
    if store.resolve(member) != cid or member == cid:
        raise ApiError(409, "not_merged", f"{member} is not merged into {cid}")
    reason = str(body.reason or "unmerged by an admin")[:500]
    seq = api.need_control().request_unmerge(cid, member, f"{who}:{request.state.token_id}",
                                             reason, datetime.now(UTC).isoformat())
    return {"request": seq, "status": "pending", "survivor": cid, "member": member}


@identity_router.get("/v1/identity/requests/{seq}", response_model=UnmergeRequest,
            summary="An unmerge request", responses=responses(*V1, 404))
def unmerge_status(request: Request, seq: int = Path(ge=1, le=MAX_BIGINT),
                   _: str = Depends(role("admin"))) -> dict[str, Any]:
    row = ctx(request).need_control().unmerge_request(seq)
    if row is None:
        raise ApiError(404, "not_found", "no such request")
    return {**row, "status": "done" if row["done_at"] else "pending"}
