"""The access audit: who read which customer's personal data through the API, in SQLite."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .logging import get_logger
from .sqlite import ThreadLocalStore

log = get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS access_log (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  role TEXT,
  token_id TEXT,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  action TEXT NOT NULL,
  customer_id TEXT,
  case_id TEXT,
  status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS access_by_customer ON access_log (customer_id, seq);
CREATE INDEX IF NOT EXISTS access_by_role ON access_log (role, seq);
"""

COLUMNS = ("seq", "at", "role", "token_id", "method", "path", "action", "customer_id",
           "case_id", "status")
MAX_PENDING = 100_000
MAX_BATCH = 500


def utc_iso(at: datetime) -> str:
    """The one fixed-width form of `at` in the log, so text order is time order."""
    if at.tzinfo is None:
        raise ValueError("a time with a UTC offset is needed")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Access:
    at: str
    role: str | None
    token_id: str | None
    method: str
    path: str
    action: str
    customer_id: str | None
    case_id: str | None
    status: int


@dataclass(frozen=True, slots=True)
class _Pending:
    access: Access
    # run on the writer thread when customer_id is None: finds the customer off the
    # request's path (lookups, cases); may return None
    resolve: Callable[[], str | None] | None


class AuditLog(ThreadLocalStore):
    """Append-only access records. ``record`` only enqueues: one writer thread commits
    what is pending in one short transaction, and a failure is logged, never raised."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA)
        self._pending: queue.Queue[_Pending | None] = queue.Queue(MAX_PENDING)
        self._lock = threading.Lock()
        self._progress = threading.Condition()
        self._queued = 0
        self._handled = 0
        self._writer: threading.Thread | None = None
        self._closed = False

    # -- writing ---------------------------------------------------------------------------
    def record(self, *, role: str | None, token_id: str | None, method: str, path: str,
               action: str, status: int, customer_id: str | None = None,
               case_id: str | None = None, at: datetime | None = None,
               resolve: Callable[[], str | None] | None = None) -> None:
        """Queue one access record. ``path`` is the route's template, never the raw URL."""
        try:
            access = Access(utc_iso(at or datetime.now(UTC)), role, token_id, method, path,
                            action, customer_id, case_id, int(status))
            self._start()
            with self._progress:
                self._pending.put_nowait(_Pending(access, resolve))
                self._queued += 1
        except queue.Full:
            log.error("audit.dropped", action=action, reason="queue full")
        except Exception as exc:
            log.error("audit.record_failed", action=action, error=type(exc).__name__)

    def _start(self) -> None:
        if self._writer is not None:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("the audit log is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="audit-writer",
                                                daemon=True)
                self._writer.start()

    def _run(self) -> None:
        while True:
            first = self._pending.get()
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            items = [p for p in batch if p is not None]
            try:
                if items:
                    self._write(items)
            finally:
                with self._progress:
                    self._handled += len(items)
                    self._progress.notify_all()
            if len(items) < len(batch):  # the close() sentinel
                return

    def _write(self, items: list[_Pending]) -> None:
        rows = []
        for p in items:
            a = p.access
            if a.customer_id is None and p.resolve is not None:
                try:
                    a = Access(a.at, a.role, a.token_id, a.method, a.path, a.action,
                               p.resolve(), a.case_id, a.status)
                except Exception as exc:
                    log.warning("audit.resolve_failed", action=a.action,
                                error=type(exc).__name__)
            rows.append(astuple(a))
        c = self.conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(
                    "INSERT INTO access_log (at, role, token_id, method, path, action,"
                    " customer_id, case_id, status) VALUES (?,?,?,?,?,?,?,?,?)", rows)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        except Exception as exc:
            log.error("audit.write_failed", entries=len(rows), error=type(exc).__name__)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued record is written (or failed); False on timeout."""
        with self._progress:
            target = self._queued
            return self._progress.wait_for(lambda: self._handled >= target, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending and stop the writer."""
        with self._lock:
            self._closed = True
            writer = self._writer
        if writer is not None:
            self._pending.put(None)
            writer.join(timeout)
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- reading -------------------------------------------------------------------------
    def query(self, customer_id: str | Sequence[str] | None = None, role: str | None = None,
              since: datetime | None = None, limit: int = 100,
              before_seq: int | None = None) -> list[dict[str, Any]]:
        """Records newest first; ``customer_id`` may name several ids (a merged customer)."""
        self.flush()
        sql = [f"SELECT {', '.join(COLUMNS)} FROM access_log WHERE 1=1"]
        args: list[Any] = []
        if customer_id is not None:
            ids = [customer_id] if isinstance(customer_id, str) else list(customer_id)
            sql.append(f"AND customer_id IN ({','.join('?' * len(ids))})")
            args += ids
        if role is not None:
            sql.append("AND role IS ?")
            args.append(role)
        if since is not None:
            sql.append("AND at >= ?")
            args.append(utc_iso(since))
        if before_seq is not None:
            sql.append("AND seq < ?")
            args.append(before_seq)
        sql.append("ORDER BY seq DESC LIMIT ?")
        args.append(limit)
        return [dict(zip(COLUMNS, r, strict=True)) for r in self.conn.execute(" ".join(sql), args)]
