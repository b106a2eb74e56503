"""The bearer-token dependency: ``Depends(role("read"))`` lets in the roles granted that
right (adapters/auth.py GRANTS), 401 without a known token, 403 for another role."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from functools import cache

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..auth import GRANTS
from .context import ctx
from .errors import ApiError

bearer = HTTPBearer(auto_error=False)


def token_fingerprint(token: str) -> str:
    """12 hex of SHA-256 of the token: who asked, for the audit; never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@cache
def role(right: str) -> Callable[..., Awaitable[str]]:
    # async: it does no I/O, and a sync dependency would cost each request a thread hop
    async def check(request: Request,
                    creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        if creds is None:
            raise ApiError(401, "unauthenticated", "missing bearer token",
                           {"WWW-Authenticate": "Bearer"})
        who = ctx(request).tokens.role_of(creds.credentials)
        if who is None:
            raise ApiError(401, "unauthenticated", "unknown token",
                           {"WWW-Authenticate": "Bearer"})
        request.state.role = who
        request.state.token_id = token_fingerprint(creds.credentials)
        if right not in GRANTS[who]:
            raise ApiError(403, "forbidden", f"role {who} may not do this")
        return who
    return check
