"""Webhook delivery: alerts from the control store's alert log POSTed, signed, with retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from .ports import Deliveries
from .telemetry import DELIVERIES

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Contactstream-Signature"
ALERT_ID_HEADER = "X-Contactstream-Alert-Id"
ALERT_FIELDS = ("id", "kind", "case_id", "customer_id", "metric", "due_at", "at", "level",
                "seq")
BATCH = 100
RELOAD_S = 1.0


def alert_json(row: dict[str, Any]) -> dict[str, Any]:
    """An alert as the API (and a webhook body) shows it, from a ControlStore.alerts row."""
    out = {k: row.get(k) for k in ALERT_FIELDS}
    out["queue"] = alert_queue(row)
    out["detail"] = row.get("detail") or {}
    return out


def alert_queue(row: dict[str, Any]) -> str | None:
    """The queue an alert is about (its case's, or the survey's): kept in ``detail`` since
    the first alerts, so alerts logged before the field existed have it too."""
    return (row.get("detail") or {}).get("queue") or None


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode_body(alert: dict[str, Any]) -> bytes:
    return json.dumps(alert, ensure_ascii=False, separators=(",", ":")).encode()


class _GiveUp(Exception):
    pass


class WebhookDispatcher:
    """Delivers every alert after each webhook's position, in seq order, at least once.

    One task per webhook, so a slow or failing receiver never holds up the others. The
    position advances after an alert is delivered, skipped (a kind the webhook does not
    subscribe to) or given up on (recorded in `webhook_failures`); a stop in the middle of
    retries leaves it, and the alert goes again after a restart (receivers dedupe on
    `X-Contactstream-Alert-Id`).
    """

    def __init__(self, control: Deliveries, *, client: httpx.AsyncClient | None = None,
                 retries: int = 6, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 timeout_s: float = 10.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.control = control
        self.client = client
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.now = now
        self._hooks: dict[str, dict[str, Any]] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- waking ------------------------------------------------------------------------------
    def notify(self) -> None:
        """An alert was appended: deliver now rather than at the next check. Safe to call
        from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake_all()
        else:
            with suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for ev in self._wakers.values():
            ev.set()

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        own_client = self.client is None
        client = self.client or httpx.AsyncClient(timeout=self.timeout_s)
        tasks: dict[str, asyncio.Task[None]] = {}
        try:
            while not stop.is_set():
                try:
                    self._hooks = await asyncio.to_thread(self.control.webhooks)
                except Exception as exc:  # a locked or busy database: try again shortly
                    log.warning("webhook.reload_failed", error=type(exc).__name__)
                for name in self._hooks:
                    if name in tasks and tasks[name].done():
                        failed = tasks.pop(name)
                        if not failed.cancelled() and failed.exception() is not None:
                            log.error("webhook.task_failed", webhook=name,
                                      error=repr(failed.exception()))
                    if name not in tasks:
                        self._wakers[name] = asyncio.Event()
                        tasks[name] = asyncio.create_task(self._serve(name, client, stop),
                                                          name=f"webhook:{name}")
                for name in [n for n in tasks if n not in self._hooks]:
                    tasks.pop(name).cancel()
                    self._wakers.pop(name, None)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RELOAD_S)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            if own_client:
                await client.aclose()

    async def _serve(self, name: str, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        key = f"webhook:{name}"
        wake = self._wakers[name]
        while not stop.is_set():
            wake.clear()
            try:
                position = await asyncio.to_thread(self.control.position, key)
                batch = await asyncio.to_thread(self.control.alerts, after=position,
                                                limit=BATCH)
            except Exception as exc:
                log.warning("webhook.read_failed", webhook=name, error=type(exc).__name__)
                batch = []
            for row in batch:
                hook = self._hooks.get(name)
                if hook is None or stop.is_set():
                    return
                kinds = hook.get("kinds") or []
                if not kinds or row["kind"] in kinds:
                    delivered = await self._deliver(name, hook, row, client, stop)
                    if delivered is None:
                        return  # stopped mid-retry: the alert goes again after a restart
                await asyncio.to_thread(self.control.advance, key, row["seq"])
            if len(batch) < BATCH:
                with suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), RELOAD_S)

    async def _deliver(self, name: str, hook: dict[str, Any], row: dict[str, Any],
                       client: httpx.AsyncClient, stop: asyncio.Event) -> bool | None:
        """True when delivered, False when given up on, None when stopped first."""
        body = encode_body(alert_json(row))
        headers = {"Content-Type": "application/json", ALERT_ID_HEADER: str(row["id"]),
                   SIGNATURE_HEADER: sign(str(hook["secret"]), body),
                   "User-Agent": "contactstream-webhooks/1"}
        error = ""
        attempts = 0
        for attempt in range(self.retries + 1):
            attempts = attempt + 1
            wait = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
            started = time.monotonic()
            try:
                resp = await client.post(hook["url"], content=body, headers=headers,
                                         timeout=self.timeout_s)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}"
            else:
                if 200 <= resp.status_code < 300:
                    DELIVERIES.labels("delivered").inc()
                    log.debug("webhook.delivered", webhook=name, alert_id=row["id"],
                              seq=row["seq"], attempts=attempts,
                              ms=round((time.monotonic() - started) * 1000, 1))
                    return True
                error = f"HTTP {resp.status_code}"
                if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                    break  # the receiver refuses it: retrying will not help
                wait = min(self.max_backoff_s, max(wait, _retry_after(resp)))
            if attempt == self.retries:
                break
            DELIVERIES.labels("retried").inc()
            log.info("webhook.retry", webhook=name, alert_id=row["id"], seq=row["seq"],
                     attempt=attempts, error=error, backoff_s=round(wait, 3))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                return None
        DELIVERIES.labels("failed").inc()
        log.warning("webhook.failed", webhook=name, alert_id=row["id"], seq=row["seq"],
                    attempts=attempts, error=error)
        await asyncio.to_thread(self.control.record_webhook_failure, name, row["seq"],
                                f"{error} after {attempts} attempt(s)",
                                self.now().isoformat())
        return False


def _retry_after(resp: httpx.Response) -> float:
    """Seconds from a Retry-After header given in seconds; 0 when absent or a date."""
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0
