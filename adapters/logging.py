"""structlog set-up: readable on a terminal, JSON when asked. Never log personal data:
log event ids, types, counts and timings, not names, addresses, numbers or texts."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog


class HoldRepeats(logging.Filter):
    """A library's same message (logger and text template, e.g. aiokafka's "Unable connect
    to node ...", ~150 a second while a broker is down) at most once per ``window_s``; the
    next one after the window says how many were held back."""

    def __init__(self, window_s: float = 10.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self.last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        shown, held = self.last.get(key, (float("-inf"), 0))
        if now - shown < self.window_s:
            self.last[key] = (shown, held + 1)
            return False
        self.last[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [and {held} more like it in the last {self.window_s:g} s]"
        return True


def configure(fmt: str = "console", level: str = "info") -> None:
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # libraries (aiokafka, faust, uvicorn) log through the standard library: render their
    # records the same way, and only from WARNING up (they are chatty at INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(HoldRepeats())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=renderer, foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
