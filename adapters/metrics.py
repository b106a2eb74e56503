"""Metrics beside the HTTP layer's own: the control store's figures the API's /metrics
shows (alerts by kind, webhook failures, how far the alert relay is behind), and the
worker's (streams/telemetry.py): served by the worker on CONTACTSTREAM_METRICS_PORT and,
under `up`, shown in the API's /metrics too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

import httpx
import psycopg
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ..streams.sla import SlaScheduler
from ..streams.telemetry import TIMERS, WORKER, relay_lag
from .caseservice import CaseService
from .control import ControlStore
from .logging import get_logger
from .startup import StartupError

log = get_logger(__name__)


class ControlMetrics(Collector):
    def __init__(self) -> None:
        self.control: ControlStore | None = None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        if self.control is None:
            return
        try:
            families = list(self._families(self.control))
        except psycopg.Error as exc:  # the database restarting (or closed): the process's
            # own metrics are still served, these are left out of this scrape
            log.warning("metrics.control_unavailable", error=type(exc).__name__)
            return
        yield from families

    def _families(self, control: ControlStore,
                  ) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        alerts = CounterMetricFamily("contactstream_alerts", "Alerts raised", labels=["kind"])
        for kind, n in control.db.all("SELECT kind, COUNT(*) FROM alerts GROUP BY kind"
                                      " ORDER BY kind"):
            alerts.add_metric([kind], n)
        yield alerts
        failures = CounterMetricFamily("contactstream_webhook_failures",
                                       "Alerts a webhook gave up on", labels=["webhook"])
        for name, n in sorted(control.webhook_failures().items()):
            failures.add_metric([name], n)
        yield failures
        lag = GaugeMetricFamily("contactstream_alert_relay_lag",
                                "Alerts in the log not yet on the alerts topic")
        lag.add_metric([], control.last_alert_seq() - control.position("alerts"))
        yield lag


_collector = ControlMetrics()
REGISTRY.register(_collector)


def watch(control: ControlStore) -> None:
    _collector.control = control


class WorkerMetrics(Collector):
    """`up`'s worker's metrics (streams/telemetry.py), read from its own /metrics at each
    scrape of the API's, so one scrape of `up` covers both processes;
    ``contactstream_worker_scrape_up`` is 0 while the worker does not answer."""

    def __init__(self) -> None:
        self.url: str | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())  # what it yields depends on the worker: nothing to check up front

    def collect(self) -> Iterator[Metric]:
        if self.url is None:
            return
        up = GaugeMetricFamily("contactstream_worker_scrape_up",
                               "1 when `up`'s worker answered this scrape of its metrics")
        try:
            text = httpx.get(self.url, timeout=2).raise_for_status().text
            families = list(text_string_to_metric_families(text))
        except (httpx.HTTPError, ValueError) as exc:  # restarting: left out of this scrape
            log.warning("metrics.worker_unavailable", error=type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


_worker = WorkerMetrics()
REGISTRY.register(_worker)


def relay_worker(url: str) -> None:
    """Show the worker's metrics at ``url`` in this process's /metrics."""
    _worker.url = url


def ingest_totals() -> dict[str, float]:
    """What the API took so far, by outcome (its throughput line, runner.py)."""
    return {outcome: REGISTRY.get_sample_value("contactstream_ingest_events_total",
                                               {"outcome": outcome}) or 0.0
            for outcome in ("accepted", "duplicate", "rejected")}


def serve_worker_metrics(host: str, port: int) -> WSGIServer:
    """The worker's /metrics on host:port (CONTACTSTREAM_METRICS_PORT)."""
    try:
        server, _ = start_http_server(port, addr=host, registry=WORKER)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {host}:{port} for the worker's metrics ({exc.strerror or exc}):"
            " give another CONTACTSTREAM_METRICS_PORT, or 0 for none") from None
    return server


def watch_worker(scheduler: SlaScheduler | None, control: ControlStore,
                 cases: CaseService | None) -> None:
    """The worker's figures read at each scrape: timers armed and each relay's lag."""
    TIMERS.set_function(lambda: scheduler.armed if scheduler is not None else 0)
    relay_lag("alerts", lambda: control.last_alert_seq() - control.position("alerts"))
    if cases is not None:
        recorder: Any = cases.app.recorder
        relay_lag("cases", lambda: int(recorder.max_notification_id() or 0)
                  - control.position("cases"))
