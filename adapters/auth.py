"""Bearer tokens and the four roles of the contract."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

ROLES = ("publisher", "agent", "supervisor", "admin")

# what each role may do, as the contract's table says
GRANTS: dict[str, frozenset[str]] = {
    "publisher": frozenset({"publish"}),
    "agent": frozenset({"read", "act"}),
    "supervisor": frozenset({"read", "act", "supervise"}),
    "admin": frozenset({"publish", "read", "act", "supervise", "admin"}),
}


def write_tokens(path: Path) -> dict[str, str]:
    """Create tokens.json (mode 0600) once; later starts reuse it."""
    if path.exists():
        return load_tokens(path)
    tokens = {role: secrets.token_urlsafe(24) for role in ROLES}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tokens, f, indent=2)
    return tokens


def load_tokens(path: Path) -> dict[str, str]:
    with open(path) as f:
        data = json.load(f)
    return {role: data[role] for role in ROLES if role in data}


class TokenTable:
    def __init__(self, tokens: dict[str, str]) -> None:
        self._by_token = {tok: role for role, tok in tokens.items()}

    def role_of(self, token: str) -> str | None:
        for known, role in self._by_token.items():
            if secrets.compare_digest(known, token):
                return role
        return None
