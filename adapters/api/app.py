"""Builds the HTTP API: the FastAPI app, its error handling and middleware, and the
routers of each resource over the services the composition root hands it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from fastapi import FastAPI, Request

from ..audit import AuditLog
from ..auth import TokenTable
from ..caseservice import CaseService
from ..control import ControlStore
from ..ingest import Ingestor
from ..insights import Insights
from ..readstore import ReadStore
from . import (
    alerts,
    cases,
    console,
    customers,
    errors,
    events,
    operations,
    privacy,
    reports,
    sla,
    webhooks,
)
from .auth import role
from .context import ApiContext, ctx
from .docs import add_docs

DESCRIPTION = """Omnichannel contact-centre backend: ingest, the customer view, cases and
SLAs, alerts, reports, privacy. Every `/v1` operation needs `Authorization: Bearer
<token>`; every error is `{"error": {"code", "message"}}`; a query parameter an operation
does not take is a 400 `unknown_parameter`. See docs/CONTRACT.md."""


def create_app(ingestor: Ingestor | None, store: ReadStore, tokens: TokenTable,
               ready: Callable[[], Awaitable[bool]] | None = None,
               max_batch: int = 1000, max_body_bytes: int = 16 * 1024 * 1024,
               insights: Insights | None = None,
               database_up: Callable[[], bool] | None = None,
               kafka_up: Callable[[], bool] | None = None) -> FastAPI:
    """The API's core: operations, ingest, customers and their reports. Cases, SLAs,
    alerts and webhooks come with ``add_case_routes``, privacy with ``add_privacy_routes``."""
    # /docs and /redoc offline, from the bundles in the installed package (docs.py)
    # a body sent without a Content-Type is read as JSON, as before the models (curl -d)
    app = FastAPI(title="contactstream", version="1.0", description=DESCRIPTION,
                  docs_url=None, redoc_url=None, strict_content_type=False)
    app.state.api = ApiContext(store=store, tokens=tokens, insights=insights or Insights(store),
                               ingestor=ingestor, ready=ready, max_batch=max_batch,
                               max_body_bytes=max_body_bytes)
    app.state.role = role  # for routes added by modules outside this package
    add_docs(app)
    errors.install(app)
    _add_outage_middleware(app, database_up, kafka_up)
    # inside every middleware added later (the access audit sees the 500 it answers)
    app.add_middleware(errors.UnexpectedErrors)
    for router in (operations.router, events.router, customers.router, reports.router,
                   console.router, console.lookup_router):
        app.include_router(router)
    return app


def _add_outage_middleware(app: FastAPI, database_up: Callable[[], bool] | None,
                           kafka_up: Callable[[], bool] | None) -> None:
    if database_up is not None:
        @app.middleware("http")
        async def _while_database_down(request: Request, call_next: Any) -> Any:
            # the embedded server is being restarted (adapters/runner.py): answer at once
            if request.url.path.startswith("/v1/") and not database_up():
                return errors.error(503, "database_unavailable", "the database is"
                                    " restarting; retry", {"Retry-After": "1"})
            return await call_next(request)

    if kafka_up is not None:
        @app.middleware("http")
        async def _while_kafka_down(request: Request, call_next: Any) -> Any:
            # the embedded broker is being restarted, or no bootstrap server answers
            # (adapters/runner.py): ingest is refused at once, reads go on
            if request.url.path == "/v1/events" and request.method == "POST" \
                    and not kafka_up():
                return errors.error(503, "broker_unavailable", "Kafka is not reachable;"
                                    " nothing was accepted, retry", {"Retry-After": "1"})
            return await call_next(request)


def _context(app: FastAPI) -> ApiContext:
    api: ApiContext = app.state.api
    return api


def add_case_routes(app: FastAPI, cases_: CaseService, control: ControlStore,
                    now: Callable[[], datetime], max_streams_per_token: int = 10,
                    tz: tzinfo = UTC) -> None:
    """Cases, SLA policies and calendars, alerts and their stream, webhooks, the service
    report ("today" in ``tz``)."""
    api = _context(app)
    api.cases, api.control, api.now, api.tz = cases_, control, now, tz
    api.streams = alerts.StreamSlots(max_streams_per_token)
    for router in (cases.router, sla.router, alerts.router, webhooks.router,
                   reports.service_router):
        app.include_router(router)


def add_privacy_routes(app: FastAPI, control: ControlStore, audit: AuditLog,
                       links: Any) -> None:
    """Erasure, export, the access audit (and its middleware), identity and unmerge."""
    api = _context(app)
    api.control = api.control or control
    api.audit, api.links = audit, links
    app.add_middleware(privacy.AuditMiddleware, audit=audit, store=api.store)
    app.include_router(privacy.router)
    app.include_router(customers.identity_router)


__all__ = ["add_case_routes", "add_privacy_routes", "create_app", "ctx"]
