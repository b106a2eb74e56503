"""Lists: the page model, the opaque cursors, and the check that refuses a query parameter
an operation does not take (400 `unknown_parameter`, never silently ignored)."""

from __future__ import annotations

import base64
import json
from typing import Any, Generic, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel

from .errors import ApiError

MAX_BIGINT = 2**63 - 1  # what a number in a path or cursor may be: PostgreSQL's bigint
T = TypeVar("T")

CURSOR = Query(None, description="the `next` of the previous page")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next: str | None


def encode_cursor(ms: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ms, event_id]).encode()).decode()


def decode_cursor(cursor: str, name: str = "cursor") -> tuple[int, str]:
    try:
        ms, eid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not -MAX_BIGINT <= int(ms) <= MAX_BIGINT:
            raise ValueError("out of range")
        return int(ms), str(eid)
    except Exception as exc:
        raise ApiError(400, "bad_cursor", f"{name}: not a cursor this API issued") from exc


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


def offset_page(rows: list[Any], limit: int, cursor: str | None) -> dict[str, Any]:
    """A page of a list held whole: ``limit`` rows from the cursor's offset."""
    start = decode_offset(cursor) if cursor else 0
    nxt = encode_offset(start + limit) if start + limit < len(rows) else None
    return {"items": rows[start:start + limit], "next": nxt}


_KNOWN: dict[int, frozenset[str]] = {}


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _known(route: Any) -> frozenset[str]:
    found = _KNOWN.get(id(route))
    if found is None:
        found = _KNOWN[id(route)] = frozenset(_query_names(route.dependant))
    return found


async def only_known_params(request: Request) -> None:
    """A router dependency: 400 for a query parameter the operation does not declare, or
    for a value or path segment holding NUL (U+0000), which no store can keep."""
    for name, value in [*request.query_params.multi_items(), *request.path_params.items()]:
        if "\x00" in name or "\x00" in str(value):
            raise ApiError(400, "bad_query", f"{name[:40]!r}: contains a NUL character"
                           " (U+0000)")
    route = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    known = _known(route)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise ApiError(400, "unknown_parameter",
                       f"unknown query parameter {unknown[0][:40]!r}; this operation takes:"
                       f" {takes}")
