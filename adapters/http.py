"""The HTTP API (FastAPI): ingest for publishing systems, the customer view for agents."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..domain.interactions import CHANNELS, EVENT_TYPES
from ..projections.identifiers import derived_customer_id, normalize
from .auth import GRANTS, TokenTable
from .control import ControlStore
from .erasure import destroy_keys
from .ingest import BrokerUnavailable, Ingestor
from .insights import Insights
from .logging import get_logger
from .readstore import ReadStore

log = get_logger(__name__)

EVENTS = Counter("contactstream_ingest_events_total", "Envelopes posted", ["outcome"])
MAX_BIGINT = 2**63 - 1  # what a number in a path or cursor may be: PostgreSQL's bigint
JSON_TYPES = ("application/json",)  # and application/*+json


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None,
           ) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


class UnexpectedErrors:
    """An exception no handler took becomes the contract's JSON 500, logged with its
    traceback, instead of the server's plain-text 500 and a dropped connection. Pure ASGI:
    streamed responses pass untouched (one that fails after it started can only end)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            route = scope.get("route")
            log.error("http.unexpected_error", method=scope.get("method"),
                      route=getattr(route, "path", None), error=type(exc).__name__,
                      exc_info=exc)
            if started:
                raise
            response = _error(500, "internal", "an unexpected error; it was logged")
            await response(scope, receive, send)


