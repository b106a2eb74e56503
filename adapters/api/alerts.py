"""Alerts: the list (newest first) and the live stream of server-sent events."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from ...streams.webhooks import alert_json
from ..control import ControlStore
from ..notify import Listener
from .auth import role
from .context import ctx
from .errors import V1, ApiError, responses
from .paging import CURSOR, Page, decode_offset, encode_offset, only_known_params

router = APIRouter(tags=["alerts"], dependencies=[Depends(only_known_params)])

SSE_POLL_S = 0.1
# with LISTEN/NOTIFY: how often a stream looks anyway (and sees its client gone)
SSE_FALLBACK_S = 1.0
SSE_KEEPALIVE_S = 15.0
ALERT_SCAN = 500
KIND = Query(default=[], description="alert kinds, repeated or comma-separated")


class Alert(BaseModel):
    id: str
    kind: str
    case_id: str | None
    customer_id: str | None
    metric: str | None
    due_at: str | None
    at: str
    level: str | None
    seq: int
    detail: dict[str, Any]


def kinds_of(values: list[str]) -> list[str]:
    return [k.strip() for v in values for k in v.split(",") if k.strip()]


def parse_time(name: str, given: str) -> datetime:
    """A query parameter's ISO 8601 time with its offset, in UTC; 400 bad_query else."""
    text = given.strip()
    # an unencoded "+01:00" in a query string arrives as " 01:00"
    if len(text) > 6 and text[-6] == " " and text[-3] == ":":
        text = text[:-6] + "+" + text[-5:]
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ApiError(400, "bad_query",
                       f"{name}: {given[:40]!r} is not an ISO 8601 time") from exc
    if at.tzinfo is None or at.utcoffset() is None:
        raise ApiError(400, "bad_query", f"{name} needs a UTC offset (or Z)")
    return at.astimezone(UTC)


def parse_since(since: str) -> datetime:
    return parse_time("since", since)


def _alert_at(row: dict[str, Any]) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(row["at"]))
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


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


@router.get("/v1/alerts", response_model=Page[Alert], summary="Alerts, newest first",
            responses=responses(*V1))
def list_alerts(request: Request,
                since: str | None = Query(None, description="ISO 8601 time with offset",
                                          json_schema_extra={"format": "date-time"}),
                kind: list[str] = KIND, limit: int = Query(50, ge=1, le=500),
                cursor: str | None = CURSOR, _: str = Depends(role("supervise")),
                ) -> dict[str, Any]:
    control = ctx(request).need_control()
    kinds = kinds_of(kind)
    after = parse_since(since) if since is not None else None
    before = decode_offset(cursor) if cursor else None
    items: list[dict[str, Any]] = []
    # newest first by seq; `since` is checked on the parsed times, whatever their offset
    while len(items) <= limit:
        rows = control.alerts(before=before, kinds=kinds, limit=ALERT_SCAN, newest_first=True)
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


def _sse(row: dict[str, Any]) -> str:
    data = json.dumps(alert_json(row), ensure_ascii=False, separators=(",", ":"))
    return f"id: {row['seq']}\nevent: {row['kind']}\ndata: {data}\n\n"


@router.get("/v1/alerts/stream", response_class=StreamingResponse,
            summary="Alerts live, as server-sent events",
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "`id: <seq>`, `event: <kind>`, `data: <alert>`;"
                                            " resumes after `Last-Event-ID`"},
                       **responses(*V1, 429)})
async def alert_stream(request: Request, kind: list[str] = KIND,
                       _: str = Depends(role("supervise"))) -> StreamingResponse:
    api = ctx(request)
    control = api.need_control()
    kinds = kinds_of(kind)
    last_id = request.headers.get("last-event-id", "").strip()
    release = api.streams.take(request.state.token_id)
    try:
        start = (int(last_id) if last_id.isdigit()
                 else await asyncio.to_thread(control.last_alert_seq))
    except BaseException:
        release()
        raise

    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in _alert_events(request, control, start, kinds, api.listener):
                yield chunk
        finally:
            release()

    return StreamingResponse(events(), media_type="text/event-stream",
                             background=BackgroundTask(release),
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _alert_events(request: Request, control: ControlStore, start: int,
                        kinds: list[str], listener: Listener | None = None,
                        ) -> AsyncIterator[str]:
    """The stream's body: alerts after ``start`` as they are added, keep-alives. With a
    listener it wakes on the alert log's NOTIFY (from whichever worker added the alert)
    and looks on its own only every SSE_FALLBACK_S; without one it looks every
    SSE_POLL_S."""
    position = start
    yield "retry: 1000\n: connected\n\n"
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        wakeup = listener.wakeup() if listener is not None else None  # before the read
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
        if listener is not None and wakeup is not None:
            await listener.wait(wakeup, SSE_FALLBACK_S)
        else:
            await asyncio.sleep(SSE_POLL_S)
