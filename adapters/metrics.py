"""Figures of the worker that the API's /metrics shows: alerts by kind, webhook failures
and how far the alert relay is behind, read from the control store both processes share
(the worker serves no HTTP of its own)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .control import ControlStore
from .logging import get_logger

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