def check_json_type(content_type: str | None) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``application/*+json``)
    and, when a charset is named, UTF-8 (RFC 8259)."""
    mime, _, params = (content_type or "").partition(";")
    mime = mime.strip().lower()
    if not (mime in JSON_TYPES or (mime.startswith("application/") and mime.endswith("+json"))):
        raise ApiError(415, "unsupported_media_type",
                       "send JSON with Content-Type: application/json")
    for param in params.split(";"):
        name, _, charset = param.partition("=")
        if name.strip().lower() == "charset" and \
                charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(415, "unsupported_media_type", "JSON must be UTF-8 (RFC 8259)")


def parse_json(body: bytes) -> Any:
    """A body's JSON: 415 when it is not UTF-8 (json.loads would guess UTF-16 or 32), 400
    when it does not parse, nesting the parser cannot follow included."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(415, "unsupported_media_type",
                       f"body is not UTF-8 (RFC 8259): invalid byte at {exc.start}") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ApiError(400, "bad_json", "body is nested too deeply to read") from exc
    except ValueError as exc:
        raise ApiError(400, "bad_json", f"body is not JSON: {exc}") from exc


ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "type", "occurred_at", "source", "customer", "channel", "payload"],
    "properties": {
        "event_id": {"type": "string"}, "type": {"type": "string", "enum": sorted(EVENT_TYPES)},
        "occurred_at": {"type": "string", "format": "date-time"}, "source": {"type": "string"},
        "customer": {"type": "object", "properties": {
            k: {"type": "string"} for k in ("id", "email", "phone", "visitor_id", "name")}},
        "channel": {"type": "string", "enum": sorted(CHANNELS)},
        "agent_id": {"type": ["string", "null"]}, "queue": {"type": ["string", "null"]},
        "case_id": {"type": ["string", "null"]}, "payload": {"type": "object"},
    },
}


def encode_cursor(ms: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ms, event_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        ms, eid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not -MAX_BIGINT <= int(ms) <= MAX_BIGINT:
            raise ValueError("out of range")
        return int(ms), str(eid)
    except Exception as exc:
        raise ApiError(400, "bad_cursor", "before: not a cursor this API issued") from exc


def encode_offset(n: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": n}).encode()).decode()


def decode_offset(cursor: str) -> int:
    try:
        n = int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["o"])
        if not 0 <= n <= MAX_BIGINT:
            raise ValueError("out of range")
        return n
    except Exception as exc:
        raise ApiError(400, "bad_cursor", "cursor: not a cursor this API issued") from exc


def find_customer(store: ReadStore, request: Request, kind: str, value: str) -> str:
    """The id of the customer with this identifier (matched after normalisation), for the
    lookups (GET here, POST in http_console.py); 404 when none."""
    stored = (store.privacy.lookup_value(kind, value) if store.privacy is not None
              else normalize(kind, value))
    cid = store.lookup(kind, stored)
    request.state.audit_customer_id = cid
    if cid is None:
        raise ApiError(404, "not_found", "no customer with that identifier")
    return cid


def create_app(ingestor: Ingestor | None, store: ReadStore, tokens: TokenTable,
               ready: Callable[[], Awaitable[bool]] | None = None,
               max_batch: int = 1000, max_body_bytes: int = 16 * 1024 * 1024,
               insights: Insights | None = None,
               database_up: Callable[[], bool] | None = None,
               kafka_up: Callable[[], bool] | None = None) -> FastAPI:
    app = FastAPI(title="contactstream", version="1.0",
                  description="Omnichannel contact-centre backend: ingest, customer view.")
    insights = insights or Insights(store)
    bearer = HTTPBearer(auto_error=False)

    def role(right: str) -> Callable[..., Awaitable[str]]:
        # async: it does no I/O, and a sync dependency would cost each request a thread hop
        async def check(request: Request,
                        creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
            if creds is None:
                raise ApiError(401, "unauthenticated", "missing bearer token",
                               {"WWW-Authenticate": "Bearer"})
            who = tokens.role_of(creds.credentials)
            if who is None:
                raise ApiError(401, "unauthenticated", "unknown token",
                               {"WWW-Authenticate": "Bearer"})
            # who asked, for the access audit (adapters/audit.py); never the token itself
            request.state.role = who
            request.state.token_id = hashlib.sha256(creds.credentials.encode()).hexdigest()[:12]
            if right not in GRANTS[who]:
                raise ApiError(403, "forbidden", f"role {who} may not do this")
            return who
        return check

    app.state.role = role

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("http.database_unavailable", error=type(exc).__name__)
        return _error(503, "database_unavailable", "the database is not answering; retry",
                      {"Retry-After": "1"})

    if database_up is not None:
        @app.middleware("http")
        async def _while_database_down(request: Request, call_next: Any) -> Any:
            # the embedded server is being restarted (adapters/runner.py): answer at once
            if request.url.path.startswith("/v1/") and not database_up():
                return _error(503, "database_unavailable", "the database is restarting;"
                              " retry", {"Retry-After": "1"})
            return await call_next(request)

    if kafka_up is not None:
        @app.middleware("http")
        async def _while_kafka_down(request: Request, call_next: Any) -> Any:
            # the embedded broker is being restarted, or no bootstrap server answers
            # (adapters/runner.py): ingest is refused at once, reads go on
            if request.url.path == "/v1/events" and request.method == "POST" \
                    and not kafka_up():
                return _error(503, "broker_unavailable", "Kafka is not reachable; nothing"
                              " was accepted, retry", {"Retry-After": "1"})
            return await call_next(request)

    # inside every middleware added later (the access audit sees the 500 it answers)
    app.add_middleware(UnexpectedErrors)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        msg = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                        for e in exc.errors())
        return _error(422, "invalid_request", msg)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        ok = ready is None or await ready()
        return JSONResponse({"status": "ready" if ok else "starting"},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/events", status_code=202, tags=["ingest"],
        summary="Publish one envelope or an array of up to 1000",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"oneOf": [ENVELOPE_SCHEMA,
                                 {"type": "array", "items": ENVELOPE_SCHEMA,
                                  "maxItems": max_batch}]}}}}},
        responses={202: {"description": "`{accepted, duplicates, rejected: [{index, error}]}`,"
                              " and `warnings: [{index, warning}]` when an identifier was"
                              " dropped"},
                   400: {"description": "the body is not JSON"},
                   413: {"description": "more than 1000 envelopes or too large a body"},
                   415: {"description": "the body is not declared JSON, or is not UTF-8"}},
    )
    async def post_events(request: Request, _: str = Depends(role("publish"))) -> JSONResponse:
        if ingestor is None:
            raise ApiError(503, "unavailable", "ingest is not running")
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body_bytes:
            raise ApiError(413, "too_large", f"body over {max_body_bytes} bytes")
        check_json_type(request.headers.get("content-type"))
        body = await request.body()
        if len(body) > max_body_bytes:
            raise ApiError(413, "too_large", f"body over {max_body_bytes} bytes")
        data = parse_json(body)
        items = data if isinstance(data, list) else [data]
        if len(items) > max_batch:
            raise ApiError(413, "too_many", f"{len(items)} envelopes; at most {max_batch}")
        try:
            result = await ingestor.publish(items)
        except BrokerUnavailable as exc:
            raise ApiError(503, "broker_unavailable", str(exc), {"Retry-After": "1"}) from exc
        EVENTS.labels("accepted").inc(result.accepted)
        EVENTS.labels("duplicate").inc(result.duplicates)
        EVENTS.labels("rejected").inc(len(result.rejected))
        return JSONResponse(result.as_dict(), status_code=202)

    @app.get("/v1/customers/lookup", tags=["customers"])
    def lookup(request: Request, id: str | None = None, email: str | None = None,
               phone: str | None = None, visitor_id: str | None = None,
               _: str = Depends(role("read"))) -> dict[str, str]:
        given = [(k, v) for k, v in (("id", id), ("email", email), ("phone", phone),
                                     ("visitor_id", visitor_id)) if v]
        if len(given) != 1:
            raise ApiError(400, "bad_query", "give exactly one of id, email, phone, visitor_id")
        kind, value = given[0]
        return {"id": find_customer(store, request, kind, value)}

    @app.get("/v1/customers", tags=["customers"],
             summary="Customers by segment and churn risk, riskiest first")
    def customers(segment: str | None = None,
                  min_churn_risk: float | None = Query(None, ge=0, le=1),
                  limit: int = Query(100, ge=1, le=1000), cursor: str | None = None,
                  _: str = Depends(role("read"))) -> dict[str, Any]:
        rows = insights.customers(segment, min_churn_risk)
        start = decode_offset(cursor) if cursor else 0
        page = rows[start:start + limit]
        nxt = encode_offset(start + limit) if start + limit < len(rows) else None
        return {"items": page, "next": nxt, "total": len(rows)}

    @app.get("/v1/customers/{customer_id}", tags=["customers"],
             summary="The customer 360 view")
    async def customer(customer_id: str, request: Request,
                       _: str = Depends(role("read"))) -> dict[str, Any]:
        # async with the reads in one thread hop: a sync endpoint's response is validated
        # in a second one
        view = await run_in_threadpool(insights.customer_view, customer_id)
        if view is None:
            raise ApiError(404, "not_found", "no such customer")
        request.state.audit_customer_id = view["id"]  # the audit need not resolve it again
        return view

    @app.get("/v1/reports/satisfaction", tags=["reports"])
    def satisfaction_report(group_by: str = Query("channel", pattern="^(agent|channel|queue)$"),
                            window_days: int = Query(30, ge=0, le=3650,
                                                     description="0 means all time"),
                            _: str = Depends(role("supervise"))) -> dict[str, Any]:
        return insights.satisfaction_report(group_by, window_days or None)

    @app.get("/v1/reports/segments", tags=["reports"],
             summary="Customers and revenue per RFM segment")
    def segments_report(_: str = Depends(role("supervise"))) -> dict[str, Any]:
        return insights.segments_report()

    @app.get("/v1/reports/pareto", tags=["reports"],
             summary="Share of revenue from the top customers (80/20)")
    def pareto_report(share: float = Query(0.2, gt=0, le=1),
                      _: str = Depends(role("supervise"))) -> dict[str, Any]:
        return insights.pareto_report(share)

    @app.get("/v1/customers/{customer_id}/timeline", tags=["customers"])
    async def timeline(customer_id: str, request: Request,
                       limit: int = Query(50, ge=1, le=500), before: str | None = None,
                       channel: list[str] = Query(default=[]),
                       type: list[str] = Query(default=[]), as_of: datetime | None = None,
                       _: str = Depends(role("read"))) -> dict[str, Any]:
        def page() -> list[dict[str, Any]]:
            with store.reading() as conn:  # two round trips on one connection
                who = store.subject(customer_id, conn)
                if who is None:
                    raise ApiError(404, "not_found", "no such customer")
                request.state.audit_customer_id = who.id  # the audit need not resolve it
                channels = [c for v in channel for c in v.split(",") if c]
                types = [t for v in type for t in v.split(",") if t]
                if as_of is not None and as_of.tzinfo is None:
                    raise ApiError(400, "bad_query", "as_of needs a UTC offset")
                return store.timeline(
                    who, limit=limit + 1, before=decode_cursor(before) if before else None,
                    channels=channels, types=types,
                    as_of_ms=int(as_of.timestamp() * 1000) if as_of else None, conn=conn)
        rows = await run_in_threadpool(page)  # as the view: one thread hop
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1]["occurred_ms"], rows[-1]["event_id"])
        for r in rows:
            r.pop("occurred_ms")
        return {"items": rows, "next": nxt}

    return app


def add_erasure_route(app: FastAPI, store: ReadStore, control: ControlStore,
                      insights: Insights) -> None:
    """``DELETE /v1/customers/{id}`` (admin): see adapters/erasure.py."""
    role = app.state.role

    @app.delete("/v1/customers/{customer_id}", tags=["privacy"],
                summary="Erase a customer: destroy their keys, purge the read models")
    def erase_customer(customer_id: str, request: Request,
                       who: str = Depends(role("admin"))) -> JSONResponse:
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
        insights.forget()
        body = {"id": customer_id, "erased": True, "keys_destroyed": destroyed,
                "request": seq}
        if row is None or not row["done_at"]:
            return JSONResponse({**body, "status": "purging"}, status_code=202)
        result = row["result"] or {}
        return JSONResponse({**body, "status": "done",
                             "timeline_rows": result.get("timeline_rows"),
                             "timeline_rows_kept_as": result.get("pseudonyms")})


def add_identity_routes(app: FastAPI, store: ReadStore, control: ControlStore,
                        links: Any) -> None:
    """Merged customers: who is merged into whom, since when and why, and the unmerge."""
    from eventsourcing.application import AggregateNotFoundError

    from ..domain.identity import CustomerLink

    role = app.state.role

    @app.get("/v1/customers/{customer_id}/identity", tags=["customers"],
             summary="The base customers merged into this one, with the merge history")
    def identity(customer_id: str, _: str = Depends(role("supervise"))) -> dict[str, Any]:
        cid = store.resolve(customer_id)
        if cid is None:
            raise ApiError(404, "not_found", "no such customer")
        history = []
        for member in store.members(cid):
            try:
                link = links.repository.get(CustomerLink.id_for(member))
            except AggregateNotFoundError:
                continue
            for kind, survivor, by, reason, at in link.history:
                history.append({"member": member, "action": kind, "survivor": survivor,
                                "by": by, "reason": reason, "at": at.isoformat()})
        history.sort(key=lambda h: h["at"])
        return {"id": cid, "members": store.members(cid), "history": history}

    @app.post("/v1/customers/{customer_id}/unmerge", status_code=202, tags=["customers"],
              summary="Undo a wrong merge: the member becomes a customer of its own again")
    async def unmerge(customer_id: str, request: Request,
                      who: str = Depends(role("admin"))) -> dict[str, Any]:
        body = parse_json(await request.body())
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_request", "body: a JSON object")
        member = body.get("member")
        ident = body.get("identifier")
        if isinstance(ident, dict) and len(ident) == 1 and store.privacy is not None:
            # the customer first known by this identifier alone (its base id)
            (kind, value), = ident.items()
            if kind not in ("email", "phone", "visitor_id") or not isinstance(value, str):
                raise ApiError(422, "invalid_request", "identifier: one of email, phone,"
                               " visitor_id")
            member = derived_customer_id(kind, store.privacy.lookup_value(kind, value))
        if not isinstance(member, str) or not member:
            raise ApiError(422, "invalid_request",
                           "member (an id) or identifier ({kind: value}) is required")
        cid = store.resolve(customer_id)
        if cid is None:
            raise ApiError(404, "not_found", "no such customer")
        if store.resolve(member) != cid or member == cid:
            raise ApiError(409, "not_merged", f"{member} is not merged into {cid}")
        reason = str(body.get("reason") or "unmerged by an admin")[:500]
        seq = control.request_unmerge(cid, member, f"{who}:{request.state.token_id}", reason,
                                      datetime.now(UTC).isoformat())
        return {"request": seq, "status": "pending", "survivor": cid, "member": member}

    @app.get("/v1/identity/requests/{seq}", tags=["customers"])
    def unmerge_status(seq: int = Path(ge=1, le=MAX_BIGINT),
                       _: str = Depends(role("admin"))) -> dict[str, Any]:
        row = control.unmerge_request(seq)
        if row is None:
            raise ApiError(404, "not_found", "no such request")
        return {**row, "status": "done" if row["done_at"] else "pending"}
