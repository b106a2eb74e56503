"""HTTP routes for cases, SLA policies, calendars, alerts (and their stream), webhooks, reports."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from eventsourcing.persistence import IntegrityError
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from ..domain.calendars import BusinessCalendar, CalendarError
from ..domain.cases import CaseError, InvalidCommand, InvalidTransition
from ..domain.sla import PolicyError, SlaPolicy
from ..projections.service import CallEnded, CaseRow, service_report
from ..streams.webhooks import alert_json
from .caseservice import CaseNotFound, CaseService, case_json
from .control import ControlStore
from .http import ApiError, decode_cursor, decode_offset, encode_cursor, encode_offset
from .logging import get_logger
from .readstore import ReadStore

log = get_logger(__name__)

ACTIONS = ("assign", "reply", "wait", "resolve", "reopen")
STATUS_PATTERN = "^(open|waiting|resolved)$"
CASE_COLUMNS = ("case_id", "customer_id", "status", "priority", "channel", "queue",
                "agent_id", "policy", "opened_at", "opened_ms")
SSE_POLL_S = 0.1
SSE_KEEPALIVE_S = 15.0
ALERT_SCAN = 500
WEBHOOK_FIELDS = {"url", "secret", "kinds"}

_BODY_DOCS: dict[str, dict[str, Any]] = {
    "assign": {"type": "object", "required": ["agent_id"],
               "properties": {"agent_id": {"type": "string"}}},
    "reply": {"type": "object", "required": ["agent_id"],
              "properties": {"agent_id": {"type": "string"}, "text": {"type": "string"}}},
    "wait": {"type": "object"},
    "resolve": {"type": "object", "properties": {"resolution": {"type": "string"}}},
    "reopen": {"type": "object"},
}


async def _json_body(request: Request, *, empty: Any = None) -> Any:
    raw = await request.body()
    if not raw.strip():
        if empty is None:
            raise ApiError(400, "bad_json", "a JSON body is required")
        return empty
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "bad_json", f"body is not JSON: {exc}") from exc


def _kinds(values: list[str]) -> list[str]:
    return [k.strip() for v in values for k in v.split(",") if k.strip()]


def _parse_since(since: str) -> datetime:
    text = since.strip()
    # an unencoded "+01:00" in a query string arrives as " 01:00"
    if len(text) > 6 and text[-6] == " " and text[-3] == ":":
        text = text[:-6] + "+" + text[-5:]
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ApiError(400, "bad_query", f"since: {since!r} is not an ISO 8601 time") from exc
    if at.tzinfo is None or at.utcoffset() is None:
        raise ApiError(400, "bad_query", "since needs a UTC offset (or Z)")
    return at.astimezone(UTC)


def _alert_at(row: dict[str, Any]) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(row["at"]))
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _case_cursor(cursor: str) -> tuple[int, str]:
    try:
        return decode_cursor(cursor)
    except ApiError as exc:
        raise ApiError(400, "bad_cursor", "cursor: not a cursor this API issued") from exc


def validate_webhook(body: Any) -> dict[str, Any]:
    """The stored form of `PUT /v1/webhooks/{name}`; ApiError 422 says what is wrong."""
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_webhook", "a webhook must be a JSON object")
    unknown = sorted(set(body) - WEBHOOK_FIELDS)
    if unknown:
        raise ApiError(422, "invalid_webhook", f"unknown field {unknown[0]!r}")
    url = body.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(422, "invalid_webhook", "url must be an http:// or https:// URL")
    secret = body.get("secret")
    if not isinstance(secret, str) or not secret:
        raise ApiError(422, "invalid_webhook", "secret must be a non-empty string")
    kinds = body.get("kinds", [])
    if kinds is None:
        kinds = []
    if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds):
        raise ApiError(422, "invalid_webhook",
                       "kinds must be a list of alert kinds (empty for every kind)")
    return {"url": url, "secret": secret, "kinds": list(dict.fromkeys(kinds))}


def _public_webhook(name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "url": body.get("url"), "kinds": body.get("kinds") or []}


def _sse(row: dict[str, Any]) -> str:
    data = json.dumps(alert_json(row), ensure_ascii=False, separators=(",", ":"))
    return f"id: {row['seq']}\nevent: {row['kind']}\ndata: {data}\n\n"


class StreamSlots:
    """How many alert streams each token holds open; a slot is given back once, whichever
    of the stream's end or the response's background task comes first."""

    def __init__(self, per_token: int) -> None:
        self.per_token = per_token
        self.held: Counter[str] = Counter()

    def take(self, token: str) -> Callable[[], None]:
        if self.held[token] >= self.per_token:
            raise ApiError(429, "too_many_streams",
                           f"this token already holds {self.per_token} alert streams open"
                           " (CONTACTSTREAM_MAX_STREAMS_PER_TOKEN); close one first",
                           {"Retry-After": "5"})
        self.held[token] += 1
        given_back = False

        def release() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self.held[token] -= 1
        return release


def add_case_routes(app: FastAPI, role: Callable[[str], Callable[..., Awaitable[str]]],
                    cases: CaseService, control: ControlStore, store: ReadStore,
                    now: Callable[[], datetime], max_streams_per_token: int = 10) -> None:
    """Register the case, SLA, alert, webhook and service-report routes on `app`."""
    slots = StreamSlots(max_streams_per_token)

    # -- cases -----------------------------------------------------------------------------
    @app.get("/v1/cases", tags=["cases"], summary="Cases, newest first")
    def list_cases(status: str | None = Query(None, pattern=STATUS_PATTERN),
                   breached: bool | None = None, queue: str | None = None,
                   customer_id: str | None = None, segment: str | None = None,
                   limit: int = Query(50, ge=1, le=500),
                   cursor: str | None = None, _: str = Depends(role("read")),
                   ) -> dict[str, Any]:
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
            args += list(_case_cursor(cursor))
        sql.append("ORDER BY opened_ms DESC, case_id DESC LIMIT %s")
        args.append(limit + 1)
        rows = [dict(zip(CASE_COLUMNS, r, strict=True))
                for r in store.db.all(" ".join(sql), args)]
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1]["opened_ms"], rows[-1]["case_id"])
        items = []
        for r in rows:
            r.pop("opened_ms")
            r["id"] = r.pop("case_id")
            r["breached"] = r["id"] in breached_ids
            items.append({k: r[k] for k in ("id", "customer_id", "status", "priority",
                                             "channel", "queue", "agent_id", "policy",
                                             "opened_at", "breached")})
        return {"items": items, "next": nxt}

    def _view(case: Any) -> dict[str, Any]:
        view = case_json(case, now(), control.calendars(),
                         store.privacy.open if store.privacy is not None else (lambda v: v))
        view["breached"] = {m: c["breached"] for m, c in view["sla"].items()}
        return view

    @app.get("/v1/cases/{case_id}", tags=["cases"], summary="A case with its SLA clocks")
    def get_case(case_id: str, _: str = Depends(role("read"))) -> dict[str, Any]:
        try:
            case = cases.get(case_id)
        except CaseNotFound as exc:
            raise ApiError(404, "not_found", "no such case") from exc
        return _view(case)

    def _command(case_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            case = cases.command(case_id, action, body)
        except CaseNotFound as exc:
            raise ApiError(404, "not_found", "no such case") from exc
        except InvalidTransition as exc:
            raise ApiError(409, "invalid_transition", str(exc)) from exc
        except (InvalidCommand, CaseError) as exc:
            raise ApiError(422, "invalid_command", str(exc)) from exc
        except IntegrityError as exc:
            raise ApiError(409, "conflict", "the case was changed concurrently; "
                           "fetch it and try again") from exc
        log.info("case.command", case_id=str(case.id), action=action, version=case.version)
        return _view(case)

    def _add_action(action: str) -> None:
        async def act(case_id: str, request: Request, _: str = Depends(role("act")),
                      ) -> dict[str, Any]:
            body = await _json_body(request, empty={})
            if not isinstance(body, dict):
                raise ApiError(422, "invalid_command", "the body must be a JSON object")
            return await run_in_threadpool(_command, case_id, action, body)

        app.add_api_route(
            f"/v1/cases/{{case_id}}/{action}", act, methods=["POST"], tags=["cases"],
            name=f"case_{action}", summary=f"{action.capitalize()} a case",
            responses={404: {"description": "no such case"},
                       409: {"description": "invalid_transition, or conflict (changed"
                                            " concurrently)"},
                       422: {"description": "invalid_command"}},
            openapi_extra={"requestBody": {"required": False, "content": {
                "application/json": {"schema": _BODY_DOCS[action]}}}})

    for action in ACTIONS:
        _add_action(action)

    # -- SLA policies and calendars -----------------------------------------------------------
    @app.put("/v1/sla-policies/{name}", tags=["sla"], summary="Create or replace an SLA policy",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}}}}})
    async def put_policy(name: str, request: Request, _: str = Depends(role("supervise")),
                         ) -> dict[str, Any]:
        body = await _json_body(request)
        try:
            policy = SlaPolicy.from_json(name, body)
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

    @app.get("/v1/sla-policies", tags=["sla"], summary="SLA policies in matching order")
    def list_policies(_: str = Depends(role("supervise"))) -> dict[str, Any]:
        return {"items": [p.to_dict() for p in control.policies()], "next": None}

    @app.put("/v1/calendars/{name}", tags=["sla"], summary="Create or replace a calendar",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}}}}})
    async def put_calendar(name: str, request: Request, _: str = Depends(role("supervise")),
                           ) -> dict[str, Any]:
        body = await _json_body(request)
        if not name.strip():
            raise ApiError(422, "invalid_calendar", "a calendar needs a non-empty name")
        try:
            cal = BusinessCalendar.from_json(name, body)
        except CalendarError as exc:
            raise ApiError(422, "invalid_calendar", str(exc)) from exc
        await run_in_threadpool(control.put_calendar, cal, name)
        log.info("sla.calendar_put", calendar=name)
        return {"name": name, **cal.to_dict()}

    @app.get("/v1/calendars", tags=["sla"], summary="Business calendars")
    def list_calendars(_: str = Depends(role("supervise"))) -> dict[str, Any]:
        return {"items": [{"name": n, **c.to_dict()}
                          for n, c in sorted(control.calendars().items())], "next": None}

    # -- alerts ------------------------------------------------------------------------------
    @app.get("/v1/alerts", tags=["alerts"], summary="Alerts, newest first")
    def list_alerts(since: str | None = Query(None, description="ISO 8601 time with offset"),
                    kind: list[str] = Query(default=[]), limit: int = Query(50, ge=1, le=500),
                    cursor: str | None = None, _: str = Depends(role("supervise")),
                    ) -> dict[str, Any]:
        kinds = _kinds(kind)
        after = _parse_since(since) if since else None
        before = decode_offset(cursor) if cursor else None
        items: list[dict[str, Any]] = []
        # newest first by seq; `since` is checked on the parsed times, whatever their offset
        while len(items) <= limit:
            rows = control.alerts(before=before, kinds=kinds, limit=ALERT_SCAN,
                                  newest_first=True)
            for row in rows:
                before = row["seq"]
                if after is not None:
                    at = _alert_at(row)
                    if at is None or at < after:
                        continue
                items.append(row)
                if len(items) > limit:
                    break
            if len(rows) < ALERT_SCAN:
                break
        nxt = None
        if len(items) > limit:
            items = items[:limit]
            nxt = encode_offset(items[-1]["seq"])
        return {"items": [alert_json(r) for r in items], "next": nxt}

    @app.get("/v1/alerts/stream", tags=["alerts"], response_class=StreamingResponse,
             summary="Alerts live, as server-sent events",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "`id: <seq>`, `event: <kind>`, `data: <alert>`;"
                                             " resumes after `Last-Event-ID`"}})
    async def alert_stream(request: Request, kind: list[str] = Query(default=[]),
                           _: str = Depends(role("supervise"))) -> StreamingResponse:
        kinds = _kinds(kind)
        last_id = request.headers.get("last-event-id", "").strip()
        release = slots.take(request.state.token_id)
        try:
            start = (int(last_id) if last_id.isdigit()
                     else await asyncio.to_thread(control.last_alert_seq))
        except BaseException:
            release()
            raise

        async def events() -> AsyncIterator[str]:
            try:
                async for chunk in _alert_events(request, start, kinds):
                    yield chunk
            finally:
                release()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 background=BackgroundTask(release),
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def _alert_events(request: Request, start: int, kinds: list[str],
                            ) -> AsyncIterator[str]:
        """The stream's body: alerts after ``start`` as they are added, keep-alives."""
        position = start
        yield "retry: 1000\n: connected\n\n"
        quiet_since = time.monotonic()
        while not await request.is_disconnected():
            rows = await asyncio.to_thread(control.alerts, after=position, limit=100)
            for row in rows:
                position = row["seq"]
                if not kinds or row["kind"] in kinds:
                    yield _sse(row)
                    quiet_since = time.monotonic()
            if len(rows) == 100:
                continue
            if time.monotonic() - quiet_since >= SSE_KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(SSE_POLL_S)

    # -- webhooks ---------------------------------------------------------------------------
    @app.put("/v1/webhooks/{name}", tags=["alerts"], summary="Register or replace a webhook",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {
                     "type": "object", "required": ["url", "secret"],
                     "properties": {"url": {"type": "string"}, "secret": {"type": "string"},
                                    "kinds": {"type": "array",
                                              "items": {"type": "string"}}}}}}}})
    async def put_webhook(name: str, request: Request, _: str = Depends(role("supervise")),
                          ) -> dict[str, Any]:
        if not name.strip():
            raise ApiError(422, "invalid_webhook", "a webhook needs a non-empty name")
        hook = validate_webhook(await _json_body(request))
        await run_in_threadpool(control.put_webhook, name, hook)
        log.info("webhook.put", webhook=name, kinds=len(hook["kinds"]))
        return _public_webhook(name, hook)

    @app.get("/v1/webhooks", tags=["alerts"], summary="Webhooks (without their secrets)")
    def list_webhooks(_: str = Depends(role("supervise"))) -> dict[str, Any]:
        failures = control.webhook_failures()
        return {"items": [{**_public_webhook(n, b), "failures": failures.get(n, 0)}
                          for n, b in sorted(control.webhooks().items())], "next": None}

    # -- the service report --------------------------------------------------------------------
    @app.get("/v1/reports/service", tags=["reports"],
             summary="SLA attainment, backlog, response and resolution times, abandonment")
    def service(window_days: int = Query(1, ge=0, le=3650, description="0 means all time"),
                _: str = Depends(role("supervise"))) -> dict[str, Any]:
        now_ms = int(now().timestamp() * 1000)
        start_ms = now_ms - window_days * 86_400_000 if window_days else None
        rows = store.db.all(
            "SELECT case_id, status, priority, opened_ms, policy, first_response_ms,"
            " resolved_ms FROM cases WHERE status <> 'resolved' OR %s::bigint IS NULL"
            " OR opened_ms > %s ORDER BY case_id",
            (start_ms, start_ms if start_ms is not None else 0))
        case_rows = [CaseRow(*r) for r in rows]
        # counted by outcome in the database: a window holds tens of thousands of calls
        calls = [CallEnded(ms, outcome, n) for ms, outcome, n in store.db.all(
            "SELECT MAX(occurred_ms), payload->>'outcome', COUNT(*) FROM timeline"
            " WHERE type='call.ended' AND occurred_ms > %s AND occurred_ms <= %s GROUP BY 2",
            (start_ms if start_ms is not None else -(2 ** 62), now_ms))]
        report = service_report(case_rows, control.breached_case_ids(), calls, now_ms=now_ms,
                                window_days=window_days or None)
        report["window_days"] = window_days
        report["from"] = (datetime.fromtimestamp(start_ms / 1000, UTC).isoformat()
                          if start_ms is not None else None)
        report["to"] = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat()
        return report
