"""Service by customer value (issue 14, item 1): SLA policies that match on the customer's
segment and lifetime revenue, chosen when the opening complaint is processed from the
figures stored for the customer's earlier purchases (which went through the real broker
and projector), kept in the case's snapshot with what they matched on, and filtered on by
GET /v1/cases?segment=."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from contactstream.adapters import bootstrap, kafka
from contactstream.adapters.auth import TokenTable
from contactstream.adapters.caseservice import CaseService, case_app, case_json
from contactstream.adapters.config import Settings
from contactstream.adapters.control import ControlStore
from contactstream.adapters.http import add_case_routes, create_app
from contactstream.adapters.ingest import Ingestor
from contactstream.adapters.journal import IngestJournal
from contactstream.adapters.privacy import privacy
from contactstream.adapters.readstore import ReadStore
from contactstream.domain.cases import Case
from contactstream.domain.sla import SlaPolicy
from contactstream.streams.sla import ManualClock
from tests.helpers import envelope
from tests.integration.crm_helpers import relay_all

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
TARGETS = {"first_response_s": 600, "resolution_s": 3600}


async def test_cases_open_with_the_policy_the_customer_s_value_meets(settings: Settings,
                                                                    ) -> None:
    rng = random.Random(11)
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    worker = await bootstrap.worker_services(settings, clock=ManualClock(NOW))
    db = worker.db
    control = ControlStore(db)
    api_cases = CaseService(case_app(settings.database_url), control, now=lambda: NOW)
    try:
        for name, extra in (("vip", {"segment": ["champions"]}),
                            ("big", {"min_lifetime_revenue": "1000.00"}),
                            ("rest", {})):
            control.put_policy(SlaPolicy.from_json(name, {**TARGETS, **extra}))
        ingestor = Ingestor(settings, worker.producer, bootstrap.codec(settings, db),
                            IngestJournal(db), privacy(settings, db))
        revenue: dict[str, Decimal] = {}
        purchases = []
        for i in range(30):  # customers v-00..v-29 buy; v-30 never does
            cid = f"v-{i:02d}"
            revenue[cid] = Decimal(0)
            for j in range(rng.randint(1, 8)):
                amount = Decimal(rng.randrange(2_000, 40_000)) / 100
                at = NOW - timedelta(days=rng.uniform(1, 200))
                purchases.append(envelope(0, event_id=f"buy-{i}-{j}", type="purchase.completed",
                                          occurred_at=at.isoformat(), customer={"id": cid},
                                          payload={"amount": str(amount), "currency": "EUR",
                                                   "order_id": f"o-{i}-{j}"}))
                revenue[cid] += amount
        assert (await ingestor.publish(purchases)).rejected == []
        await worker.projector.run(group=False, until_end=True)
        worker.writer.refresh_figures(NOW_MS)  # the RFM quintiles across the base
        segment = dict(db.all("SELECT customer_id, segment FROM customer_scores"))
        assert "champions" in segment.values()

        complaints = [envelope(i, event_id=f"c-{i}", occurred_at=NOW.isoformat(),
                               customer={"id": f"v-{i:02d}"}) for i in range(31)]
        assert (await ingestor.publish(complaints)).rejected == []
        await worker.projector.run(group=False, until_end=True)

        expected: dict[str, str] = {}
        for c in complaints:
            cid = c["customer"]["id"]
            seg, rev = segment.get(cid, "prospect"), revenue.get(cid, Decimal(0))
            want = "vip" if seg == "champions" else "big" if rev >= 1000 else "rest"
            case = api_cases.get(str(Case.id_for(c["event_id"])))
            shown = case_json(case, NOW)
            assert shown["policy"] == want, (cid, seg, rev)
            assert shown["customer_value"] == {"segment": seg, "lifetime_revenue": f"{rev:.2f}"}
            expected[shown["id"]] = seg
        assert {"vip", "big", "rest"} <= {api_cases.get(c).policy["name"] for c in expected}

        await relay_all(worker, api_cases)
        app = create_app(None, ReadStore(db), TokenTable({"agent": "tok"}))
        add_case_routes(app, api_cases, control, lambda: NOW)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            for seg in ("champions", "prospect", "lost"):
                resp = await client.get("/v1/cases", params={"segment": seg, "limit": 500},
                                        headers={"Authorization": "Bearer tok"})
                assert resp.status_code == 200, resp.text
                assert {c["id"] for c in resp.json()["items"]} == \
                    {k for k, s in expected.items() if s == seg}
    finally:
        api_cases.app.close()
        await worker.close()
