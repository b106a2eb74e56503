"""Replay equals live after the demo (issue 8, item 5): `up --demo` with a short SLA policy
and agents working cases, then `contactstream replay` leaves every table of the database
(read model, case store, alert log, case stage memory, archive, offsets, sequences) and
the key store as they were, and the customer views answer the same over HTTP.

The demo never stops publishing and a stop of `up` does not wait for the worker to catch
up, so `up --demo` runs until the worker has caught up with the feed once, and a second
`up` without the demo works off what came in after; the state a replay must reproduce is
that settled one. The whole story runs once (a module fixture); the tests read it.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from contactstream.adapters.database import EmbeddedPostgres
from contactstream.adapters.demo import DemoPopulation
from tests.e2e.system import Up
from tests.helpers import Background, eventually

pytestmark = pytest.mark.e2e

# targets short enough that the timers warn and breach; urgent cases only (a tenth of the
# complaints): on every case of the demo the flood of alerts doubles the time the worker
# needs for the demo's history
POLICY = {"priority": ["urgent"], "first_response_s": 4, "resolution_s": 15, "warn_at": 0.5}
# what agents do to cases over HTTP, one script per case, round robin
SCRIPTS: tuple[tuple[tuple[str, dict[str, Any]], ...], ...] = (
    (("assign", {"agent_id": "agent-3"}), ("reply", {"agent_id": "agent-3", "text": "On it"}),
     ("resolve", {"resolution": "Refunded the double charge"})),
    (("reply", {"agent_id": "agent-5"}), ("wait", {})),
    (("assign", {"agent_id": "agent-8"}), ("resolve", {}), ("reopen", {})),
    (("assign", {"agent_id": "agent-1"}),),
)
# Blocks of the customer view that move with the wall clock: the satisfaction windows end
# now, RFM counts days to now, churn weighs recency and SLA breaches, which the timers of
# a restarted `up` may add. Each is a pure function of the tables compared below and of
# the instant of the request (adapters/insights.py has no stored `as_of` figures yet), so
# between two instants only the rest of the view must be equal.
CLOCK_BOUND = ("satisfaction_windows", "churn_risk")
CLOCK_BOUND_VALUE = ("segment", "rfm")
# Kept out of the comparison of every table and checked on their own below: the merge
# history (CustomerLink events), which a replay appends to, and the projector's offsets,
# which a live run may leave behind the records it projected.
MERGE_HISTORY = ("contactstream_identity_events",
                 "<sequence>contactstream_identity_events_notification_id_seq")
OFFSETS = ("offsets",)
# who held what, and in which order the identity rows were written (issue 9): bookkeeping
# of the processes that ran, not state; the rows' `seq` columns are left out below
OWNERSHIP = ("leases", "workers", "identity_epoch", "<sequence>identity_seq")

SETTLED = {
    # every accepted event projected: the projector's offset past each partition's last
    "unprojected_partitions": """
        SELECT COUNT(*) FROM (SELECT coalesce(j.topic, b.topic) AS topic, j.partition,
                                     MAX(j."offset") AS last
                              FROM ingest_journal j LEFT JOIN ingest_blocks b
                                   ON b.id = j.block GROUP BY 1, 2) j
        LEFT JOIN offsets o ON o.consumer = 'projector' AND o.topic = j.topic
                           AND o.partition = j.partition
        WHERE o.next_offset IS NULL OR o.next_offset <= j.last""",
    # every case event published by the case relay ...
    "unpublished_case_events": """
        SELECT COALESCE(MAX(notification_id), 0)
               - COALESCE((SELECT position FROM positions WHERE name = 'cases'), 0)
        FROM contactstream_cases_events""",
    # ... and back through cases.v1: a timeline row each, each case row at its version
    "case_events_not_in_timeline": """
        SELECT (SELECT COUNT(*) FROM contactstream_cases_events)
               - (SELECT COUNT(*) FROM timeline WHERE type LIKE 'case.%')""",
    "case_versions_not_projected": """
        SELECT COALESCE((SELECT SUM(v) FROM (SELECT MAX(originator_version) AS v
                         FROM contactstream_cases_events GROUP BY originator_id) s), 0)
               - COALESCE((SELECT SUM(version) FROM cases), 0)""",
    # every alert published by the alert relay
    "unpublished_alerts": """
        SELECT COALESCE(MAX(seq), 0)
               - COALESCE((SELECT position FROM positions WHERE name = 'alerts'), 0)
        FROM alerts""",
}


# a smaller demo than `up --demo`'s 400 customers keeps the test short; the same story
DEMO_CUSTOMERS = 120
DEMO_ENV = {"CONTACTSTREAM_DEMO_CUSTOMERS": str(DEMO_CUSTOMERS)}


@functools.cache
def _history_events() -> int:
    """How many events the demo publishes before its live feed (adapters/demo_feed.py)."""
    return sum(1 for _ in DemoPopulation(seed=7, customers=DEMO_CUSTOMERS).history(days=120))


def _lags(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot
        return {name: int(conn.execute(sql).fetchone()[0])  # type: ignore[index]
                for name, sql in SETTLED.items()}


def _settled(url: str) -> bool:
    return not any(_lags(url).values())


def _scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]  # type: ignore[index]


# -- what a user does ------------------------------------------------------------------

def _put_policy_as_soon_as_the_api_answers(up: Up, result: list[int]) -> None:
    """Before the worker opens a case, so that every urgent case of the demo takes it."""
    deadline = time.monotonic() + 60
    tokens = up.data_dir / "tokens.json"
    while time.monotonic() < deadline and not result:
        try:
            sup = json.loads(tokens.read_text())["supervisor"]
            result.append(httpx.put(f"{up.url}/v1/sla-policies/short", json=POLICY, timeout=5,
                                    headers={"Authorization": f"Bearer {sup}"}).status_code)
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            time.sleep(0.05)


def _new_cases(url: str, n: int) -> list[str]:
    """``n`` cases the worker has just opened, or none yet (the read model lags while the
    history comes in, so they are taken from the case store)."""
    with psycopg.connect(url) as conn:
        ids = [str(r[0]) for r in conn.execute(
            "SELECT originator_id FROM contactstream_cases_events GROUP BY originator_id"
            " HAVING MAX(originator_version) = 1 ORDER BY originator_id LIMIT %s", (n,))]
    return ids if len(ids) == n else []


def _work_cases(up: Up, case_ids: list[str]) -> list[tuple[str, str, int]]:
    """Each case's script over HTTP as an agent, while the worker's case stage moves the
    same cases; a concurrent change (409 conflict) is retried as the API asks."""
    done = []
    with up.client("agent") as agent:
        for i, case_id in enumerate(case_ids):
            for action, body in SCRIPTS[i % len(SCRIPTS)]:
                for _ in range(20):
                    resp = agent.post(f"/v1/cases/{case_id}/{action}", json=body)
                    if resp.status_code != 409 or resp.json()["error"]["code"] != "conflict":
                        break
                    time.sleep(0.1)
                done.append((case_id, action, resp.status_code))
    return done


def _sample_customers(url: str, worked: list[str]) -> list[str]:
    """Customers with the most merges, the owners of worked and of open cases, and a few
    publisher ids."""
    with psycopg.connect(url) as conn:
        merged = [r[0] for r in conn.execute(
            "SELECT survivor FROM customer_links GROUP BY survivor HAVING COUNT(*) > 1"
            " ORDER BY COUNT(*) DESC, survivor LIMIT 10")]
        owners = [r[0] for r in conn.execute(
            "SELECT customer_id FROM cases WHERE case_id = ANY(%s) ORDER BY case_id",
            (worked,))]
        open_ = [r[0] for r in conn.execute(
            "SELECT customer_id FROM cases WHERE status <> 'resolved'"
            " ORDER BY customer_id LIMIT 5")]
        ids = [r[0] for r in conn.execute(
            "SELECT value FROM identifiers WHERE kind = 'id' ORDER BY value LIMIT 5")]
    return list(dict.fromkeys(merged + owners + open_ + ids))


def _views(up: Up, customers: list[str], path: str = "", role: str = "agent",
           ) -> dict[str, dict[str, Any]]:
    out = {}
    with up.client(role) as client:
        for cid in customers:
            resp = client.get(f"/v1/customers/{cid}{path}")
            assert resp.status_code == 200, (cid, path, resp.text[:300])
            out[cid] = resp.json()
    return out


def _clock_free(view: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in view.items() if k not in CLOCK_BOUND}
    view["value"] = {k: v for k, v in view["value"].items() if k not in CLOCK_BOUND_VALUE}
    return view


# -- snapshots of a stopped system ------------------------------------------------------

Snapshot = dict[str, list[str]]


def _snapshot(data: Path) -> tuple[Snapshot, dict[str, int]]:
    """Every row of every table and every sequence's position, read through the data dir's
    own embedded server, every row of the key store; and the settledness lags."""
    out: Snapshot = {}
    # identifiers included as stored: each shows its earliest event's token, whatever
    # the arrival order (projections/timeline.py `displays`)
    with EmbeddedPostgres(data / "postgres") as pg:
        with psycopg.connect(pg.url) as conn:
            # the views too: those over the tables keyed by event id (migration 19) show
            # the ids as given
            tables = [t for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' UNION"
                " SELECT viewname FROM pg_views WHERE schemaname = 'public'")]
            for table in tables:
                out[table] = sorted(r[0] for r in conn.execute(
                    f'SELECT row_to_json(x)::text FROM "{table}" x'))
            for name, value in conn.execute(
                    "SELECT sequencename, last_value FROM pg_sequences"):
                out[f"<sequence>{name}"] = [str(value)]
        lags = _lags(pg.url)
    keys = sqlite3.connect(f"file:{data / 'keys.sqlite'}?mode=ro", uri=True)
    try:
        for (table,) in keys.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            out[f"keys.sqlite:{table}"] = sorted(
                repr(r) for r in keys.execute(f'SELECT * FROM "{table}"'))
    finally:
        keys.close()
    return out, lags


def _diff(before: Snapshot, after: Snapshot, limit: int = 3) -> str:
    lines = []
    for table in sorted(set(before) | set(after)):
        a = collections.Counter(before.get(table, ()))
        b = collections.Counter(after.get(table, ()))
        if a == b:
            continue
        gone, new = sorted((a - b).elements()), sorted((b - a).elements())
        lines.append(f"{table}: {sum(a.values())} rows before, {sum(b.values())} after;"
                     f" {len(gone)} only before, {len(new)} only after")
        lines += [f"  - {r[:300]}" for r in gone[:limit]]
        lines += [f"  + {r[:300]}" for r in new[:limit]]
    return "\n".join(lines)


def _without(snap: Snapshot, names: tuple[str, ...]) -> Snapshot:
    return {k: v for k, v in snap.items() if k not in names}


# -- the story, once ----------------------------------------------------------------------

@dataclass
class Story:
    live: Snapshot = field(default_factory=dict)
    replayed: Snapshot = field(default_factory=dict)
    lags: dict[str, int] = field(default_factory=dict)
    replay_out: str = ""
    worked: list[tuple[str, str, int]] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    views_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    views_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    identity_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    identity_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _run_the_demo(data: Path, story: Story) -> None:
    """`up --demo`, the policy put first, agents working cases as the worker opens them;
    stopped once the worker has caught up with the feed (the live feed goes on)."""
    up = Up(data, "--demo", env=DEMO_ENV)
    put: list[int] = []
    # a daemon: when `up` does not start, the start's failure is the test's, and the thread
    # gives up on its own
    putter = Background(_put_policy_as_soon_as_the_api_answers, up, put, daemon=True)
    putter.start()
    with up.start(timeout=90):
        putter.join(60)  # what the thread raised, raised here
        assert put == [200], f"policy PUT: {put}"
        url = up.database_url
        cases = eventually(lambda: _new_cases(url, 12), timeout=60)
        story.worked = _work_cases(up, cases)
        eventually(lambda: _scalar(url, "SELECT COUNT(*) FROM timeline WHERE type NOT LIKE"
                                   " 'case.%'") > _history_events() + 100, timeout=120, every=0.5)
        eventually(lambda: _lags(url)["unprojected_partitions"] == 0, timeout=30)


def _settle(data: Path, story: Story) -> None:
    """`up` without the demo until settled; the customer views as they are then."""
    with Up(data).start(timeout=90) as up:
        eventually(lambda: _settled(up.database_url), timeout=90, every=0.5)
        story.customers = _sample_customers(up.database_url,
                                            sorted({c for c, _, _ in story.worked}))
        story.views_before = _views(up, story.customers)
        story.identity_before = _views(up, story.customers, "/identity", "supervisor")


def _replay(data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.run([sys.executable, "-m", "contactstream.adapters.cli", "replay",
                           "--data-dir", str(data)], capture_output=True, text=True,
                          timeout=180, env=env)


def _restart(data: Path, story: Story) -> None:
    with Up(data).start(timeout=90) as up:
        story.views_after = _views(up, story.customers)
        story.identity_after = _views(up, story.customers, "/identity", "supervisor")


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    data = tmp_path_factory.mktemp("replay-demo") / "data"
    story = Story()
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        story.seconds[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    _run_the_demo(data, story)
    lap("up --demo")
    _settle(data, story)
    lap("up to settle")
    story.live, story.lags = _snapshot(data)
    lap("snapshot")
    run = _replay(data)
    assert run.returncode == 0, run.stderr[-3000:]
    story.replay_out = run.stdout
    lap("replay")
    story.replayed, _ = _snapshot(data)
    lap("snapshot")
    _restart(data, story)
    lap("up after the replay")
    yield story
    print(f"\nreplay-demo timings (s): {story.seconds}, total"
          f" {sum(story.seconds.values()):.1f}; {len(story.live['ingest_journal'])} events,"
          f" {len(story.live['contactstream_cases_events'])} case events,"
          f" {len(story.live['alerts'])} alerts")


# -- what must hold ---------------------------------------------------------------------

def test_the_run_holds_what_a_replay_must_reproduce(story: Story) -> None:
    """Settled when stopped, with cases, agents' commands, SLA warnings and breaches,
    escalations and merges."""
    assert not any(story.lags.values()), story.lags
    assert sum(code == 200 for _, _, code in story.worked) >= len(story.worked) // 2, \
        story.worked
    kinds = collections.Counter(json.loads(r)["kind"] for r in story.live["alerts"])
    assert kinds["sla.warning"] and kinds["sla.breached"], kinds
    assert any(k.startswith("escalation.") for k in kinds), kinds
    case_types = collections.Counter(
        row["type"] for row in map(json.loads, story.live["timeline"])
        if row["type"].startswith("case."))
    for typ in ("case.opened", "case.assigned", "case.first_response", "case.waiting",
                "case.resolved", "case.reopened"):
        assert case_types[typ], case_types
    links = [json.loads(r) for r in story.live["customer_links"]]
    assert sum(link["base"] != link["survivor"] for link in links) > 10, "few merges"
    assert len(story.live["ingest_journal"]) > _history_events() + 100  # live events too


def test_replay_projects_every_record_once(story: Story) -> None:
    events = len(story.live["ingest_journal"])
    records = events + len(story.live["contactstream_cases_events"])
    assert f"replayed {records} records: {events} events, 0 dead letters" in \
        story.replay_out, story.replay_out[-500:]


# figures that move with the clock are stored with the instant they were computed for; a
# replay computes them anew at its own instant, so the instants (and the refresh's read
# position in the alert log, which kept growing after the live run's last refresh) are
# left out, and so are the scores that are a function of the instant: the satisfaction
# windows, churn (its recency ratio, "52.2x the usual interval", moves by the seconds
# between the two runs) and RFM recency and segment. Their inputs — every aggregate table
# (customer_channels, customer_surveys, customer_revenue, case_owners, ...) — are compared
# whole, and the scoring is a pure function of inputs and instant (tests/unit
# test_scores.py, test_figures_refresh.py), so equal inputs give equal scores at one instant
CLOCK_COLUMNS = {"customer_scores": ("as_of", "rfm_as_of", "valid_until", "windows",
                                     "churn_score", "churn_factors", "recency_days", "segment",
                                     "r", "f", "m"),
                 "base_figures": ("as_of",),
                 "identity_edges": ("seq",), "identity_bases": ("seq",)}


def _clock_free_figures(snap: Snapshot) -> Snapshot:
    out = dict(snap)
    for table, columns in CLOCK_COLUMNS.items():
        rows = []
        for row in map(json.loads, snap.get(table, [])):
            if table == "base_figures" and row.get("name") == "alerts":
                continue
            for column in columns:
                row.pop(column, None)
            rows.append(json.dumps(row, sort_keys=True))
        out[table] = sorted(rows)
    return out


def test_replay_leaves_every_table_as_it_was(story: Story) -> None:
    live = _clock_free_figures(_without(story.live, MERGE_HISTORY + OFFSETS + OWNERSHIP))
    replayed = _clock_free_figures(_without(story.replayed,
                                            MERGE_HISTORY + OFFSETS + OWNERSHIP))
    assert replayed == live, "the replay changed the state:\n" + _diff(live, replayed)


def _log_ends(snap: Snapshot) -> dict[tuple[str, int], int]:
    """The next offset of every partition the projector reads, from what the broker is
    restored from (the ingest journal and the archive)."""
    ends: dict[tuple[str, int], int] = {}
    # a block's journal rows leave the topic to their block (migration 17)
    block_topic = {b["id"]: b["topic"] for b in map(json.loads, snap["ingest_blocks"])}
    for table in ("ingest_journal", "broker_archive"):
        for row in map(json.loads, snap[table]):
            topic = row["topic"] or block_topic[row["block"]]
            if topic.endswith((".interactions.v1", ".cases.v1")):
                key = (topic, row["partition"])
                ends[key] = max(ends.get(key, 0), row["offset"] + 1)
    return ends


def _offsets(snap: Snapshot) -> dict[tuple[str, int], int]:
    return {(r["topic"], r["partition"]): r["next_offset"]
            for r in map(json.loads, snap["offsets"]) if r["consumer"] == "projector"}


def test_replay_reads_every_partition_to_its_end(story: Story) -> None:
    assert _offsets(story.replayed) == _log_ends(story.live)


# a restart re-reads records from before the stored offset now and then (aiokafka fetches
# from the auto-reset position while the listener still awaits the stored offsets); the
# rows are idempotent and a stored offset never goes back (adapters/readstore.py)
def test_replay_rebuilds_the_offsets_the_live_run_stored(story: Story) -> None:
    assert _offsets(story.replayed) == _offsets(story.live)


def test_replay_appends_nothing_to_the_case_store_and_raises_no_alert(story: Story) -> None:
    for table in ("contactstream_cases_events", "<sequence>contactstream_cases_events"
                  "_notification_id_seq", "alerts", "<sequence>alerts_seq_seq", "case_routes",
                  "cases"):
        assert story.replayed[table] == story.live[table], _diff(
            {table: story.live[table]}, {table: story.replayed[table]})


def test_customer_views_answer_the_same_after_the_replay(story: Story) -> None:
    assert story.customers and set(story.views_after) == set(story.views_before)
    changed = {c: (_clock_free(story.views_before[c]), _clock_free(story.views_after[c]))
               for c in story.customers
               if _clock_free(story.views_before[c]) != _clock_free(story.views_after[c])}
    assert not changed, f"views differ after the replay: {list(changed.items())[:2]}"


def test_replay_records_no_merge_history(story: Story) -> None:
    live = {k: story.live[k] for k in MERGE_HISTORY}
    replayed = {k: story.replayed[k] for k in MERGE_HISTORY}
    assert replayed == live, "the replay added merge history:\n" + _diff(live, replayed)
    assert story.identity_after == story.identity_before


def test_every_alert_in_the_log_was_published(story: Story) -> None:
    """The alerts topic (restored from the archive) holds every alert of the log: an
    escalation added in the case stage's batch transaction while the SLA timers commit
    later seq numbers is not skipped by the relay (adapters/control.py add_alert takes
    turns until commit)."""
    published = {int(dict(row["headers"])["contactstream-seq"])
                 for row in map(json.loads, story.live["broker_archive"])
                 if row["topic"].endswith(".alerts.v1")}
    logged = {json.loads(r)["seq"]: json.loads(r)["kind"] for r in story.live["alerts"]}
    missing = collections.Counter(kind for seq, kind in logged.items() if seq not in published)
    assert not missing, f"{sum(missing.values())} of {len(logged)} alerts never published:" \
        f" {dict(missing)}"
