"""Shared fixtures: one real embedded broker (Tansu) and one real PostgreSQL server per
test session; fresh topics and a fresh database (a copy of a migrated template) per test."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from contactstream.adapters import migrations
from contactstream.adapters.broker import EmbeddedBroker
from contactstream.adapters.config import Settings
from contactstream.adapters.database import (
    Database,
    EmbeddedPostgres,
    create_database,
    with_database,
)
from contactstream.adapters.logging import configure

configure("console", "warning")
_counter = itertools.count()
TEMPLATE = "contactstream_template"
# each layer runs alone by its marker (`pytest -m integration`, `-m e2e`, and the unit
# tests as `-m "not integration and not e2e"`): a test's folder and its marker must agree
LAYER_MARKERS = {"unit": set(), "integration": {"integration"}, "e2e": {"e2e"}}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: every collected test is checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    wrong = set()
    for item in items:
        layer = item.path.relative_to(here).parts[0] if item.path.is_relative_to(here) else ""
        if layer in LAYER_MARKERS:
            marks = {m.name for m in item.iter_markers()} & {"integration", "e2e"}
            if marks != LAYER_MARKERS[layer]:
                wrong.add(f"{item.path.relative_to(here.parent)} (marked {sorted(marks)})")
    if wrong:
        raise pytest.UsageError(
            "a test's marker must name its layer (pytestmark = pytest.mark.integration in"
            " tests/integration, pytest.mark.e2e in tests/e2e, neither in tests/unit): "
            + ", ".join(sorted(wrong)))


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """The session's PostgreSQL server, with a template database at the newest schema."""
    with EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "postgres") as pg:
        migrations.migrate(create_database(pg.admin_url, TEMPLATE))
        yield pg


@pytest.fixture
def database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A database of its own for this test, migrated (copied from the template)."""
    name = f"t{next(_counter)}_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server.admin_url, name, template=TEMPLATE)
    yield url
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path: Path, broker: EmbeddedBroker, database_url: str) -> Settings:
    """Settings on the shared broker with topics no other test uses, and a database of
    the test's own."""
    return Settings(data_dir=tmp_path / "data", bootstrap_servers=broker.bootstrap_servers,
                    embedded_broker=True, topic_prefix=f"t{next(_counter)}x{uuid.uuid4().hex[:6]}",
                    partitions=3, fetch_max_wait_ms=20, database_url=database_url)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A connection pool on this test's database."""
    database = Database(database_url)
    yield database
    database.close()
