"""Privacy: the erasure, the export of everything held about a customer, the access audit
and the middleware that writes it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...projections.identifiers import normalize
from ..audit import AuditLog
from ..control import ALERT_COLUMNS, ControlStore
from ..erasure import destroy_keys
from ..insights import Insights
from ..logging import get_logger
from ..readstore import ReadStore
from .alerts import parse_since
from .auth import role, token_fingerprint
from .context import ctx
from .errors import V1, ApiError, responses
from .paging import CURSOR, Page, decode_offset, encode_offset, only_known_params

log = get_logger(__name__)
router = APIRouter(tags=["privacy"], dependencies=[Depends(only_known_params)])

# (method, route template) -> audit action: the API's reads of a customer's personal data
AUDITED: dict[tuple[str, str], str] = {
    ("GET", "/v1/customers"): "customer.list",
    ("GET", "/v1/customers/lookup"): "customer.lookup",
    ("POST", "/v1/customers/lookup"): "customer.lookup",
    ("GET", "/v1/customers/{customer_id}"): "customer.view",
    ("GET", "/v1/customers/{customer_id}/timeline"): "customer.timeline",
    ("GET", "/v1/customers/{customer_id}/export"): "customer.export",
    ("DELETE", "/v1/customers/{customer_id}"): "customer.erase",
    ("GET", "/v1/cases/{case_id}"): "case.view",
}
LOOKUP_KINDS = ("id", "email", "phone", "visitor_id")
EXPORT_PAGE = 500


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, cred = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and cred.strip():
                return cred.strip()
    return None


class AuditMiddleware:
    """Records every request to an AUDITED route once its response has started (or it
    failed), refused ones included. Pure ASGI, so streamed responses pass untouched."""

    def __init__(self, app: ASGIApp, audit: AuditLog, store: ReadStore) -> None:
        self.app, self.audit, self.store = app, audit, store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            try:
                self._record(scope, status)
            except Exception as exc:  # the audit never breaks a request
                log.error("audit.middleware_failed", error=type(exc).__name__)

    def _record(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        action = AUDITED.get((scope["method"], template)) if template else None
        if action is None or template is None:
            return
        state = scope.get("state") or {}
        role = state.get("role")
        token_id = state.get("token_id")
        if token_id is None:  # refused before the auth dependency knew the caller
            token = _bearer(scope)
            token_id = token_fingerprint(token) if token else None
        params = scope.get("path_params") or {}
        customer_id = state.get("audit_customer_id")
        case_id = params.get("case_id")
        resolve: Callable[[], str | None] | None = None
        if customer_id is None:
            if "customer_id" in params:
                resolve = self._by_id(str(params["customer_id"]))
            elif case_id is not None:
                resolve = self._by_case(str(case_id))
            elif action == "customer.lookup" and status == 200:
                resolve = self._by_lookup(scope.get("query_string") or b"")
        self.audit.record(role=role, token_id=token_id, method=scope["method"], path=template,
                          action=action, status=status, customer_id=customer_id,
                          case_id=case_id, resolve=resolve)

    # resolvers run on the audit writer's thread, off the request's path
    def _by_id(self, asked: str) -> Callable[[], str | None]:
        # the id as asked when it no longer resolves (erased, or never known)
        return lambda: self.store.resolve(asked) or asked

    def _by_case(self, case_id: str) -> Callable[[], str | None]:
        def find() -> str | None:
            found = self.store.db.scalar("SELECT customer_id FROM cases WHERE case_id=%s",
                                         (case_id,))
            return str(found) if found is not None else None
        return find

    def _by_lookup(self, query_string: bytes) -> Callable[[], str | None]:
        def find() -> str | None:
            given = [(k, v) for k, v in parse_qsl(query_string.decode("latin-1"))
                     if k in LOOKUP_KINDS and v]
            if len(given) != 1:
                return None
            kind, value = given[0]
            return self.store.lookup(kind, normalize(kind, value))
        return find


def customer_alerts(control: ControlStore, bases: list[str], case_ids: list[str],
                    ) -> list[dict[str, Any]]:
    """Every alert about the customer or one of their cases, oldest first."""
    rows = control.db.all(
        f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE customer_id = ANY(%s)"
        " OR case_id = ANY(%s) ORDER BY seq", (bases, case_ids))
    return [dict(zip(ALERT_COLUMNS, row, strict=True)) for row in rows]


def customer_cases(store: ReadStore, cid: str) -> list[dict[str, Any]]:
    bases = store.members(cid)
    with store.db.tx() as conn:
        cur = conn.execute("SELECT * FROM cases WHERE customer_id = ANY(%s)"
                           " ORDER BY opened_ms, case_id", (bases,))
        cols = [d[0] for d in cur.description or ()]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def full_timeline(store: ReadStore, cid: str) -> list[dict[str, Any]]:
    """Every timeline item of the customer, all pages, oldest first."""
    items: list[dict[str, Any]] = []
    before: tuple[int, str] | None = None
    while True:
        page = store.timeline(cid, limit=EXPORT_PAGE, before=before, channels=[], types=[],
                              as_of_ms=None)
        items.extend(page)
        if len(page) < EXPORT_PAGE:
            break
        before = (page[-1]["occurred_ms"], page[-1]["event_id"])
    items.reverse()
    for item in items:
        item.pop("occurred_ms", None)
    return items


def export_customer(cid: str, store: ReadStore, insights: Insights, control: ControlStore,
                    audit: AuditLog) -> dict[str, Any]:
    view = insights.customer_view(cid)
    if view is None:  # erased meanwhile
        raise ApiError(404, "not_found", "no such customer")
    cases = customer_cases(store, cid)
    ids = sorted({cid, *view.get("identifiers", {}).get("id", [])})
    return {
        "exported_at": datetime.now(UTC).isoformat(),
        "customer": view,
        "identifiers": view.get("identifiers", {}),
        "timeline": full_timeline(store, cid),
        "cases": cases,
        "alerts": customer_alerts(control, store.members(cid),
                                  [c["case_id"] for c in cases]),
        "access_log": list(reversed(audit.query(customer_id=ids, limit=1_000_000))),
    }


class Erased(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    erased: Literal[True]
    keys_destroyed: int
    request: int
    status: Literal["done", "purging"]
    timeline_rows: int | None = None
    timeline_rows_kept_as: list[str] | None = None


class Export(BaseModel):
    model_config = ConfigDict(extra="allow")
    exported_at: str
    customer: dict[str, Any]
    identifiers: dict[str, list[str]]
    timeline: list[dict[str, Any]]
    cases: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    access_log: list[dict[str, Any]]


class Access(BaseModel):
    seq: int
    at: str
    role: str | None
    token_id: str | None
    method: str
    path: str
    action: str
    customer_id: str | None
    case_id: str | None
    status: int
    items: int | None = None  # how many customers an audience export gave out


@router.delete("/v1/customers/{customer_id}", response_model=Erased,
               summary="Erase a customer: destroy their keys, purge the read models",
               responses={202: {"model": Erased, "description": "keys destroyed; the worker"
                                " is still purging"}, **responses(*V1, 404)})
def erase_customer(customer_id: str, request: Request,
                   who: str = Depends(role("admin"))) -> Any:
    api = ctx(request)
    store, control = api.store, api.need_control()
    cid = store.resolve(customer_id)
    if cid is None:
        raise ApiError(404, "not_found", "no such customer")
    if store.privacy is None:
        raise ApiError(503, "unavailable", "no key store configured")
    # the keys go at once; the worker purges the read models between two batches
    bases, key_ids, destroyed = destroy_keys(store.db, store.privacy, cid)
    seq = control.request_erasure(cid, {"bases": bases, "key_ids": key_ids},
                                  f"{who}:{request.state.token_id}",
                                  datetime.now(UTC).isoformat())
    deadline = time.monotonic() + 30
    row = control.erasure_request(seq)
    while row is not None and not row["done_at"] and time.monotonic() < deadline:
        time.sleep(0.05)
        row = control.erasure_request(seq)
    api.insights.forget()
    body = {"id": customer_id, "erased": True, "keys_destroyed": destroyed, "request": seq}
    if row is None or not row["done_at"]:
        return JSONResponse({**body, "status": "purging"}, status_code=202)
    result = row["result"] or {}
    return JSONResponse({**body, "status": "done",
                         "timeline_rows": result.get("timeline_rows"),
                         "timeline_rows_kept_as": result.get("pseudonyms")})


@router.get("/v1/customers/{customer_id}/export", response_model=Export,
            summary="Everything held about the customer, decrypted, as one JSON document",
            responses=responses(*V1, 404))
def export(customer_id: str, request: Request,
           _: str = Depends(role("admin"))) -> dict[str, Any]:
    api = ctx(request)
    cid = api.store.resolve(customer_id)
    if cid is None or api.audit is None:
        raise ApiError(404, "not_found", "no such customer")
    doc = export_customer(cid, api.store, api.insights, api.need_control(), api.audit)
    log.info("customer.exported", timeline=len(doc["timeline"]), cases=len(doc["cases"]))
    return doc


@router.get("/v1/audit", response_model=Page[Access],
            summary="Who read customers' personal data, newest first",
            responses=responses(*V1))
def audit_log(request: Request, customer_id: str | None = None,
              role_: str | None = Query(None, alias="role"),
              since: str | None = Query(None, description="ISO 8601 time with offset",
                                        json_schema_extra={"format": "date-time"}),
              limit: int = Query(100, ge=1, le=1000), cursor: str | None = CURSOR,
              _: str = Depends(role("admin"))) -> dict[str, Any]:
    api = ctx(request)
    if api.audit is None:
        raise ApiError(503, "unavailable", "the access audit is not configured")
    ids: list[str] | None = None
    if customer_id is not None:
        resolved = api.store.resolve(customer_id)
        ids = sorted({customer_id, *([resolved] if resolved else [])})
    rows = api.audit.query(customer_id=ids, role=role_,
                           since=parse_since(since) if since is not None else None, limit=limit + 1,
                           before_seq=decode_offset(cursor) if cursor else None)
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = encode_offset(rows[-1]["seq"])
    return {"items": rows, "next": nxt}
