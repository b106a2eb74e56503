"""The access audit in PostgreSQL: records queued by requests, written in batches by one
background thread, read newest first by admins; a failed write never fails a request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from contactstream.adapters.audit import MAX_BATCH, AuditLog
from contactstream.adapters.database import Database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, max_size=4)
    yield database
    database.close()


@pytest.fixture
def audit(db: Database) -> Iterator[AuditLog]:
    log = AuditLog(db)
    yield log
    log.close()


def read(audit: AuditLog, customer_id: str | None = "c-1", role: str | None = "agent",
         minutes: int = 0, status: int = 200) -> None:
    audit.record(role=role, token_id="ab12cd34ef56", method="GET",
                 path="/v1/customers/{customer_id}", action="customer.read", status=status,
                 customer_id=customer_id, at=T0 + timedelta(minutes=minutes))


def test_records_come_back_newest_first_with_every_field(audit: AuditLog) -> None:
    read(audit, minutes=0)
    read(audit, customer_id="c-2", role="admin", minutes=1, status=403)
    audit.record(role=None, token_id=None, method="DELETE", path="/v1/customers/{customer_id}",
                 action="customer.erase", status=401, at=T0 + timedelta(minutes=2))
    rows = audit.query()
    assert [r["action"] for r in rows] == ["customer.erase", "customer.read", "customer.read"]
    assert rows[0]["seq"] > rows[1]["seq"] > rows[2]["seq"]  # the identity column's order
    assert rows[1] == {"seq": rows[1]["seq"], "at": "2026-11-22T09:01:00.000000+00:00",
                       "role": "admin", "token_id": "ab12cd34ef56", "method": "GET",
                       "path": "/v1/customers/{customer_id}", "action": "customer.read",
                       "customer_id": "c-2", "case_id": None, "status": 403, "items": None}
    assert rows[0]["role"] is None and rows[0]["customer_id"] is None


def test_filters_and_paging(audit: AuditLog) -> None:
    for i in range(6):
        read(audit, customer_id=f"c-{i % 3}", role=("agent", "admin")[i % 2], minutes=i)
    assert len(audit.query("c-1")) == 2
    assert {r["customer_id"] for r in audit.query(["c-0", "c-2"])} == {"c-0", "c-2"}
    assert len(audit.query(["c-0", "c-2"])) == 4 and audit.query([]) == []
    assert {r["role"] for r in audit.query(role="admin")} == {"admin"}
    assert [r["at"][14:16] for r in audit.query(since=T0 + timedelta(minutes=4))] == ["05", "04"]
    budapest = datetime(2026, 11, 22, 10, 4, tzinfo=timezone(timedelta(hours=1)))
    assert len(audit.query(since=budapest)) == 2  # the same instant as T0 + 4 min
    page1 = audit.query(limit=4)
    page2 = audit.query(limit=4, before_seq=page1[-1]["seq"])
    assert len(page1) == 4 and len(page2) == 2
    assert {r["seq"] for r in page1}.isdisjoint({r["seq"] for r in page2})
    assert len(audit.query("c-1", role="admin", since=T0)) == 1


def test_the_customer_is_resolved_on_the_writer_thread(audit: AuditLog) -> None:
    threads: list[str] = []

    def resolve() -> str:
        threads.append(threading.current_thread().name)
        return "c-77"

    def broken() -> str:
        raise LookupError("no such case")
    audit.record(role="agent", token_id="t", method="GET", path="/v1/cases/{case_id}",
                 action="case.read", status=200, case_id="case-1", resolve=resolve)
    audit.record(role="agent", token_id="t", method="GET", path="/v1/cases/{case_id}",
                 action="case.read", status=404, case_id="case-2", resolve=broken)
    rows = audit.query()
    assert [(r["case_id"], r["customer_id"]) for r in rows] == [("case-2", None),
                                                                ("case-1", "c-77")]
    assert threads == ["audit-writer"]


def test_many_records_are_written_in_batches_and_close_writes_the_rest(db: Database) -> None:
    audit = AuditLog(db)
    for i in range(MAX_BATCH * 2 + 7):
        read(audit, customer_id=f"c-{i}", minutes=i % 60)
    audit.close()
    assert db.scalar("SELECT COUNT(*) FROM access_log") == MAX_BATCH * 2 + 7
    read(audit)  # after close: logged, not raised, and not left queued
    assert audit.flush(timeout=0.5)
    assert db.scalar("SELECT COUNT(*) FROM access_log") == MAX_BATCH * 2 + 7


def test_a_failed_write_is_logged_and_never_raised(database_url: str) -> None:
    db = Database(database_url, max_size=2)
    audit = AuditLog(db)
    read(audit)
    assert audit.flush()
    db.close()  # the database is gone
    read(audit, customer_id="c-lost")
    assert audit.flush(timeout=10)  # handled (failed), not stuck
    audit.close()
    again = Database(database_url, max_size=2)
    try:
        assert [r["customer_id"] for r in AuditLog(again).query()] == ["c-1"]
    finally:
        again.close()
