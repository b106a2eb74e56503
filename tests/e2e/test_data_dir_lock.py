"""One owner per data dir (issue 10, item 3): a second `up`, a `replay` or a `backup` of
the embedded database is refused in one line while `up` runs, a second worker joins
(issue 9), and the running system loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.e2e.system import Up, cli
from tests.helpers import envelope, eventually

pytestmark = pytest.mark.e2e


def test_a_second_owner_of_the_data_dir_is_refused_and_the_first_goes_on(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Up(data).start()
    failures = []
    try:
        second = Up(data)
        try:
            second.start(timeout=30)
            failures.append("a second up on the same data dir started")
        except RuntimeError as exc:  # it exited: the message is in its log
            assert "exited 2" in str(exc), exc
            assert f"{data} is in use by `contactstream up` (pid {up.proc.pid})" in \
                second.logs(), second.logs()[-1000:]
        for command in (["replay", "--data-dir", str(data)],
                        ["backup", str(tmp_path / "b"), "--data-dir", str(data)]):
            done = cli(*command)
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            assert "is in use by `contactstream up`" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
        # a worker started by hand next to up's own is not locked out (issue 9): it joins
        # `up` (its broker and database, from the data dir) and takes a share
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CONTACTSTREAM_", "KAFKA_"))}
        worker = subprocess.Popen(
            [sys.executable, "-m", "contactstream.adapters.cli", "worker", "--data-dir",
             str(data)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def holders() -> int:
                assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
                with psycopg.connect(up.database_url) as conn:
                    row = conn.execute("SELECT count(DISTINCT holder) FROM leases WHERE name"
                                       " LIKE 'partition:%' AND expires_at > now()").fetchone()
                return int(row[0]) if row else 0
            eventually(lambda: holders() == 2, timeout=60)
            # the system still takes and serves events
            events = [envelope(i, customer={"id": "c-lock"}) for i in range(3)]
            with up.client("publisher") as pub:
                assert pub.post("/v1/events", json=events).json()["accepted"] == 3
            eventually(lambda: len(up.get("/v1/customers/c-lock/timeline").json()
                                   .get("items", [])) >= 3)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(60) == 0
    finally:
        code = up.stop()
    assert not failures, failures
    assert code == 0, up.logs()[-2000:]
    # once it stopped, the data dir is free again
    assert cli("replay", "--data-dir", str(data)).returncode == 0
    assert os.path.exists(data / "lock")


def test_the_data_dir_and_its_files_are_private(tmp_path: Path) -> None:
    """Issue 10, item 11: the data dir 0700 (0710 for the embedded database's own group when
    run as root), every file in it 0600."""
    data = tmp_path / "data"
    up = Up(data).start()
    try:
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=[envelope(1)]).status_code == 202
        mode = data.stat().st_mode & 0o777
        assert mode == (0o710 if os.geteuid() == 0 else 0o700), oct(mode)
        files = [p for p in data.iterdir() if p.is_file() and p.name != up.log_path.name]
        assert {p.name for p in files} >= {"tokens.json", "keys.sqlite", "lock", "broker.log",
                                           "worker.ready"}
        loose = {p.name: oct(p.stat().st_mode & 0o777) for p in files
                 if p.stat().st_mode & 0o077}
        assert loose == {}, loose
    finally:
        code = up.stop()
    assert code == 0, up.logs()[-2000:]
