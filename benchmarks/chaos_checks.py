"""What the chaos run checks at its end, through the database of `up` and its HTTP API:
every acknowledged event projected once, under its customer, counted once in the figures;
every case event once; every alert once, in the log and on Kafka."""

from __future__ import annotations

import bisect
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg

from contactstream.adapters.eventstore import StateCompressor
from contactstream.adapters.figurestore import INTERACTIONS as INTERACTION_ROWS
from contactstream.domain.interactions import parse_occurred_at
from contactstream.streams.sla import REPEAT_COUNT, REPEAT_WINDOW

PREFIX = "contactstream"
INTERACTIONS, CASES, ALERTS = (f"{PREFIX}.{t}.v1" for t in ("interactions", "cases", "alerts"))


@dataclass
class Published:
    """What the publisher sent, and what a 202 acknowledged (accepted or duplicate)."""

    events: dict[str, dict[str, Any]]
    acked: set[str] = field(default_factory=set)

    def customers(self) -> Counter[str]:
        return Counter(self.events[e]["customer"]["id"] for e in self.acked)


@dataclass
class Findings:
    """Each check's violations: name -> (how many, which)."""

    figures: dict[str, Any] = field(default_factory=dict)
    violations: dict[str, tuple[int, list[str]]] = field(default_factory=dict)

    def add(self, name: str, bad: Iterable[str]) -> None:
        items = sorted(bad)
        self.violations[name] = (len(items), items)

    def count(self, *names: str) -> int:
        return sum(self.violations[n][0] for n in names if n in self.violations)

    @property
    def ok(self) -> bool:
        return all(n == 0 for n, _ in self.violations.values())


def expected_escalations(pub: Published) -> set[str]:
    """The alert ids the case stage must raise for the acknowledged events: a low survey
    answer, and a complaint with two others of its customer in the 30 days before it."""
    ids: set[str] = set()
    complaints: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for eid in pub.acked:
        e = pub.events[eid]
        if e["type"] == "survey.answered":
            kind, score = e["payload"]["kind"], e["payload"]["score"]
            if (kind == "csat" and score <= 2) or (kind == "nps" and score <= 6):
                ids.add(f"escalation.low_satisfaction:{eid}")
        elif e["type"] == "complaint.filed":
            ms = int(parse_occurred_at(e["occurred_at"]).timestamp() * 1000)
            complaints[e["customer"]["id"]].append((ms, eid))
    window = int(REPEAT_WINDOW.total_seconds() * 1000)
    for cid, seen in complaints.items():
        seen.sort()
        times = [ms for ms, _ in seen]
        for j, (ms, eid) in enumerate(seen):
            if j + 1 - bisect.bisect_right(times, ms - window) >= REPEAT_COUNT:
                ids.add(f"escalation.repeat_complaint:{cid}:{eid}")
    return ids


def progress(conn: psycopg.Connection[Any]) -> tuple[bool, tuple[Any, ...]]:
    """(caught up?, a snapshot that stops changing once everything is projected)."""
    def per_partition(sql: str, *args: Any) -> dict[int, int]:
        return {int(p): int(o) for p, o in conn.execute(sql, args).fetchall()}

    journal = per_partition('SELECT j.partition, max(j."offset") + 1 FROM ingest_journal j'
                            " LEFT JOIN ingest_blocks b ON b.id = j.block"
                            " WHERE coalesce(j.topic, b.topic)=%s GROUP BY 1", INTERACTIONS)
    cases_log = per_partition('SELECT partition, max("offset") + 1 FROM broker_archive'
                              " WHERE topic=%s GROUP BY partition", CASES)
    read = {t: per_partition("SELECT partition, next_offset FROM offsets"
                             " WHERE consumer='projector' AND topic=%s", t)
            for t in (INTERACTIONS, CASES)}
    positions = dict(conn.execute("SELECT name, position FROM positions").fetchall())
    last_case = conn.execute(
        "SELECT coalesce(max(notification_id), 0) FROM contactstream_cases_events").fetchone()
    last_alert = conn.execute("SELECT coalesce(max(seq), 0) FROM alerts").fetchone()
    assert last_case is not None and last_alert is not None
    done = (all(read[INTERACTIONS].get(p, 0) >= o for p, o in journal.items())
            and all(read[CASES].get(p, 0) >= o for p, o in cases_log.items())
            and positions.get("cases", 0) >= last_case[0]
            and positions.get("alerts", 0) >= last_alert[0])
    snapshot = (sorted(read[INTERACTIONS].items()), sorted(read[CASES].items()),
                sorted(positions.items()), last_case[0], last_alert[0])
    return done, snapshot


