"""Issue 10, item 1: an amount the value fold cannot take never takes the customer base
down. Ingest refuses it; one that reaches the log anyway (a straight-to-Kafka producer, a
release before the limit) or sits in a database written before it is skipped and logged,
and every view, list, report, export and erasure still answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest

from contactstream.adapters import kafka
from contactstream.adapters.config import Settings
from contactstream.projections.identifiers import partition_key
from tests.helpers import envelope
from tests.integration.test_no_input_takes_it_down import FullSystem, is_error

pytestmark = pytest.mark.integration

HUGE = ["100000000000000000000000000", "1E+400", "1e999999999"]


def purchase(i: int, customer: str, amount: str, currency: str = "EUR") -> dict[str, Any]:
    return envelope(i, type="purchase.completed", customer={"id": customer},
                    occurred_at=f"2026-11-2{i % 10}T10:00:00+01:00",
                    payload={"amount": amount, "currency": currency, "order_id": f"o-{i}"})


async def every_read_answers(sys: FullSystem, customers: list[str]) -> dict[str, Any]:
    """Each customer's view and export, the customer list and the value reports: 200."""
    out: dict[str, Any] = {}
    for cid in customers:
        for path, role in ((f"/v1/customers/{cid}", "agent"),
                           (f"/v1/customers/{cid}/export", "admin")):
            resp = await sys.get(path, role=role)
            assert resp.status_code == 200, (path, resp.text[:300])
            out[path] = resp.json()
    for path in ("/v1/customers", "/v1/reports/segments", "/v1/reports/pareto"):
        resp = await sys.get(path, role="supervisor")
        assert resp.status_code == 200, (path, resp.text[:300])
        out[path] = resp.json()
    return out


async def test_ingest_refuses_amounts_the_fold_cannot_take(settings: Settings) -> None:
    async with FullSystem(settings) as sys:
        resp = await sys.post([purchase(i, "c-big", a) for i, a in enumerate(HUGE)])
        assert resp.status_code == 202 and resp.json()["accepted"] == 0
        assert all("payload.amount: must be a decimal string" in r["error"]
                   for r in resp.json()["rejected"])


async def test_huge_amounts_on_the_log_are_skipped_and_the_base_still_answers(
        settings: Settings) -> None:
    async with FullSystem(settings) as sys:
        ok = (await sys.post([purchase(0, "c-ok", "120.50"), purchase(1, "c-big", "10.00")]))
        assert ok.json()["accepted"] == 2
        # as a producer going straight to Kafka would write them (no encryption, no screen)
        codec = sys.api.ingestor.codec
        producer = kafka.producer(settings)
        await producer.start()
        try:
            for i, amount in enumerate(HUGE, start=2):
                env = {**purchase(i, "c-big", amount), "received_at": 1}
                await producer.send_and_wait(settings.interactions_topic, codec.encode(env),
                                             key=partition_key(env["customer"]))
        finally:
            await producer.stop()
        await sys.wait_events(5)
        await sys.post(purchase(9, "c-ok", "1.00"))  # the worker goes on after them
        await sys.wait_events(6)
        seen = await every_read_answers(sys, ["c-ok", "c-big"])
        big = seen["/v1/customers/c-big"]["value"]
        assert big["lifetime_revenue"] == "10.00" and big["by_currency"] == {"EUR": "10.00"}
        assert seen["/v1/customers/c-ok"]["value"]["lifetime_revenue"] == "121.50"
        assert seen["/v1/reports/pareto"]["total_revenue"] == "131.50"
        # the export still holds the facts as published
        amounts = [t["payload"]["amount"] for t in seen["/v1/customers/c-big/export"]["timeline"]]
        assert sorted(amounts) == sorted(["10.00", *HUGE])

        erased = await sys.client.delete("/v1/customers/c-big", headers=sys.auth("admin"))
        assert erased.status_code in (200, 202), erased.text
        await every_read_answers(sys, ["c-ok"])
        is_error(await sys.get("/v1/customers/c-big"), 404, "not_found")


async def test_a_database_written_before_the_limit_still_answers(settings: Settings) -> None:
    async with FullSystem(settings) as sys:
        await sys.post([purchase(0, "c-ok", "120.50"), purchase(1, "c-old", "10.00")])
        await sys.wait_events(2)
        await every_read_answers(sys, ["c-ok", "c-old"])
        # what the folds wrote before ingest had a limit: a total no report can print
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("UPDATE customer_revenue SET amount = %s WHERE base = 'c-old'",
                         (Decimal("1E+30"),))
            conn.execute("UPDATE customer_scores SET revenue = %s WHERE customer_id = 'c-old'",
                         (Decimal("1E+30"),))
        seen = await every_read_answers(sys, ["c-ok", "c-old"])
        assert seen["/v1/customers/c-old"]["value"]["lifetime_revenue"] == "0.00"
        assert seen["/v1/reports/pareto"]["total_revenue"] == "120.50"
        listed = {c["id"]: c for c in seen["/v1/customers"]["items"]}
        assert listed["c-old"]["lifetime_revenue"] is None
        # the worker's next batch for that customer rescoring it does not fail either
        await sys.post(purchase(2, "c-old", "5.00"))
        await sys.wait_events(3)
        await sys.post(purchase(3, "c-ok", "1.00"))
        await sys.wait_events(4)
        await every_read_answers(sys, ["c-ok", "c-old"])
