"""Shared fixtures: a real embedded broker (Tansu) per test session, fresh topics per test."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contactstream.adapters.broker import EmbeddedBroker
from contactstream.adapters.config import Settings
from contactstream.adapters.logging import configure

configure("console", "warning")
_counter = itertools.count()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
def settings(tmp_path: Path, broker: EmbeddedBroker) -> Settings:
    """Settings on the shared broker with topics no other test uses."""
    return Settings(data_dir=tmp_path / "data", bootstrap_servers=broker.bootstrap_servers,
                    embedded_broker=True, topic_prefix=f"t{next(_counter)}x{uuid.uuid4().hex[:6]}",
                    partitions=3, fetch_max_wait_ms=20)