def wait_caught_up(url_of: Any, timeout: float, quiet_s: float = 5.0) -> float | None:
    """Seconds until the worker has projected everything journaled and both relays have
    published their logs, and nothing moved for ``quiet_s``; None after ``timeout``."""
    t0 = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with psycopg.connect(url_of(), connect_timeout=5) as conn:
                done, snap = progress(conn)
        except (psycopg.Error, RuntimeError):
            time.sleep(1)
            continue
        if snap != last:
            last, since = snap, time.monotonic()
        elif done and time.monotonic() - since >= quiet_s:
            return time.monotonic() - t0 - quiet_s
        time.sleep(0.5)
    return None


def check_database(conn: psycopg.Connection[Any], pub: Published, f: Findings) -> None:
    rows = conn.execute("SELECT event_id, customer_id FROM timeline"
                        " WHERE type NOT LIKE 'case.%%'").fetchall()
    found: dict[str, list[str]] = defaultdict(list)
    for eid, cid in rows:
        found[eid].append(cid)
    f.figures["timeline_interaction_rows"] = len(rows)
    f.add("lost", pub.acked - found.keys())
    f.add("doubled_timeline", (e for e, cs in found.items() if len(cs) > 1))
    f.add("not_acknowledged_in_timeline", found.keys() - pub.acked)
    f.add("wrong_customer", (e for e, cs in found.items() if e in pub.events
                             and set(cs) != {pub.events[e]["customer"]["id"]}))
    journaled = {e for (e,) in conn.execute("SELECT event_id FROM ingest_journal")}
    f.add("acknowledged_not_journaled", pub.acked - journaled)
    _check_figures(conn, pub, f)
    _check_cases(conn, pub, f)
    _check_alerts(conn, pub, f)


def _check_figures(conn: psycopg.Connection[Any], pub: Published, f: Findings) -> None:
    """The per-customer sums the worker keeps in the batch's transaction."""
    want = pub.customers()
    channels = dict(conn.execute("SELECT base, sum(interactions) FROM customer_channels"
                                 " GROUP BY base").fetchall())
    activity = dict(conn.execute("SELECT customer_id, count(*) FROM timeline"
                                 f" WHERE {INTERACTION_ROWS} GROUP BY customer_id", ()).fetchall())
    f.figures["customer_channels_sum"] = int(sum(channels.values()))
    f.figures["timeline_interaction_rows"] = int(sum(activity.values()))
    f.add("figures_channels_differ", (f"{c}: {channels.get(c, 0)} != {n}"
                                      for c, n in want.items() if channels.get(c, 0) != n))
    f.add("figures_activity_differ", (f"{c}: {activity.get(c, 0)} != {n}"
                                      for c, n in want.items() if activity.get(c, 0) != n))


def case_state(stored: bytes) -> dict[str, Any]:
    """A case event's state as the case store keeps it: compressed, or plain JSON if it was
    stored before compression (adapters/eventstore.py ``StateCompressor``)."""
    return dict(json.loads(StateCompressor().decompress(stored)))


def _check_cases(conn: psycopg.Connection[Any], pub: Published, f: Findings) -> None:
    """The case store, its relay to cases.v1 and the read model, each case event once."""
    stored = conn.execute("SELECT originator_id::text, originator_version, topic, state,"
                          " notification_id FROM contactstream_cases_events").fetchall()
    causes: Counter[tuple[str, str, str]] = Counter()
    cases_of: dict[str, set[str]] = defaultdict(set)
    version: dict[str, int] = {}
    for case, v, topic, state, _ in stored:
        body = case_state(bytes(state))
        cause = body.get("event_id") or body.get("opened_by_event_id")
        if cause:
            causes[(case, cause, topic.rsplit(".", 1)[-1])] += 1
            cases_of[cause].add(case)
        version[case] = max(version.get(case, 0), v)
    f.figures["cases"] = len(version)
    f.figures["case_events"] = len(stored)
    f.add("case_event_doubled", (f"{c}: {t} by {e} x{n}" for (c, e, t), n in causes.items()
                                 if n > 1))
    f.add("interaction_in_two_cases", (f"{e}: {sorted(cs)}" for e, cs in cases_of.items()
                                       if len(cs) > 1))
    f.add("case_cause_not_acknowledged", (e for e in cases_of if e not in pub.acked))
    read = dict(conn.execute("SELECT case_id, version FROM cases").fetchall())
    f.add("cases_read_model_differs", (f"{c}: {read.get(c)} != {v}" for c, v in version.items()
                                       if read.get(c) != v))
    f.add("cases_read_model_extra", read.keys() - version.keys())
    want = {f"case:{c}:{v}" for c, top in version.items() for v in range(1, top + 1)}
    rows = {e for (e,) in conn.execute("SELECT event_id FROM timeline WHERE type LIKE 'case.%%'")}
    f.add("case_event_lost_in_timeline", want - rows)
    f.add("case_event_extra_in_timeline", rows - want)
    _check_relayed(conn, CASES, {n for *_, n in stored}, "cases_v1", f)


