"""The access audit: who read which customer's personal data through the API, in table
``access_log`` (adapters/migrations), written in batches by a background thread."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from typing import Any

from .database import Database
from .logging import get_logger

log = get_logger(__name__)

COLUMNS = ("seq", "at", "role", "token_id", "method", "path", "action", "customer_id",
           "case_id", "status", "items")
MAX_PENDING = 100_000
MAX_BATCH = 500
LINGER_S = 0.02  # how long a first record waits for others to share its transaction


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
    items: int | None = None  # how many customers an export gave out (migration 9)


@dataclass(frozen=True, slots=True)
class _Pending:
    access: Access
    # run on the writer thread when customer_id is None: finds the customer off the
    # request's path (lookups, cases); may return None
    resolve: Callable[[], str | None] | None


INSERT = ("INSERT INTO access_log (at, role, token_id, method, path, action, customer_id,"
          " case_id, status, items) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")


class AuditLog:
    """Append-only access records. ``record`` only enqueues: one writer thread commits
    what is pending in one short transaction, and a failure is logged, never raised.
    ``seq`` comes from the table's identity column at insert: the order of one writer's
    records. With several API processes, a lower seq can become visible after a higher
    one (their transactions commit in another order): a reader paging by ``before_seq``
    at that moment can miss it."""

    def __init__(self, db: Database) -> None:
        self.db = db
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
               resolve: Callable[[], str | None] | None = None,
               items: int | None = None) -> None:
        """Queue one access record. ``path`` is the route's template, never the raw URL."""
        try:
            access = Access(utc_iso(at or datetime.now(UTC)), role, token_id, method, path,
                            action, customer_id, case_id, int(status), items)
            self._start()
            with self._progress:
                self._pending.put_nowait(_Pending(access, resolve))
                self._queued += 1
        except queue.Full:
            log.error("audit.dropped", action=action, reason="queue full")
        except Exception as exc:
            log.error("audit.record_failed", action=action, error=type(exc).__name__)

    def _start(self) -> None:
        # checked before the fast path too: after close nobody takes records off the queue
        if self._closed:
            raise RuntimeError("the audit log is closed")
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
            if first is not None:
                # the records of the next few ms join this one: a burst of requests is one
                # transaction and one wake-up of this thread, not one each
                time.sleep(LINGER_S)
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
                               p.resolve(), a.case_id, a.status, a.items)
                except Exception as exc:
                    log.warning("audit.resolve_failed", action=a.action,
                                error=type(exc).__name__)
            rows.append(astuple(a))
        try:
            with self.db.tx() as conn:
                conn.cursor().executemany(INSERT, rows)
        except Exception as exc:  # the audit must never fail the request it records
            log.error("audit.write_failed", entries=len(rows), error=type(exc).__name__)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued record is written (or failed); False on timeout."""
        with self._progress:
            target = self._queued
            return self._progress.wait_for(lambda: self._handled >= target, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending and stop the writer (the database stays open: it belongs
        to the composition root)."""
        with self._lock:
            self._closed = True
            writer = self._writer
        if writer is not None:
            self._pending.put(None)
            writer.join(timeout)

    # -- reading -------------------------------------------------------------------------
    def query(self, customer_id: str | Sequence[str] | None = None, role: str | None = None,
              since: datetime | None = None, limit: int = 100,
              before_seq: int | None = None) -> list[dict[str, Any]]:
        """Records newest first; ``customer_id`` may name several ids (a merged customer)."""
        self.flush()
        sql = [f"SELECT {', '.join(COLUMNS)} FROM access_log WHERE TRUE"]
        args: list[Any] = []
        if customer_id is not None:
            ids = [customer_id] if isinstance(customer_id, str) else list(customer_id)
            sql.append("AND customer_id = ANY(%s)")
            args.append(ids)
        if role is not None:
            sql.append("AND role IS NOT DISTINCT FROM %s")
            args.append(role)
        if since is not None:
            # fixed-width UTC text: byte order is time order, whatever the server's locale
            sql.append('AND at >= %s COLLATE "C"')
            args.append(utc_iso(since))
        if before_seq is not None:
            sql.append("AND seq < %s")
            args.append(before_seq)
        sql.append("ORDER BY seq DESC LIMIT %s")
        args.append(limit)
        return [dict(zip(COLUMNS, r, strict=True)) for r in self.db.all(" ".join(sql), args)]
