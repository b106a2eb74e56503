"""Issue 11, item 6: a command that cannot start says in one line what to do and exits
non-zero, without a traceback: the API's port in use, a database, Kafka cluster or schema
registry it cannot reach."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from contactstream.adapters.broker import free_port
from tests.e2e.system import cli

pytestmark = pytest.mark.e2e

NOBODY = f"127.0.0.1:{free_port()}"  # a port nothing listens on (bound and released)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit 2 and its last stderr line, without a traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    err = done.stderr
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(("contactstream up:", "contactstream worker:",
                                 "contactstream api:")), err
    return lines[-1]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_up_on_a_port_in_use_says_so_before_it_starts_anything(
        tmp_path: Path, taken_port: int) -> None:
    data = tmp_path / "data"
    line = one_line(cli("up", "--data-dir", str(data), "--port", str(taken_port)))
    assert f"cannot listen on 127.0.0.1:{taken_port}" in line and "--port" in line, line
    assert not (data / "postgres").exists()  # no database started (nor broker, nor worker)


def test_up_with_an_unreachable_database_names_the_variable(tmp_path: Path) -> None:
    done = cli("up", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()),
               env={"CONTACTSTREAM_DATABASE_URL": f"postgresql://cs:secret-pw@{NOBODY}/cs"})
    line = one_line(done)
    assert "cannot use the database" in line and "CONTACTSTREAM_DATABASE_URL" in line, line
    assert "secret-pw" not in done.stderr


def test_worker_with_an_unreachable_database_names_the_variable(tmp_path: Path) -> None:
    line = one_line(cli("worker", env={
        "CONTACTSTREAM_DATA_DIR": str(tmp_path / "d"),
        "CONTACTSTREAM_DATABASE_URL": f"postgresql://cs:pw@{NOBODY}/cs"}))
    assert "CONTACTSTREAM_DATABASE_URL" in line, line


def test_up_with_an_unreachable_kafka_names_the_bootstrap_servers(
        tmp_path: Path, database_url: str) -> None:
    line = one_line(cli("up", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()),
                        env={"KAFKA_BOOTSTRAP_SERVERS": NOBODY,
                             "CONTACTSTREAM_DATABASE_URL": database_url}))
    assert f"cannot reach Kafka at {NOBODY}" in line and "KAFKA_BOOTSTRAP_SERVERS" in line


def test_up_with_an_unreachable_schema_registry_names_the_variable(
        tmp_path: Path, database_url: str) -> None:
    line = one_line(cli("up", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()),
                        env={"CONTACTSTREAM_SCHEMA_REGISTRY_URL": f"http://{NOBODY}",
                             "CONTACTSTREAM_DATABASE_URL": database_url}))
    assert "cannot use the schema registry" in line, line
    assert "CONTACTSTREAM_SCHEMA_REGISTRY_URL" in line, line


def test_an_api_replica_with_nothing_to_join_names_what_it_needs(tmp_path: Path) -> None:
    line = one_line(cli("api", "--data-dir", str(tmp_path / "none"), "--port",
                        str(free_port())))
    assert "KAFKA_BOOTSTRAP_SERVERS" in line and "CONTACTSTREAM_DATABASE_URL" in line, line
    assert "--data-dir of a running `contactstream up`" in line, line

