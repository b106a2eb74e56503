"""How long a consumer's fetch waits for records: short on the embedded broker, which
answers a waiting fetch only when the wait ends; the configured value wins."""

from __future__ import annotations

from contactstream.adapters import kafka
from contactstream.adapters.config import Settings


def test_by_broker_when_not_configured() -> None:
    assert kafka.fetch_wait_ms(Settings(embedded_broker=True)) == kafka.EMBEDDED_FETCH_WAIT_MS
    assert kafka.fetch_wait_ms(Settings(embedded_broker=False)) == kafka.KAFKA_FETCH_WAIT_MS
    assert kafka.EMBEDDED_FETCH_WAIT_MS < kafka.KAFKA_FETCH_WAIT_MS


def test_the_configured_wait_wins() -> None:
    for embedded in (True, False):
        settings = Settings(embedded_broker=embedded, fetch_max_wait_ms=120)
        assert kafka.fetch_wait_ms(settings) == 120
