"""The v1 interaction envelope (CONTRACT.md): channels, event types and their payloads,
and the validation every published event passes before it is accepted."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

CHANNELS: Final = ("voice", "email", "chat", "sms", "social", "web", "in_person")
DIRECTIONS: Final = ("inbound", "outbound")
OUTCOMES: Final = ("answered", "abandoned", "missed", "transferred")
PRIORITIES: Final = ("low", "normal", "high", "urgent")
# survey kind -> inclusive score range
SURVEY_SCALES: Final = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}
CUSTOMER_IDENTIFIERS: Final = ("id", "email", "phone", "visitor_id")
CUSTOMER_FIELDS: Final = (*CUSTOMER_IDENTIFIERS, "name")
MAX_EVENT_ID = 200


class Field(NamedTuple):
    """A payload field. kind: text (any string), str (non-empty string), enum, seconds
    (non-negative number), int, bool (JSON true/false only), decimal (non-negative decimal
    string), currency."""

    kind: str
    required: bool = True
    choices: tuple[str, ...] = ()


def _enum(choices: tuple[str, ...]) -> Field:
    return Field("enum", True, choices)


_OPT_TEXT = Field("text", False)

EVENT_TYPES: Final[dict[str, dict[str, Field]]] = {
    "call.started": {"direction": _enum(DIRECTIONS)},
    "call.ended": {"direction": _enum(DIRECTIONS), "outcome": _enum(OUTCOMES),
                   "duration_s": Field("seconds"), "wait_s": Field("seconds")},
    "email.received": {"subject": Field("text"), "body": _OPT_TEXT},
    "email.sent": {"subject": Field("text"), "body": _OPT_TEXT},
    "chat.message": {"direction": _enum(DIRECTIONS), "text": Field("text")},
    "web.visit": {"url": Field("str"), "referrer": _OPT_TEXT, "session_id": _OPT_TEXT,
                  "duration_s": Field("seconds", False)},
    "complaint.filed": {"category": Field("str"), "priority": _enum(PRIORITIES),
                        "description": Field("text")},
    "survey.answered": {"kind": _enum(tuple(SURVEY_SCALES)), "score": Field("int"),
                        "comment": _OPT_TEXT},
    "purchase.completed": {"amount": Field("decimal"), "currency": Field("currency"),
                           "order_id": Field("str")},
    # marketing (or other) consent for one channel; the envelope's channel says where the
    # answer was given, payload.channel which channel it is about
    "consent.changed": {"channel": _enum(CHANNELS), "granted": Field("bool"),
                        "purpose": Field("str")},
}

_TS_ERROR = "not an ISO 8601 timestamp with a UTC offset"


def parse_occurred_at(s: str) -> datetime:
    """An aware datetime from ISO 8601 with an offset ('Z' allowed); ValueError otherwise."""
    # fromisoformat (C, 3.11+) takes 'Z' and the extended forms; a naive result has no offset
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(_TS_ERROR)
    return dt


def _is_number(v: object) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v)  # type: ignore[arg-type]


def _check_field(name: str, f: Field, v: object) -> str | None:
    kind = f.kind
    if kind == "enum":
        if type(v) is not str or v not in f.choices:
            return f"payload.{name}: must be one of {', '.join(f.choices)}"
    elif kind == "text" or kind == "str":
        if type(v) is not str:
            return f"payload.{name}: must be a string"
        if kind == "str" and not v.strip():
            return f"payload.{name}: must not be empty"
    elif kind == "seconds":
        if not _is_number(v) or v < 0:  # type: ignore[operator]
            return f"payload.{name}: must be a non-negative number of seconds"
    elif kind == "int":
        if type(v) is not int:
            return f"payload.{name}: must be an integer"
    elif kind == "bool":
        if type(v) is not bool:
            return f"payload.{name}: must be true or false"
    elif kind == "decimal":
        return _check_amount(name, v)
    elif kind == "currency":
        if type(v) is not str or len(v) != 3 or not (v.isascii() and v.isalpha() and v.isupper()):
            return f"payload.{name}: must be an ISO 4217 code of 3 uppercase letters"
    return None


def _check_amount(name: str, v: object) -> str | None:
    # Decimal() tolerates surrounding spaces and underscores; other readers would not
    if type(v) is str and v and v == v.strip() and "_" not in v:
        try:
            d = Decimal(v)
        except InvalidOperation:
            d = None
        if d is not None and d.is_finite() and d >= 0:
            return None
    return f'payload.{name}: must be a non-negative decimal string like "12.50"'


def _check_payload(etype: str, payload: object, errors: list[str]) -> None:
    if type(payload) is not dict:
        errors.append("payload: must be an object")
        return
    for name, f in EVENT_TYPES[etype].items():
        v = payload.get(name)
        if v is None:
            if f.required:
                errors.append(f"payload.{name}: required")
        elif (err := _check_field(name, f, v)) is not None:
            errors.append(err)
    if etype == "survey.answered":
        kind, score = payload.get("kind"), payload.get("score")
        scale = SURVEY_SCALES.get(kind) if type(kind) is str else None
        if scale is not None and type(score) is int and not scale[0] <= score <= scale[1]:
            errors.append(f"payload.score: must be between {scale[0]} and {scale[1]} for {kind}")


def _check_customer(c: object, errors: list[str]) -> None:
    if type(c) is not dict:
        errors.append("customer: must be an object")
        return
    for key, v in c.items():
        if key not in CUSTOMER_FIELDS:
            errors.append(f"customer.{key}: unknown field (allowed: {', '.join(CUSTOMER_FIELDS)})")
        elif v is not None and type(v) is not str:
            errors.append(f"customer.{key}: must be a string")
    for k in CUSTOMER_IDENTIFIERS:
        v = c.get(k)
        if type(v) is str and v.strip():
            return
    errors.append("customer: needs at least one of id, email, phone, visitor_id")


def _check_str(obj: dict[str, Any], key: str, errors: list[str]) -> None:
    v = obj.get(key)
    if type(v) is str and v.strip():
        return
    if v is None:
        errors.append(f"{key}: required")
    elif type(v) is not str:
        errors.append(f"{key}: must be a string")
    else:
        errors.append(f"{key}: must not be empty")


def validate_envelope(obj: object) -> list[str]:
    """Why ``obj`` is not a valid v1 envelope; an empty list when it is.

    Extra payload keys are allowed: a fact is never rejected for carrying more detail.
    """
    if type(obj) is not dict:
        return ["envelope: must be a JSON object"]
    errors: list[str] = []
    _check_str(obj, "event_id", errors)
    eid = obj.get("event_id")
    if type(eid) is str and len(eid) > MAX_EVENT_ID:
        errors.append(f"event_id: longer than {MAX_EVENT_ID} characters")
    etype = obj.get("type")
    if etype is None:
        errors.append("type: required")
    elif type(etype) is not str or etype not in EVENT_TYPES:
        errors.append(f"type: unknown event type {etype!r}")
        etype = None
    at = obj.get("occurred_at")
    if at is None:
        errors.append("occurred_at: required")
    elif type(at) is not str or not _is_timestamp(at):
        errors.append(f"occurred_at: {_TS_ERROR}")
    _check_str(obj, "source", errors)
    if "customer" not in obj or obj["customer"] is None:
        errors.append("customer: required")
    else:
        _check_customer(obj["customer"], errors)
    channel = obj.get("channel")
    if channel is None:
        errors.append("channel: required")
    elif type(channel) is not str or channel not in CHANNELS:
        errors.append(f"channel: must be one of {', '.join(CHANNELS)}")
    for key in ("agent_id", "queue", "case_id"):
        v = obj.get(key)
        if v is not None and type(v) is not str:
            errors.append(f"{key}: must be a string or null")
    payload = obj.get("payload")
    if payload is None:
        errors.append("payload: required")
    elif etype is not None:
        _check_payload(etype, payload, errors)
    elif type(payload) is not dict:
        errors.append("payload: must be an object")
    if not errors and (where := _nul_in(obj, "")) is not None:
        # no store can keep it (PostgreSQL text and JSON refuse U+0000): rejected here,
        # with the field named, instead of failing a whole batch later
        errors.append(f"{where or 'envelope'}: contains a NUL character (U+0000)")
    return errors


def _nul_in(value: object, path: str) -> str | None:
    """The path of the first string (key or value) holding U+0000, else None."""
    if type(value) is str:
        return path if "\x00" in value else None
    if type(value) is dict:
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if "\x00" in str(k):
                return path or "envelope"
            if (found := _nul_in(v, here)) is not None:
                return found
    elif type(value) is list:
        for i, v in enumerate(value):
            if (found := _nul_in(v, f"{path}[{i}]")) is not None:
                return found
    return None


def _is_timestamp(s: str) -> bool:
    # a date alone, or a time without an offset, parses as naive and is rejected below
    if len(s) > 64 or len(s) < 16:
        return False
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return False
    return dt.tzinfo is not None
