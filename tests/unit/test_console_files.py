"""The console's files are package data (a wheel install has them), and a time zone that is
not one is refused by name."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from contactstream.adapters import config

ROOT = Path(__file__).resolve().parents[2]


def test_every_console_file_is_in_the_package_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["contactstream.adapters"]
    files = sorted(p.relative_to(ROOT / "adapters").as_posix()
                   for p in (ROOT / "adapters" / "console").iterdir())
    assert {"console/index.html", "console/console.js", "console/console.css"} <= set(files)
    assert [f for f in files if not any(fnmatch(f, g) for g in globs)] == []


def test_the_page_loads_only_its_own_files() -> None:
    page = (ROOT / "adapters" / "console" / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "//" not in page.replace(
        "<!doctype", "")


def test_an_unknown_time_zone_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTSTREAM_TIMEZONE", "Mars/Olympus")
    with pytest.raises(config.ConfigError, match="CONTACTSTREAM_TIMEZONE: 'Mars/Olympus'"):
        config.from_env()
    monkeypatch.setenv("CONTACTSTREAM_TIMEZONE", "Europe/Budapest")
    assert config.from_env().tz.key == "Europe/Budapest"
    monkeypatch.delenv("CONTACTSTREAM_TIMEZONE")
    assert config.from_env().timezone == "UTC"
