"""Data that expires (issue 14, item 4): the retention policy's store and its periodic run.

A run (in the worker, one at a time by an advisory lock) finds every customer whose latest
interaction is more than ``inactive_days`` old and erases each exactly as
``DELETE /v1/customers/{id}`` does (adapters/erasure.py): the data keys are destroyed at
once and an erasure request is queued, which the projector carries out between two
batches. Each erasure is written to the access audit as done by the policy (role
``policy``, the token id of the admin who set it). Runs fall due every ``every_ms``; a run
that reached its limit leaves the next one due at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import astuple
from datetime import UTC, datetime
from typing import Any

from ..domain.retention import RetentionPolicy
from .audit import INSERT, Access, utc_iso
from .control import ControlStore
from .database import Database
from .erasure import destroy_keys
from .logging import get_logger
from .privacy import Privacy

log = get_logger(__name__)

DAY_MS = 86_400_000
RUN_EVERY_MS = 3_600_000  # a run falls due an hour after the last one
RUN_LIMIT = 500  # customers one run erases at most
RETENTION_LOCK = 0x72657465  # "rete": pg_advisory_xact_lock key of a run
AUDIT_PATH = "/v1/retention-policy"
ERASED = "erased-%"  # the pseudonyms erased rows live under (projections/identifiers.py)

# each customer's latest interaction (customer_channels: every timeline row but case
# events) over its member bases; erased rows and customers already queued are left out
_LATEST = (
    "SELECT COALESCE(l.survivor, c.base) AS cid, MAX(c.last_ms) AS last_ms"
    " FROM customer_channels c LEFT JOIN customer_links l ON l.base = c.base"
    " WHERE c.base NOT LIKE %(erased)s GROUP BY 1")


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


class Retention:
    def __init__(self, db: Database, control: ControlStore, privacy: Privacy | None,
                 clock: Callable[[], float] = time.time, every_ms: int = RUN_EVERY_MS,
                 limit: int = RUN_LIMIT) -> None:
        self.db, self.control, self.privacy = db, control, privacy
        self.clock, self.every_ms, self.limit = clock, every_ms, limit

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- the API -----------------------------------------------------------------------------
    def put(self, policy: RetentionPolicy, by: str | None) -> dict[str, Any]:
        """Set (or switch off) the policy; the next run falls due at once."""
        self.db.execute(
            "INSERT INTO retention_policy (id, inactive_days, set_at, set_by) VALUES"
            " (TRUE, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
            " inactive_days = excluded.inactive_days, set_at = excluded.set_at,"
            " set_by = excluded.set_by, last_run_ms = NULL",
            (policy.inactive_days, _iso(self.now_ms()), by))
        return self.status()

    def status(self) -> dict[str, Any]:
        row = self.db.one("SELECT inactive_days, set_at, last_run_ms, last_erased,"
                          " erased_total FROM retention_policy")
        days, set_at, last_run, last_erased, total = row or (None, None, None, 0, 0)
        next_run = next_erasure = None
        if days is not None:
            now = self.now_ms()
            next_run = now if last_run is None else max(now, last_run + self.every_ms)
            oldest = self.db.scalar(f"SELECT MIN(last_ms) FROM ({_LATEST}) x",
                                    {"erased": ERASED})
            if oldest is not None:
                next_erasure = max(int(oldest) + days * DAY_MS, now)
        return {"inactive_days": days, "set_at": set_at, "last_run_at": _iso(last_run),
                "last_erased": int(last_erased), "erased_total": int(total),
                "next_run_at": _iso(next_run), "next_erasure_at": _iso(next_erasure)}

    # -- the worker --------------------------------------------------------------------------
    def run_due(self, now: int | None = None) -> dict[str, int]:
        """A run when one is due: ``{"erased": n}``; ``{}`` when none was due (or another
        worker is running one)."""
        at = self.now_ms() if now is None else now
        with self.db.tx() as conn:
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)",
                                  (RETENTION_LOCK,)).fetchone()
            row = conn.execute("SELECT inactive_days, last_run_ms, set_by FROM"
                               " retention_policy").fetchone()
            if not (locked and locked[0]) or row is None or row[0] is None \
                    or self.privacy is None:
                return {}
            days, last_run, by = row
            if last_run is not None and at < last_run + self.every_ms:
                return {}
            doomed = [c for (c,) in conn.execute(
                f"SELECT cid FROM ({_LATEST}) x WHERE last_ms <= %(cut)s AND cid NOT IN"
                " (SELECT customer_id FROM erasure_requests WHERE done_at IS NULL)"
                " ORDER BY last_ms, cid LIMIT %(limit)s",
                {"erased": ERASED, "cut": at - days * DAY_MS, "limit": self.limit})]
            for cid in doomed:
                self._erase(self.privacy, cid, by, at)
            # a run that reached its limit leaves the next one due at once
            conn.execute("UPDATE retention_policy SET last_run_ms = %s, last_erased = %s,"
                         " erased_total = erased_total + %s",
                         (None if len(doomed) >= self.limit else at, len(doomed),
                          len(doomed)))
        if doomed:
            log.info("retention.erased", customers=len(doomed), inactive_days=days)
        return {"erased": len(doomed)}

    def _erase(self, kit: Privacy, cid: str, by: str | None, at: int) -> None:
        bases, key_ids, _ = destroy_keys(self.db, kit, cid)
        when = datetime.fromtimestamp(at / 1000, UTC)
        self.control.request_erasure(cid, {"bases": bases, "key_ids": key_ids},
                                     "policy:retention", when.isoformat())
        access = Access(utc_iso(when), "policy", by, "DELETE", AUDIT_PATH, "customer.erase",
                        cid, None, 202)
        self.db.execute(INSERT, astuple(access))
