"""The worker's metrics (Prometheus) and its throughput line in the log.

They live in a registry of their own, ``WORKER``: the worker serves it on
``CONTACTSTREAM_METRICS_PORT`` (adapters/worker.py) and `up`'s API shows it beside its
own metrics (adapters/metrics.py), so no name here may repeat one of the API's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

log = structlog.get_logger(__name__)

WORKER = CollectorRegistry(auto_describe=True)
ProcessCollector(namespace="contactstream_worker", registry=WORKER)

RECORDS = Counter("contactstream_projector_records", "Records the projector read, by topic",
                  ["topic"], registry=WORKER)
EVENTS = Counter("contactstream_projector_events", "Interactions the projector projected",
                 registry=WORKER)
DEAD_LETTERS = Counter("contactstream_projector_dead_letters",
                       "Records the projector sent to the dead-letter topic", registry=WORKER)
LAG = Gauge("contactstream_projector_lag_records",
            "Records on the topic past the projector's position, as of its last fetch",
            ["topic"], registry=WORKER)
BATCH_SECONDS = Histogram(
    "contactstream_projector_batch_seconds",
    "Time per batch: process (decode, identity, timeline, cases) and commit (the read"
    " store's transaction with the offsets)", ["stage"], registry=WORKER,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
PUBLISHED = Counter("contactstream_outbox_published",
                    "Records an outbox relay published to its topic", ["relay"],
                    registry=WORKER)
RELAY_LAG = Gauge("contactstream_outbox_lag",
                  "Entries of an outbox log (case events, alerts) not yet on their topic",
                  ["relay"], registry=WORKER)
TIMERS = Gauge("contactstream_sla_timers_armed", "Cases with an SLA timer armed",
               registry=WORKER)
DELIVERIES = Counter("contactstream_webhook_deliveries",
                     "Webhook delivery attempts by outcome (delivered, retried, failed)",
                     ["outcome"], registry=WORKER)

THROUGHPUT_EVERY_S = 60.0


def note_batch(batch: Mapping[Any, Sequence[Any]], events: int, dead: int,
               highwater: Callable[[Any], int | None], lags: dict[Any, int]) -> None:
    """Count one fetched batch; ``lags`` keeps each partition's last known lag."""
    for tp, records in batch.items():
        RECORDS.labels(tp.topic).inc(len(records))
        end = highwater(tp)
        if records and end is not None:
            lags[tp] = max(0, end - records[-1].offset - 1)
    EVENTS.inc(events)
    DEAD_LETTERS.inc(dead)
    for topic in {tp.topic for tp in lags}:
        LAG.labels(topic).set(sum(n for tp, n in lags.items() if tp.topic == topic))


def timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose every call is observed as ``stage`` of BATCH_SECONDS."""
    def call(*args: Any) -> Any:
        with BATCH_SECONDS.labels(stage).time():
            return fn(*args)
    return call


def relay_lag(name: str, lag: Callable[[], int]) -> None:
    """The lag of relay ``name``, read at each scrape (a failing read shows as NaN)."""
    def read() -> float:
        try:
            return float(lag())
        except Exception:  # noqa: BLE001 - a scrape never fails for one figure
            return float("nan")
    RELAY_LAG.labels(name).set_function(read)


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    return WORKER.get_sample_value(name, labels or {}) or 0.0


def _totals() -> dict[str, float]:
    return {"events": _value("contactstream_projector_events_total"),
            "dead_letters": _value("contactstream_projector_dead_letters_total"),
            "cases_published": _value("contactstream_outbox_published_total",
                                      {"relay": "cases"}),
            "alerts_published": _value("contactstream_outbox_published_total",
                                       {"relay": "alerts"}),
            "webhooks_delivered": _value("contactstream_webhook_deliveries_total",
                                         {"outcome": "delivered"}),
            "webhooks_failed": _value("contactstream_webhook_deliveries_total",
                                      {"outcome": "failed"})}


async def log_throughput(stop: asyncio.Event, every_s: float = THROUGHPUT_EVERY_S,
                         event: str = "worker.throughput",
                         totals: Callable[[], dict[str, float]] = _totals,
                         rate_of: str = "events") -> None:
    """One INFO line every ``every_s`` while anything moved: what the process did in that
    time, the differences of ``totals`` (the per-event lines are DEBUG)."""
    last, since = totals(), time.monotonic()
    while not stop.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        now, current = time.monotonic(), totals()
        moved = {k: int(v - last.get(k, 0.0)) for k, v in current.items()}
        if any(moved.values()):
            log.info(event, seconds=round(now - since),
                     **{f"{rate_of}_per_s": round(moved[rate_of] / max(now - since, 1e-9), 1)},
                     **moved, **(_worker_state() if event == "worker.throughput" else {}))
        last, since = current, now


def _worker_state() -> dict[str, Any]:
    return {"lag": {s.labels["topic"]: int(s.value) for m in LAG.collect() for s in m.samples},
            "timers_armed": int(_value("contactstream_sla_timers_armed"))}
