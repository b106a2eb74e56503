"""Issue 11 on a running `up --demo`, as a new user meets it: the README's examples
(parsed from README.md, not copied) all succeed on the demo's data as printed, and the
demo's desk works its backlog down (item 10),
Kafka tools with the README's settings (item 4), a minute of INFO log that stays small and
holds no personal data (item 7), and /metrics covering the worker, with every metric the
Grafana dashboard names exported (item 11)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contactstream.adapters.demo import _T, DemoPopulation
from tests.e2e.system import Up
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
# curl as the README runs it, but failing on an HTTP error; a live stream (-N) is cut
# after a few seconds, which is its success
CURL = r'''set -euo pipefail
curl() {
  local limit=30 rc=0
  for a in "$@"; do [ "$a" = -N ] && limit=3; done
  command curl --fail-with-body --max-time "$limit" "$@" || rc=$?
  echo
  if [ "$limit" = 3 ] && [ "$rc" = 28 ]; then return 0; fi
  return "$rc"
}
'''


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with Up(tmp_path_factory.mktemp("demo") / "data", "--demo").start() as system:
        system.ready_at = time.monotonic()  # type: ignore[attr-defined]
        loaded(system)
        yield system


def loaded(demo: Up) -> None:
    """The demo's history is projected: the customers and the merge the README uses (once,
    before any test: the README's examples erase c-0001 and undo that merge)."""
    def merged() -> bool:
        r = demo.get("/v1/customers/c-0002/identity", role="admin")
        return r.status_code == 200 and len(r.json()["members"]) > 1
    eventually(lambda: demo.get("/v1/customers/c-0001").status_code == 200, timeout=240,
               every=1)
    eventually(merged, timeout=120, every=1)


def readme_blocks() -> list[str]:
    """The README's shell examples a running system answers (not install or test)."""
    blocks = BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    return [b for b in blocks if "pip install" not in b and "pytest" not in b
            and ".ci/run" not in b]


def as_run_here(block: str, demo: Up) -> str:
    """The block for this `up`: its port and data dir instead of :8080 and .contactstream,
    and this interpreter's contactstream."""
    host = demo.url.removeprefix("http://")
    return (block.replace("localhost:8080", host).replace("127.0.0.1:8080", host)
            .replace(".contactstream/", f"{demo.data_dir}/")
            .replace(".venv/bin/contactstream", f"{sys.executable} -m contactstream.adapters.cli"))


def kcat_present() -> bool:
    if shutil.which("kcat"):
        return True
    if os.environ.get("CI") == "true":
        pytest.fail("kcat is missing (.ci/run installs Debian's kcat as root)")
    return False


