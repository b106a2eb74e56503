"""What the routers work with: the services `create_app` and the add_* functions put on
``app.state.api``, read by each request through ``ctx(request)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from fastapi import Request

from ..audit import AuditLog
from ..auth import TokenTable
from ..caseservice import CaseService
from ..control import ControlStore
from ..ingest import Ingestor
from ..insights import Insights
from ..readstore import ReadStore
from .errors import ApiError


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ApiContext:
    store: ReadStore
    tokens: TokenTable
    insights: Insights
    ingestor: Ingestor | None = None
    ready: Callable[[], Awaitable[bool]] | None = None
    max_batch: int = 1000
    max_body_bytes: int = 16 * 1024 * 1024
    control: ControlStore | None = None
    cases: CaseService | None = None
    now: Callable[[], datetime] = _utc_now
    streams: Any = None  # alerts.StreamSlots
    listener: Any = None  # adapters/notify.py Listener: the alert log's wake-ups
    audit: AuditLog | None = None
    links: Any = None  # the eventsourcing app of CustomerLink aggregates
    tz: tzinfo = UTC  # CONTACTSTREAM_TIMEZONE: what "today" means in reports

    def need_control(self) -> ControlStore:
        if self.control is None:
            raise ApiError(503, "unavailable", "the control store is not configured")
        return self.control

    def need_cases(self) -> CaseService:
        if self.cases is None:
            raise ApiError(503, "unavailable", "cases are not configured")
        return self.cases


def ctx(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context
