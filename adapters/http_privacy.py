"""HTTP routes for privacy: the customer export, the access audit and its middleware."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Query
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..projections.identifiers import normalize
from .audit import AuditLog
from .control import ALERT_COLUMNS, ControlStore
from .http import ApiError, decode_offset, encode_offset
from .http_cases import _parse_since
from .insights import Insights
from .logging import get_logger
from .readstore import ReadStore

log = get_logger(__name__)

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


def token_fingerprint(token: str) -> str:
    """The same fingerprint the auth dependency puts in ``request.state.token_id``."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


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


def add_privacy_routes(app: FastAPI, role: Callable[[str], Callable[..., Awaitable[str]]],
                       store: ReadStore, insights: Insights, control: ControlStore,
                       audit: AuditLog) -> None:
    app.add_middleware(AuditMiddleware, audit=audit, store=store)

    @app.get("/v1/customers/{customer_id}/export", tags=["privacy"],
             summary="Everything held about the customer, decrypted, as one JSON document",
             responses={404: {"description": "no such customer"}})
    def export(customer_id: str, _: str = Depends(role("admin"))) -> dict[str, Any]:
        cid = store.resolve(customer_id)
        if cid is None:
            raise ApiError(404, "not_found", "no such customer")
        doc = export_customer(cid, store, insights, control, audit)
        log.info("customer.exported", timeline=len(doc["timeline"]), cases=len(doc["cases"]))
        return doc

    @app.get("/v1/audit", tags=["privacy"],
             summary="Who read customers' personal data, newest first")
    def audit_log(customer_id: str | None = None, role_: str | None = Query(None, alias="role"),
                  since: str | None = Query(None, description="ISO 8601 time with offset"),
                  limit: int = Query(100, ge=1, le=1000), cursor: str | None = None,
                  _: str = Depends(role("admin"))) -> dict[str, Any]:
        ids: list[str] | None = None
        if customer_id is not None:
            resolved = store.resolve(customer_id)
            ids = sorted({customer_id, *([resolved] if resolved else [])})
        rows = audit.query(customer_id=ids, role=role_,
                           since=_parse_since(since) if since else None, limit=limit + 1,
                           before_seq=decode_offset(cursor) if cursor else None)
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_offset(rows[-1]["seq"])
        return {"items": rows, "next": nxt}