def test_the_readme_examples_succeed_on_the_demo_as_printed(demo: Up) -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 4 and any("unmerge" in b for b in blocks)
    env = {**os.environ, "CONTACTSTREAM_DATA_DIR": str(demo.data_dir)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    ran = 0
    for block in blocks:
        if "kcat " in block and not kcat_present():
            continue
        done = subprocess.run(["bash", "-c", CURL + as_run_here(block, demo)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (block, done.stdout[-3000:], done.stderr[-3000:])
        ran += 1
        if "lookup?email=" in block:
            assert '{"id":"c-0001"}' in done.stdout, done.stdout[-2000:]
        if "/unmerge" in block:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            assert answer["status"] == "pending" and answer["survivor"] == "c-0002"
            path = f"/v1/identity/requests/{answer['request']}"
            eventually(lambda path=path: demo.get(path, role="admin").json().get("status")
                       == "done", timeout=60)
    assert ran >= len(blocks) - 1


def test_kcat_reads_a_topic_with_the_readme_settings(demo: Up) -> None:
    if not kcat_present():
        pytest.skip("kcat is not installed (apt-get install kcat)")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    flags = re.search(r"kcat -b \"\$KAFKA\" (-X \S+ -X \S+) -L", readme)
    assert flags is not None, "the README gives kcat's settings"
    kafka = json.loads((demo.data_dir / "up.json").read_text())["kafka"]
    done = subprocess.run(
        ["kcat", "-b", kafka, *flags.group(1).split(), "-C", "-t",
         "contactstream.interactions.v1", "-p", "0", "-o", "0", "-c", "5", "-e", "-f",
         "%o\n"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "2", "3", "4"], (done.stdout, done.stderr)


def personal_data() -> set[str]:
    """Every name, address, number and visitor id of the demo's population, and its texts."""
    found = set()
    for c in DemoPopulation(seed=7, customers=400).customers:
        found |= {c.name, c.email, c.phone, *c.visitor_ids}
    for texts in _T.values():
        for key in ("billing", "technical", "delivery", "service", "in", "out", "good", "bad"):
            found |= set(texts[key])
    return found


def records(demo: Up) -> list[dict[str, Any]]:
    return [json.loads(line) for line in demo.logs().splitlines() if line.startswith("{")]


def test_a_demo_minute_of_info_log_is_small_and_holds_no_personal_data(demo: Up) -> None:
    ready = next(r for r in records(demo) if r.get("event") == "up.ready")
    start = datetime.fromisoformat(ready["timestamp"])
    # a minute and a half after the banner: the first minute, and each process's
    # throughput line (once a minute) in it or just after
    time.sleep(max(0.0, demo.ready_at + 90 - time.monotonic()))  # type: ignore[attr-defined]
    logs = records(demo)
    after = [r for r in logs if datetime.fromisoformat(r["timestamp"]) >= start]
    minute = [r for r in after if r.get("level") == "info"
              and datetime.fromisoformat(r["timestamp"]) < start + timedelta(seconds=60)]
    # before issue 11 the demo wrote ~2,800 INFO lines in its first minute, ~385 a minute
    # after; now start, configuration and a throughput line a minute
    assert len(minute) <= 40, [r.get("event") for r in minute]
    events = {r.get("event") for r in after}
    assert {"worker.throughput", "api.throughput"} <= events, events
    text = demo.logs()
    leaked = sorted(p for p in personal_data() if p in text)
    assert not leaked, leaked[:5]


def test_metrics_cover_the_worker_and_the_dashboard_uses_only_exported_ones(
        demo: Up) -> None:
    text = eventually(lambda: (r := httpx.get(f"{demo.url}/metrics", timeout=10)).status_code
                      == 200 and "contactstream_projector_events_total" in r.text and r.text)
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), "a metric family is exported twice"
    value = {s.name: s.value for f in families for s in f.samples if not s.labels}
    assert value["contactstream_worker_scrape_up"] == 1
    assert value["contactstream_projector_events_total"] > 0
    # read at the scrape from the database: both relays, a number (a failed read is NaN)
    relay_lags = {s.labels["relay"]: s.value for f in families for s in f.samples
                  if s.name == "contactstream_outbox_lag"}
    assert set(relay_lags) == {"cases", "alerts"} and all(v >= 0 for v in relay_lags.values())
    exported = set(names) | {s.name for f in families for s in f.samples}
    exported |= {f"{f.name}_total" for f in families if f.type == "counter"}
    exported |= {f"{f.name}_{part}" for f in families if f.type == "histogram"
                 for part in ("bucket", "sum", "count")}
    for family in ("contactstream_projector_lag_records", "contactstream_projector_batch_seconds",
                   "contactstream_outbox_lag", "contactstream_sla_timers_armed",
                   "contactstream_webhook_deliveries", "contactstream_ingest_events"):
        assert family in exported, family
    # the worker serves the same on its own port (CONTACTSTREAM_METRICS_PORT)
    started = next(r for r in records(demo) if r.get("event") == "worker.started")
    own = httpx.get(started["metrics"], timeout=10).text
    assert "contactstream_projector_batch_seconds_bucket" in own
    assert "contactstream_ingest_events_total" not in own  # the API's, not the worker's
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    used = {m for panel in dashboard["panels"] for target in panel["targets"]
            for m in re.findall(r"contactstream_[a-z0-9_]+", target["expr"])}
    assert len(used) >= 10
    assert not used - exported, sorted(used - exported)


def test_the_demo_desk_works_its_cases_faster_than_they_open(demo: Up) -> None:
    def caught_up() -> bool:
        """The history published (its log line: before it, the worker may catch up with
        what was sent so far, as in one CI run under load) and read, and its cases on their
        topic and read back: interactions, the case relay and the cases topic all without
        lag at once."""
        if not any(r.get("event") == "demo.history_published" for r in records(demo)):
            return False
        text = httpx.get(f"{demo.url}/metrics", timeout=10).text
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        lags = {s.labels["topic"].rsplit(".", 2)[-2]: s.value for s in samples
                if s.name == "contactstream_projector_lag_records"}
        relay = [s.value for s in samples if s.name == "contactstream_outbox_lag"
                 and s.labels.get("relay") == "cases"]
        return lags.get("interactions") == 0 and lags.get("cases") == 0 and relay == [0]

    def backlog() -> int:
        report = demo.get("/v1/reports/service", role="supervisor", window_days=0).json()
        return sum(report["backlog"].values())

    eventually(caught_up, timeout=240, every=1)  # the history's cases are all open now
    before = backlog()
    time.sleep(30)
    assert backlog() < before
    resolved = demo.get("/v1/cases", status="resolved", limit=50).json()["items"]
    assert resolved and all(c["agent_id"] for c in resolved)
