"""Request bodies: raw JSON for `POST /v1/events`, whose items are checked one by one, and
the base of every other body's model (``StorableBody``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, model_validator

from ...domain.storable import unstorable
from .errors import ApiError

JSON_TYPES = ("application/json",)  # and application/*+json


def check_json_type(content_type: str | None) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``application/*+json``)
    and, when a charset is named, UTF-8 (RFC 8259)."""
    mime, _, params = (content_type or "").partition(";")
    mime = mime.strip().lower()
    if not (mime in JSON_TYPES or (mime.startswith("application/") and mime.endswith("+json"))):
        raise ApiError(415, "unsupported_media_type",
                       "send JSON with Content-Type: application/json")
    for param in params.split(";"):
        name, _, charset = param.partition("=")
        if name.strip().lower() == "charset" and \
                charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(415, "unsupported_media_type", "JSON must be UTF-8 (RFC 8259)")


def parse_json(body: bytes) -> Any:
    """A body's JSON: 415 when it is not UTF-8 (json.loads would guess UTF-16 or 32), 400
    when it does not parse, nesting the parser cannot follow included."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(415, "unsupported_media_type",
                       f"body is not UTF-8 (RFC 8259): invalid byte at {exc.start}") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ApiError(400, "bad_json", "body is nested too deeply to read") from exc
    except ValueError as exc:
        raise ApiError(400, "bad_json", f"body is not JSON: {exc}") from exc


class StorableBody(BaseModel):
    """The base of a request body's model: a body holding what no store can keep (U+0000,
    a lone surrogate, NaN, nesting past 32 levels) breaks the model, so it is the route's
    422 in the envelope instead of a database error's 500."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        why = unstorable(data)
        if why is not None:
            raise ValueError(why.removeprefix("envelope: "))
        return data
