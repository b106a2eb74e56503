"""`POST /v1/events`: ingest. The contract is per item, so the body is not one model: each
envelope is checked on its own by the ingestor's validators, and a bad one is a
`rejected` entry of a 202, never a 422 for the whole batch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel

from ...domain.interactions import CHANNELS, EVENT_TYPES
from ..ingest import BrokerUnavailable
from .auth import role
from .bodies import check_json_type, parse_json
from .context import ctx
from .errors import ApiError, responses
from .paging import only_known_params

EVENTS = Counter("contactstream_ingest_events_total", "Envelopes posted", ["outcome"])
MAX_BATCH = 1000

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One envelope (docs/CONTRACT.md). Checked per item: one that breaks"
                   " this schema or a rule of the contract is a `rejected` entry of the 202",
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


class Rejection(BaseModel):
    index: int
    error: str


class Warning(BaseModel):  # noqa: A001 - the contract's name
    index: int
    warning: str


class IngestResult(BaseModel):
    """`warnings` is there only when an item was accepted without a bad identifier."""
    accepted: int
    duplicates: int
    rejected: list[Rejection]
    warnings: list[Warning] | None = None


router = APIRouter(tags=["ingest"], dependencies=[Depends(only_known_params)])


@router.post(
    "/v1/events", status_code=202, response_model=None,
    summary="Publish one envelope or an array of up to 1000",
    description="Each envelope is checked on its own: one that breaks a rule is listed in"
                " `rejected` with its index and the reason, the others are accepted. The"
                " whole request is refused only for what concerns it all (auth, JSON, size).",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"oneOf": [ENVELOPE_SCHEMA,
                             {"type": "array", "items": ENVELOPE_SCHEMA,
                              "maxItems": MAX_BATCH}]}}}}},
    responses={202: {"model": IngestResult, "description": "accepted, duplicates, rejected"},
               **responses(400, 401, 403, 413, 415, 503,
                           e400="bad_json: the body is not JSON",
                           e413="more than 1000 envelopes, or too large a body")},
)
async def post_events(request: Request, _: str = Depends(role("publish"))) -> JSONResponse:
    api = ctx(request)
    if api.ingestor is None:
        raise ApiError(503, "unavailable", "ingest is not running")
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > api.max_body_bytes:
        raise ApiError(413, "too_large", f"body over {api.max_body_bytes} bytes")
    check_json_type(request.headers.get("content-type"))
    body = await request.body()
    if len(body) > api.max_body_bytes:
        raise ApiError(413, "too_large", f"body over {api.max_body_bytes} bytes")
    data = parse_json(body)
    items = data if isinstance(data, list) else [data]
    if len(items) > api.max_batch:
        raise ApiError(413, "too_many", f"{len(items)} envelopes; at most {api.max_batch}")
    try:
        result = await api.ingestor.publish(items)
    except BrokerUnavailable as exc:
        raise ApiError(503, "broker_unavailable", str(exc), {"Retry-After": "1"}) from exc
    EVENTS.labels("accepted").inc(result.accepted)
    EVENTS.labels("duplicate").inc(result.duplicates)
    EVENTS.labels("rejected").inc(len(result.rejected))
    return JSONResponse(result.as_dict(), status_code=202)
