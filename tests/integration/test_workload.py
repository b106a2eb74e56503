"""The workload report (issue 14, item 6) over cases opened by complaints through the real
broker and case stage, moved by agents' commands, relayed to cases.v1 and projected back:
checked against what the test itself did to each case. "Today" is the report time zone's
day, which here began an hour before midnight UTC."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contactstream.adapters import bootstrap, kafka
from contactstream.adapters.auth import TokenTable
from contactstream.adapters.caseservice import CaseService, case_app
from contactstream.adapters.config import Settings
from contactstream.adapters.control import ControlStore, NewAlert
from contactstream.adapters.crmstore import CrmReports
from contactstream.adapters.figurestore import parse_rates
from contactstream.adapters.http import create_app
from contactstream.adapters.http_crm import Crm, add_crm_routes
from contactstream.adapters.ingest import Ingestor
from contactstream.adapters.journal import IngestJournal
from contactstream.adapters.privacy import privacy
from contactstream.adapters.readstore import ReadStore
from contactstream.domain.cases import Case
from tests.helpers import envelope
from tests.integration.crm_helpers import relay_all

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)  # 00:30 on 5 December in Budapest
TODAY = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)  # midnight in Budapest
TZ = "Europe/Budapest"
QUEUES = ["billing", "support", None]
AGENTS = ["ana", "bob", "cyd"]


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def now(self) -> datetime:
        return self.at


async def test_the_workload_report_matches_what_the_agents_did(settings: Settings) -> None:
    rng = random.Random(6)
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    worker = await bootstrap.worker_services(settings)
    db = worker.db
    clock = Clock()
    cases = CaseService(case_app(settings.database_url), ControlStore(db), now=clock.now)
    try:
        ingestor = Ingestor(settings, worker.producer, bootstrap.codec(settings, db),
                            IngestJournal(db), privacy(settings, db))
        opened: dict[str, datetime] = {}
        complaints = []
        for i in range(40):
            at = NOW - timedelta(hours=rng.uniform(2, 24 * 6))
            complaints.append(envelope(i, event_id=f"wl-{i}", occurred_at=at.isoformat(),
                                       customer={"id": f"w-{i % 25}"},
                                       channel=rng.choice(["web", "email", "voice"]),
                                       queue=QUEUES[i % 3]))
        assert (await ingestor.publish(complaints)).rejected == []
        await worker.projector.run(group=False, until_end=True)
        rows = db.all("SELECT case_id, queue, opened_ms FROM cases")  # none yet: not relayed
        assert rows == []
        ids = [str(Case.id_for(c["event_id"])) for c in complaints]
        for cid, c in zip(ids, complaints, strict=True):
            opened[cid] = datetime.fromisoformat(c["occurred_at"])

        # what each agent does, in time order per case, some before today began
        state: dict[str, dict[str, Any]] = {c: {"status": "open", "agent": None} for c in ids}
        today: Counter[tuple[str, str]] = Counter()
        for cid in ids:
            at = max(opened[cid] + timedelta(minutes=5),
                     rng.choice([TODAY - timedelta(minutes=10), TODAY + timedelta(minutes=10),
                                 NOW - timedelta(hours=30)]))
            steps = rng.choice([[], ["assign"], ["assign", "wait"], ["assign", "resolve"],
                                ["wait"], ["assign", "assign"]])
            for step in steps:
                clock.at = at
                agent = rng.choice(AGENTS)
                cases.command(cid, step, {"agent_id": agent})
                s = state[cid]
                if step == "assign":
                    s["agent"] = agent
                else:
                    s["status"] = "waiting" if step == "wait" else "resolved"
                if at >= TODAY:
                    if step == "assign":
                        today[(agent, "assigned_today")] += 1
                    elif step == "resolve" and s["agent"]:
                        today[(s["agent"], "resolved_today")] += 1
                at += timedelta(minutes=7)
        breached = set(rng.sample(ids, 12))
        control = ControlStore(db)
        for cid in sorted(breached):
            control.add_alert(NewAlert(id=f"sla.breached:{cid}", kind="sla.breached",
                                       at=NOW.isoformat(), level="critical", case_id=cid,
                                       metric="resolution", due_at=NOW.isoformat()))
        await relay_all(worker, cases)
        assert db.scalar("SELECT COUNT(*) FROM cases") == len(ids)

        queues: dict[Any, Counter[str]] = defaultdict(Counter)
        oldest: dict[Any, datetime] = {}
        agents: dict[str, Counter[str]] = defaultdict(Counter)
        queue_of = {cid: c["queue"] for cid, c in zip(ids, complaints, strict=True)}
        for cid, s in state.items():
            if s["status"] == "resolved":
                continue
            q = queue_of[cid]
            queues[q][s["status"]] += 1
            queues[q]["breached"] += cid in breached
            queues[q]["unassigned"] += s["agent"] is None
            oldest[q] = min(oldest.get(q, opened[cid]), opened[cid])
            if s["agent"]:
                agents[s["agent"]][s["status"]] += 1
                agents[s["agent"]]["breached"] += cid in breached
        for (agent, what), n in today.items():
            agents[agent][what] += n

        store = ReadStore(db)
        app = create_app(None, store, TokenTable({"supervisor": "tok-sup",
                                                   "agent": "tok-agent"}))
        add_crm_routes(app, Crm(CrmReports(db, control, "EUR", parse_rates("", "EUR"), TZ,
                                           clock=NOW.timestamp)))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as c:
            resp = await c.get("/v1/reports/workload",
                               headers={"Authorization": "Bearer tok-sup"})
            denied = await c.get("/v1/reports/workload",
                                 headers={"Authorization": "Bearer tok-agent"})
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
        assert resp.status_code == 200, resp.text
        got = resp.json()
        fields = ("open", "waiting", "breached", "unassigned")
        assert got["queues"] == [
            {"queue": q, **{f: queues[q][f] for f in fields},
             "oldest_open_s": int((NOW - oldest[q]).total_seconds())}
            for q in sorted(queues, key=lambda q: (q is None, q or ""))]
        fields = ("open", "waiting", "breached", "assigned_today", "resolved_today")
        assert got["agents"] == [{"agent_id": a, **{f: agents[a][f] for f in fields}}
                                 for a in sorted(agents)]
        assert got["day_start"] == "2026-12-05T00:00:00+01:00"
        assert sum(today.values()) > 0 and any(a["resolved_today"] for a in got["agents"])
        assert any(q["unassigned"] for q in got["queues"])
    finally:
        cases.app.close()
        await worker.close()
