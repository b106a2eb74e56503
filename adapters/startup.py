"""What a command says when it cannot start: a port in use, or a database, Kafka cluster or
schema registry it cannot reach or that refuses it, as one line saying what to do
(adapters/cli.py prints it; no traceback)."""

from __future__ import annotations

import os
import socket

import httpx
import psycopg
from aiokafka.errors import KafkaConnectionError

from .config import ConfigError
from .database import DatabaseError
from .datadir import DataDirBusy
from .kafka import IdempotenceRefused
from .ownership import ReplayRefused


class StartupError(RuntimeError):
    """A command cannot start; the message says what to do."""


def listen_socket(host: str, port: int, what: str = "the API",
                  hint: str = "give another --port (or CONTACTSTREAM_PORT)") -> socket.socket:
    """A socket bound to host:port, before anything else starts, so a port in use fails
    the command at once (uvicorn and the metrics server are handed the bound socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {host}:{port} for {what} ({reason}): is another"
                           f" contactstream or another server using it? Stop it, or {hint}"
                           ) from None
    return sock


def explain(exc: BaseException) -> str | None:
    """The one line for an error that keeps a command from starting; None for any other
    error (a bug: its traceback is worth more than a line)."""
    if isinstance(exc, (StartupError, DatabaseError, DataDirBusy, IdempotenceRefused,
                        ConfigError, ReplayRefused)):
        return str(exc)
    if isinstance(exc, psycopg.OperationalError):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return (f"cannot use the database ({first}): check CONTACTSTREAM_DATABASE_URL (host,"
                " port, user, password, database), or leave it empty for the embedded one")
    if isinstance(exc, KafkaConnectionError):
        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "the embedded broker"
        return (f"cannot reach Kafka at {servers}: check KAFKA_BOOTSTRAP_SERVERS"
                " (host:port,...) and that the cluster is up, or leave it empty for the"
                " embedded broker")
    if isinstance(exc, httpx.HTTPError) and os.environ.get("CONTACTSTREAM_SCHEMA_REGISTRY_URL"):
        detail = (f"HTTP {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError)
                  else type(exc).__name__)
        return (f"cannot use the schema registry ({detail}): check"
                " CONTACTSTREAM_SCHEMA_REGISTRY_URL, or leave it empty for the embedded one")
    return None