def _check_alerts(conn: psycopg.Connection[Any], pub: Published, f: Findings) -> None:
    alerts = conn.execute("SELECT seq, id, kind FROM alerts").fetchall()
    ids = Counter(i for _, i, _ in alerts)
    f.figures["alerts"] = dict(Counter(k for *_, k in alerts))
    f.add("alert_id_doubled", (i for i, n in ids.items() if n > 1))
    want = expected_escalations(pub)
    have = {i for i in ids if i.startswith("escalation.")}
    f.add("escalation_missing", want - have)
    f.add("escalation_unexpected", have - want)
    _check_relayed(conn, ALERTS, {s for s, *_ in alerts}, "alerts_v1", f)


def _check_relayed(conn: psycopg.Connection[Any], topic: str, seqs: set[int], name: str,
                   f: Findings) -> None:
    """An outbox relay's topic (as archived) holds each log entry exactly once."""
    headers = conn.execute("SELECT headers FROM broker_archive WHERE topic=%s",
                           (topic,)).fetchall()
    published: Counter[int] = Counter()
    for (h,) in headers:
        published.update(int(v) for k, v in h if k == "contactstream-seq")
    f.figures[f"{name}_records"] = sum(published.values())
    f.add(f"{name}_doubled", (f"seq {s} x{n}" for s, n in published.items() if n > 1))
    f.add(f"{name}_missing", (f"seq {s}" for s in seqs - published.keys()))
    f.add(f"{name}_unknown", (f"seq {s}" for s in published.keys() - seqs))


def check_http(up: Any, pub: Published, f: Findings, timelines: int, threads: int = 4) -> None:
    """Every customer's view over the API counts what was published for it; a sample of
    timelines lists exactly its events."""
    want = pub.customers()
    customers = sorted(want)

    def view(cids: list[str]) -> list[tuple[str, int | None]]:
        with up.client("agent") as c:
            out = []
            for cid in cids:
                r = c.get(f"/v1/customers/{cid}")
                out.append((cid, r.json().get("interactions_total")
                            if r.status_code == 200 else None))
            return out

    with ThreadPoolExecutor(threads) as pool:
        got = dict(kv for part in pool.map(view, [customers[i::threads] for i in range(threads)])
                   for kv in part)
    f.figures["http_interactions_total_sum"] = sum(n or 0 for n in got.values())
    f.add("http_customer_total_differs", (f"{c}: {got.get(c)} != {n}" for c, n in want.items()
                                          if got.get(c) != n))
    by_customer: dict[str, set[str]] = defaultdict(set)
    for e in pub.acked:
        by_customer[pub.events[e]["customer"]["id"]].add(e)
    bad = []
    with up.client("agent") as c:
        for cid in customers[::max(1, len(customers) // max(timelines, 1))][:timelines]:
            ids: list[str] = []
            cursor = None
            while True:
                page = c.get(f"/v1/customers/{cid}/timeline", params={
                    "limit": 500, **({"before": cursor} if cursor else {})}).json()
                ids += [i["event_id"] for i in page.get("items", [])
                        if not i["type"].startswith("case.")]
                if not (cursor := page.get("next")):
                    break
            if len(ids) != len(set(ids)) or set(ids) != by_customer[cid]:
                bad.append(f"{cid}: {len(ids)} listed, {len(set(ids))} distinct,"
                           f" {len(by_customer[cid])} published")
    f.figures["http_timelines_checked"] = min(timelines, len(customers))
    f.add("http_timeline_differs", bad)
