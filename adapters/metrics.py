"""Figures of the worker that the API's /metrics shows: alerts by kind, webhook failures
and how far the alert relay is behind, read from the control store both processes share
(the worker serves no HTTP of its own)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .control import ControlStore


class ControlMetrics(Collector):
    def __init__(self) -> None:
        self.control: ControlStore | None = None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        if self.control is None:
            return
        alerts = CounterMetricFamily("contactstream_alerts", "Alerts raised", labels=["kind"])
        for kind, n in self.control.db.all("SELECT kind, COUNT(*) FROM alerts GROUP BY kind"
                                           " ORDER BY kind"):
            alerts.add_metric([kind], n)
        yield alerts
        failures = CounterMetricFamily("contactstream_webhook_failures",
                                       "Alerts a webhook gave up on", labels=["webhook"])
        for name, n in sorted(self.control.webhook_failures().items()):
            failures.add_metric([name], n)
        yield failures
        lag = GaugeMetricFamily("contactstream_alert_relay_lag",
                                "Alerts in the log not yet on the alerts topic")
        lag.add_metric([], self.control.last_alert_seq() - self.control.position("alerts"))
        yield lag


_collector = ControlMetrics()
REGISTRY.register(_collector)


def watch(control: ControlStore) -> None:
    _collector.control = control
