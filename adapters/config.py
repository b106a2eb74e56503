"""Configuration: environment variables with working local defaults, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .database import check_url


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _env(name, default).lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything a contactstream process needs to know about its surroundings."""

    data_dir: Path = Path(".contactstream")
    # Empty means "the embedded default": start a local Tansu broker.
    bootstrap_servers: str = ""
    database_url: str = ""
    schema_registry_url: str = ""
    topic_prefix: str = "contactstream"
    partitions: int = 4
    replication_factor: int = 3  # for topics contactstream creates on a real cluster
    host: str = "127.0.0.1"
    port: int = 8080
    # the worker's /metrics (on ``host``); 0: none (`up` gives its worker a free port)
    metrics_port: int = 0
    log_format: str = "console"
    log_level: str = "info"
    default_region: str = "HU"
    max_batch: int = 1000
    max_body_bytes: int = 16 * 1024 * 1024
    # the embedded broker is restarted on a window of its log past this memory (0: never)
    broker_max_mb: int = 512
    # live alert streams (SSE) one token may hold open at once; one more is answered 429
    max_streams_per_token: int = 10
    consumer_group: str = ""  # default: PREFIX-projector
    # how long a fetch waits for records; 0: by broker (fetch_wait_ms)
    fetch_max_wait_ms: int = 0
    # base64 of 32 bytes; empty: a key file in the data dir (embedded default only)
    master_key: str = ""
    base_currency: str = "EUR"
    # extra or overriding fixed rates, "HUF=0.0025,USD=0.92" (base units per unit)
    fx_rates: str = ""
    # customers of the `up --demo` population (its history is about 67 events each)
    demo_customers: int = 400
    # the IANA time zone of the reports' calendar: what "today" is (the console's
    # wallboard, ?today=true, the workload report) and a month or quarter (cohorts)
    timezone: str = "UTC"
    extra: dict[str, str] = field(default_factory=dict)

    # the idempotent producer on an external cluster: "auto" asks for it and, when the
    # broker refuses (some Kafka-protocol brokers, e.g. Tansu, answer InitProducerId with
    # an error), goes on without it and says so; "on" requires it; "off" never asks
    kafka_idempotence: str = "auto"

    # True when the broker is our own memory-only Tansu: enables the local archive and
    # restore, and turns the idempotent producer off (Tansu cannot do it).
    embedded_broker: bool = False
    # True when the database is the private server `up` started in the data dir
    embedded_database: bool = False
    # where data keys live: "file" (forgetting store in the data dir) or "postgres";
    # empty: file for the embedded database, postgres for an external one
    key_store: str = ""
    # tokens: a JSON file a deployment provides (shared by API replicas); empty: the data
    # dir's tokens.json
    tokens_path: str = ""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def keys_db(self) -> Path:
        """The forgetting data-key store of the embedded default (adapters/keystore.py)."""
        return self.data_dir / "keys.sqlite"

    @property
    def tokens_file(self) -> Path:
        return Path(self.tokens_path) if self.tokens_path else self.data_dir / "tokens.json"

    def topic(self, name: str) -> str:
        """Full topic name: ``topic("interactions.v1") -> "contactstream.interactions.v1"``."""
        return f"{self.topic_prefix}.{name}"

    @property
    def interactions_topic(self) -> str:
        return self.topic("interactions.v1")

    @property
    def cases_topic(self) -> str:
        return self.topic("cases.v1")

    @property
    def alerts_topic(self) -> str:
        return self.topic("alerts.v1")

    @property
    def dlq_topic(self) -> str:
        return self.topic("interactions.dlq")

    @property
    def projector_group(self) -> str:
        return self.consumer_group or f"{self.topic_prefix}-projector"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"CONTACTSTREAM_TIMEZONE: {name!r} is not an IANA time zone"
                          " (such as Europe/Budapest)") from exc
    return name


def from_env(**overrides: object) -> Settings:
    """Read settings from the environment; explicit overrides (CLI flags) win."""
    database_url = _env("CONTACTSTREAM_DATABASE_URL", "")
    if database_url:
        check_url(database_url)
    settings = Settings(
        data_dir=Path(_env("CONTACTSTREAM_DATA_DIR", ".contactstream")),
        bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS", ""),
        database_url=database_url,
        schema_registry_url=_env("CONTACTSTREAM_SCHEMA_REGISTRY_URL", ""),
        topic_prefix=_env("CONTACTSTREAM_TOPIC_PREFIX", "contactstream"),
        partitions=int(_env("CONTACTSTREAM_PARTITIONS", "4")),
        replication_factor=int(_env("CONTACTSTREAM_REPLICATION_FACTOR", "3")),
        host=_env("CONTACTSTREAM_HOST", "127.0.0.1"),
        port=int(_env("CONTACTSTREAM_PORT", "8080")),
        metrics_port=int(_env("CONTACTSTREAM_METRICS_PORT", "0")),
        log_format=_env("CONTACTSTREAM_LOG_FORMAT", "console"),
        log_level=_env("CONTACTSTREAM_LOG_LEVEL", "info"),
        default_region=_env("CONTACTSTREAM_DEFAULT_REGION", "HU"),
        fetch_max_wait_ms=int(_env("CONTACTSTREAM_FETCH_MAX_WAIT_MS", "0")),
        embedded_broker=_env("CONTACTSTREAM_EMBEDDED_BROKER", "0") == "1",
        embedded_database=_env("CONTACTSTREAM_EMBEDDED_DATABASE", "0") == "1",
        key_store=_env("CONTACTSTREAM_KEY_STORE", ""),
        tokens_path=_env("CONTACTSTREAM_TOKENS_FILE", ""),
        base_currency=_env("CONTACTSTREAM_BASE_CURRENCY", "EUR").upper(),
        master_key=_env("CONTACTSTREAM_MASTER_KEY", ""),
        fx_rates=_env("CONTACTSTREAM_FX_RATES", ""),
        demo_customers=int(_env("CONTACTSTREAM_DEMO_CUSTOMERS", "400")),
        max_streams_per_token=int(_env("CONTACTSTREAM_MAX_STREAMS_PER_TOKEN", "10")),
        broker_max_mb=int(_env("CONTACTSTREAM_BROKER_MAX_MB", "512")),
        kafka_idempotence=_choice("CONTACTSTREAM_KAFKA_IDEMPOTENCE", "auto",
                                  ("auto", "on", "off")),
        timezone=check_timezone(_env("CONTACTSTREAM_TIMEZONE", "UTC")),
    )
    clean = {k: v for k, v in overrides.items() if v is not None}
    if "data_dir" in clean:
        clean["data_dir"] = Path(str(clean["data_dir"]))
    return replace(settings, **clean)  # type: ignore[arg-type]
