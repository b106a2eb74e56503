"""The contract's error envelope: ApiError, its model for the OpenAPI document, and the
handlers that turn every failure (validation, routing, a database down, a bug) into it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from eventsourcing import persistence as es_persistence
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..logging import get_logger

log = get_logger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorEnvelope(BaseModel):
    """Every error answer: `{"error": {"code", "message"}}`."""
    error: ErrorBody


WHY = {
    400: "bad_json, bad_query, bad_cursor or unknown_parameter (a query parameter this"
         " operation does not take)",
    401: "unauthenticated: no bearer token, or an unknown one",
    403: "forbidden: the token's role may not do this",
    404: "not_found",
    405: "http_error: a method the path does not have; `Allow` lists those it has",
    409: "a conflict with the current state",
    413: "too_large or too_many",
    415: "unsupported_media_type: the body is not declared JSON, or not UTF-8",
    422: "invalid_request (a path or query parameter, or the body, breaks its schema), or"
         " the resource's own invalid_* code",
    429: "too_many_streams; `Retry-After` says when to try again",
    503: "database_unavailable, broker_unavailable or unavailable; `Retry-After` when it"
         " passes by itself",
}
RETRY = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
AUTH = (401, 403)
V1 = (400, 401, 403, 422, 503)  # what any /v1 operation may answer


def responses(*statuses: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error statuses, each the envelope; a keyword
    ``e404="no such case"`` says what that status means for the operation."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        entry: dict[str, Any] = {"model": ErrorEnvelope,
                                 "description": why.get(f"e{status}", WHY[status])}
        if status in (429, 503):
            entry["headers"] = RETRY
        if status == 405:
            entry["headers"] = {"Allow": {"schema": {"type": "string"}}}
        out[status] = entry
    return out


def invalid_as(code: str) -> Callable[[F], F]:
    """A body that breaks the operation's model answers 422 with ``code`` (invalid_policy,
    invalid_webhook, ...) instead of invalid_request."""
    def mark(endpoint: F) -> F:
        endpoint.invalid_code = code  # type: ignore[attr-defined]
        return endpoint
    return mark


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None,
          ) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _describe(errors: list[Any]) -> str:
    parts = []
    for e in errors:
        loc = [str(p) for p in e["loc"]]
        where = ".".join(loc[1:] if loc and loc[0] == "body" and len(loc) > 1 else loc)
        parts.append(f"{where} is required" if e["type"] == "missing"
                     else f"{where}: {e['msg']}")
    return "; ".join(parts)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e["type"] == "json_invalid" for e in errors):
        return error(400, "bad_json", "body is not JSON")
    if any(tuple(e["loc"]) == ("body",) and e["type"] == "missing" for e in errors):
        return error(400, "bad_json", "a JSON body is required")
    code = "invalid_request"
    if all(e["loc"] and e["loc"][0] == "body" for e in errors):
        code = getattr(request.scope.get("endpoint"), "invalid_code", code)
    return error(422, code, _describe(errors))


def _methods_of(request: Request) -> list[str]:
    """Every method some route of the request's path answers (an included router's routes
    are listed by FastAPI as its effective route contexts)."""
    path = request.scope.get("path", "")
    allowed: set[str] = set()
    for route in request.app.router.routes:
        nested = getattr(route, "effective_route_contexts", None)
        for candidate in nested() if callable(nested) else [route]:
            regex, methods = getattr(candidate, "path_regex", None), \
                getattr(candidate, "methods", None)
            if regex is not None and methods and regex.match(path):
                allowed |= set(methods)
    return sorted(allowed)


def install(app: FastAPI) -> None:
    """The handlers of every error the API answers in the envelope."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and request.method in ("POST", "PUT"):
            # FastAPI's answer to a body its JSON parser gave up on (nested too deep)
            return error(400, "bad_json", f"body is not JSON: {exc.detail}")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # `Allow` lists every method of the path (RFC 9110), not only the first route's
            headers["Allow"] = ", ".join(_methods_of(request))
        return error(exc.status_code, "http_error", str(exc.detail), headers)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    # the same from the case store (the eventsourcing library raises its own, once its
    # retries are spent)
    @app.exception_handler(es_persistence.OperationalError)
    @app.exception_handler(es_persistence.InterfaceError)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("http.database_unavailable", error=type(exc).__name__)
        return error(503, "database_unavailable", "the database is not answering; retry",
                     {"Retry-After": "1"})

    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]


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
            response = error(500, "internal", "an unexpected error; it was logged")
            await response(scope, receive, send)
