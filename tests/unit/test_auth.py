"""Tokens file and role grants."""

from __future__ import annotations

import stat
from pathlib import Path

from contactstream.adapters.auth import GRANTS, TokenTable, write_tokens


def test_tokens_file_is_0600_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "d" / "tokens.json"
    first = write_tokens(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(first) == {"publisher", "agent", "supervisor", "admin"}
    assert len(set(first.values())) == 4
    assert write_tokens(path) == first  # a restart keeps the tokens users already have


def test_roles_follow_the_contract() -> None:
    assert GRANTS["publisher"] == {"publish"}
    assert "publish" not in GRANTS["agent"] and "publish" not in GRANTS["supervisor"]
    assert GRANTS["agent"] < GRANTS["supervisor"] < GRANTS["admin"]
    table = TokenTable({"agent": "a-token", "admin": "z-token"})
    assert table.role_of("a-token") == "agent" and table.role_of("nope") is None
