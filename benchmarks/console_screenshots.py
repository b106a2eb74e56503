"""The console on a real `up --demo` run: screenshots of the wallboard and of the agent
desk at a desktop size (docs/console-wallboard.png, docs/console-agent.png), and how
soon each live alert was on the wallboard after the API had it (its `at`), under the
demo's load. SLA policies are set once the demo's history is in, so that the live cases
have clocks (and some breach) while the history's cases do not all breach at once.

Run: python benchmarks/console_screenshots.py [--out docs] [--seconds 90]
(needs Debian's chromium and chromedriver, as the browser tests do)."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import chromium, left_loopback, requested_urls  # noqa: E402
from tests.e2e.system import Up  # noqa: E402

POLICIES = {
    "demo-urgent": {"priority": ["urgent", "high"], "first_response_s": 20,
                    "resolution_s": 600, "warn_at": 0.5},
    "demo-standard": {"first_response_s": 45, "resolution_s": 1800, "warn_at": 0.8},
}


def wait(check: Any, timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(every)
    raise TimeoutError("gave up waiting")


def desk_customer(up: Up) -> tuple[str, str]:
    """(kind, value) to look up: a customer with an open case with SLA clocks, a name in a
    right-to-left or Chinese script if one is at hand."""
    with up.client("supervisor") as sup:
        cases = sup.get("/v1/cases", params={"status": "open", "limit": 200}).json()["items"]
        best: tuple[int, str, str] | None = None
        for case in cases:
            if not case["policy"]:
                continue
            view = sup.get(f"/v1/customers/{case['customer_id']}").json()
            emails = view.get("identifiers", {}).get("email", [])
            if not emails:
                continue
            name = view.get("name") or ""
            rank = 0 if any("\u0600" <= ch <= "\u06ff" for ch in name) else 1
            if best is None or rank < best[0]:
                best = (rank, "email", emails[0])
            if rank == 0:
                break
    if best is None:
        raise RuntimeError("no open case with a policy and an e-mail yet")
    return best[1], best[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--seconds", type=float, default=90,
                        help="how long the live feed runs with the policies before the shots")
    args = parser.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp, \
            Up(Path(tmp) / "data", "--demo").start() as up:
        wait(lambda: "demo.history_published" in up.logs(), 600)
        with up.client("supervisor") as sup:
            for name, policy in POLICIES.items():
                sup.put(f"/v1/sla-policies/{name}", json=policy).raise_for_status()
        print(f"policies set; the live feed runs {args.seconds:.0f} s", flush=True)
        with chromium(1440, 900) as driver:
            driver.get(f"{up.url}/console#token={up.tokens['supervisor']}")
            time.sleep(args.seconds)
            rows = driver.execute_script(
                "return [...document.querySelectorAll('#alerts tr[data-alert-id]')]"
                ".map(r => [r.dataset.alertId, Number(r.dataset.shownAt), 'live' in r.dataset])")
            # between two alerts if there is such a moment (each is highlighted for 1 s)
            with suppress(TimeoutError):
                wait(lambda: driver.execute_script(
                    "return !document.querySelector('#alerts tr.fresh')"), 20, every=0.05)
            driver.save_screenshot(str(out / "console-wallboard.png"))
            with up.client("supervisor") as sup:
                alerts = {a["id"]: a for a in sup.get("/v1/alerts", params={"limit": 500}
                                                      ).json()["items"]}
            kind, value = desk_customer(up)
            driver.execute_script("document.getElementById('tab-agent').click()")
            driver.execute_script(
                "document.getElementById('agent-id').value = 'agent-7';"
                "document.getElementById('lookup-kind').value = arguments[0];"
                "document.getElementById('lookup-value').value = arguments[1];"
                "document.getElementById('lookup-form').requestSubmit()", kind, value)
            wait(lambda: driver.execute_script(
                "return document.querySelectorAll('#timeline li').length > 0"
                " && document.querySelectorAll('#cases .clocks').length > 0"), 30)
            time.sleep(1.5)
            driver.save_screenshot(str(out / "console-agent.png"))
            outside = left_loopback(requested_urls(driver))
    live = sorted(shown - datetime.fromisoformat(alerts[aid]["at"]).timestamp() * 1000
                  for aid, shown, is_live in rows if is_live and aid in alerts)
    print(f"screenshots: {out / 'console-wallboard.png'}, {out / 'console-agent.png'}")
    if live:
        print(f"alert to screen under the demo's load, {len(live)} live alerts: median"
              f" {statistics.median(live):.0f} ms, p90 {live[int(len(live) * 0.9)]:.0f} ms,"
              f" max {live[-1]:.0f} ms")
    print(f"requests off loopback: {len(outside)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
