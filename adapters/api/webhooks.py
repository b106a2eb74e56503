"""Webhooks: alerts POSTed to a URL, signed with the webhook's secret. Put, list (without
secrets, with failure counts), delete."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ...domain.sla import ALERT_KINDS
from ..logging import get_logger
from .auth import role
from .bodies import StorableBody
from .context import ctx
from .errors import V1, ApiError, invalid_as, responses
from .paging import CURSOR, Page, offset_page, only_known_params

log = get_logger(__name__)
router = APIRouter(tags=["alerts"], dependencies=[Depends(only_known_params)])

AlertKind = Literal[ALERT_KINDS]  # type: ignore[valid-type]
NAME = Path(min_length=1, max_length=200, pattern=r"\S")


class WebhookIn(StorableBody):
    """`PUT /v1/webhooks/{name}`: `kinds` empty or left out means every kind."""
    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl
    secret: str = Field(min_length=1)
    kinds: list[AlertKind] | None = None


class Webhook(BaseModel):
    name: str
    url: str
    kinds: list[str]


class WebhookRow(Webhook):
    failures: int


def _public(name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "url": body.get("url"), "kinds": body.get("kinds") or []}


@router.put("/v1/webhooks/{name}", response_model=Webhook,
            summary="Register or replace a webhook", responses=responses(*V1))
@invalid_as("invalid_webhook")
async def put_webhook(body: WebhookIn, request: Request, name: str = NAME,
                      _: str = Depends(role("supervise"))) -> dict[str, Any]:
    # the URL as given (pydantic's form would add a trailing slash to a bare host)
    raw = await request.json()
    hook = {"url": raw["url"], "secret": body.secret,
            "kinds": list(dict.fromkeys(body.kinds or []))}
    await run_in_threadpool(ctx(request).need_control().put_webhook, name, hook)
    log.info("webhook.put", webhook=name, kinds=len(hook["kinds"]))
    return _public(name, hook)


@router.get("/v1/webhooks", response_model=Page[WebhookRow],
            summary="Webhooks (without their secrets), with failure counts",
            responses=responses(*V1))
def list_webhooks(request: Request, limit: int = Query(100, ge=1, le=1000),
                  cursor: str | None = CURSOR,
                  _: str = Depends(role("supervise"))) -> dict[str, Any]:
    control = ctx(request).need_control()
    failures = control.webhook_failures()
    rows = [{**_public(n, b), "failures": failures.get(n, 0)}
            for n, b in sorted(control.webhooks().items())]
    return offset_page(rows, limit, cursor)


@router.delete("/v1/webhooks/{name}", status_code=204, response_class=Response,
               summary="Delete a webhook: no more deliveries to it",
               responses=responses(*V1, 404))
def delete_webhook(request: Request, name: str = NAME,
                   _: str = Depends(role("supervise"))) -> Response:
    if not ctx(request).need_control().delete_webhook(name):
        raise ApiError(404, "not_found", "no such webhook")
    log.info("webhook.deleted", webhook=name)
    return Response(status_code=204)
