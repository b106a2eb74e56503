"""The v1 interaction envelope (CONTRACT.md): channels, event types and their payloads,
and the validation every published event passes before it is accepted.

Two sets of rules. ``screen_envelope`` (and ``validate_envelope``) is what ingest asks of
a publisher: the record rules, plus lengths, identifier syntax, ISO 4217 currencies and
the amount range. ``validate_record`` is what the stream worker asks of a record on the
log: what the projections need and the stores can keep; records that older releases
accepted stay readable on replay.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

from .contacts import MAX_EMAIL, MAX_PHONE, customer_id_problem, email_problem, phone_syntax_ok
from .currencies import is_currency
from .storable import MAX_DEPTH, echo, echo_repr, unstorable

CHANNELS: Final = ("voice", "email", "chat", "sms", "social", "web", "in_person")
DIRECTIONS: Final = ("inbound", "outbound")
OUTCOMES: Final = ("answered", "abandoned", "missed", "transferred")
PRIORITIES: Final = ("low", "normal", "high", "urgent")
# survey kind -> inclusive score range
SURVEY_SCALES: Final = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}
CUSTOMER_IDENTIFIERS: Final = ("id", "email", "phone", "visitor_id")
CUSTOMER_FIELDS: Final = (*CUSTOMER_IDENTIFIERS, "name")
MAX_EVENT_ID = 200
# characters, per field (CONTRACT.md "Limits"); free text (subject aside) has none of its
# own, only the size of the whole record on Kafka (adapters/kafka.py)
MAX_ID: Final = 200  # source, customer.id, visitor_id, agent_id, queue, case_id
MAX_NAME: Final = 300
MAX_SHORT: Final = 200  # payload fields of kind str (category, order_id, purpose) and ids
MAX_URL: Final = 4096
MAX_SUBJECT: Final = 1000
MAX_PAYLOAD_KEY: Final = 64
MAX_PAYLOAD_KEYS: Final = 100
CUSTOMER_LIMITS: Final = {"id": MAX_ID, "email": MAX_EMAIL, "phone": MAX_PHONE,
                          "visitor_id": MAX_ID, "name": MAX_NAME}
# amounts: plain decimal notation, 0 <= amount < 10^12, at most 4 decimals
MAX_AMOUNT: Final = Decimal(10) ** 12
AMOUNT_DECIMALS: Final = 4
_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class Field(NamedTuple):
    """A payload field. kind: text (any string), str (non-empty string), enum, seconds
    (non-negative number), int, bool (JSON true/false only), decimal (non-negative decimal
    string), currency."""

    kind: str
    required: bool = True
    choices: tuple[str, ...] = ()
    limit: int | None = None  # characters; None: only the record's size limits it


def _enum(choices: tuple[str, ...]) -> Field:
    return Field("enum", True, choices)


_OPT_TEXT = Field("text", False)
_SHORT = Field("str", limit=MAX_SHORT)

EVENT_TYPES: Final[dict[str, dict[str, Field]]] = {
    "call.started": {"direction": _enum(DIRECTIONS)},
    "call.ended": {"direction": _enum(DIRECTIONS), "outcome": _enum(OUTCOMES),
                   "duration_s": Field("seconds"), "wait_s": Field("seconds")},
    "email.received": {"subject": Field("text", limit=MAX_SUBJECT), "body": _OPT_TEXT},
    "email.sent": {"subject": Field("text", limit=MAX_SUBJECT), "body": _OPT_TEXT},
    "chat.message": {"direction": _enum(DIRECTIONS), "text": Field("text")},
    "web.visit": {"url": Field("str", limit=MAX_URL),
                  "referrer": Field("text", False, limit=MAX_URL),
                  "session_id": Field("text", False, limit=MAX_SHORT),
                  "duration_s": Field("seconds", False)},
    "complaint.filed": {"category": _SHORT, "priority": _enum(PRIORITIES),
                        "description": Field("text")},
    "survey.answered": {"kind": _enum(tuple(SURVEY_SCALES)), "score": Field("int"),
                        "comment": _OPT_TEXT},
    "purchase.completed": {"amount": Field("decimal"), "currency": Field("currency"),
                           "order_id": _SHORT},
    # marketing (or other) consent for one channel; the envelope's channel says where the
    # answer was given, payload.channel which channel it is about
    "consent.changed": {"channel": _enum(CHANNELS), "granted": Field("bool"),
                        "purpose": _SHORT},
}

_TS_ERROR = "not an ISO 8601 timestamp with a UTC offset"
_AMOUNT_ERROR = (f'must be a decimal string like "12.50": at least 0, less than {MAX_AMOUNT:,}'
                 f", at most {AMOUNT_DECIMALS} decimals, no sign or exponent")

PhoneCheck = Callable[[str], bool]


class Screened(NamedTuple):
    """A publisher's envelope screened: why it is refused (``errors``), or the envelope to
    publish — bad identifiers dropped when a valid one remains, each named in
    ``warnings``."""

    errors: list[str]
    warnings: list[str]
    envelope: dict[str, Any] | None


def parse_occurred_at(s: str) -> datetime:
    """An aware datetime from ISO 8601 with an offset ('Z' allowed); ValueError otherwise."""
    # fromisoformat (C, 3.11+) takes 'Z' and the extended forms; a naive result has no offset
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(_TS_ERROR)
    return dt


def amount_value(v: object) -> Decimal | None:
    """What a purchase's amount counts for: a decimal string of a finite amount, at least 0
    and less than ``MAX_AMOUNT``; None for anything else (the figures skip such a row)."""
    if type(v) is not str or v != v.strip() or "_" in v:
        return None  # Decimal() tolerates spaces and underscores; other readers would not
    try:
        d = Decimal(v)
    except InvalidOperation:
        return None
    if not d.is_finite() or d.is_signed() or d >= MAX_AMOUNT:
        return None
    return d


def _is_number(v: object) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v)  # type: ignore[arg-type]


def _check_field(name: str, f: Field, v: object, publishing: bool) -> str | None:
    kind = f.kind
    if kind == "enum":
        if type(v) is not str or v not in f.choices:
            return f"payload.{name}: must be one of {', '.join(f.choices)}"
    elif kind == "text" or kind == "str":
        if type(v) is not str:
            return f"payload.{name}: must be a string"
        if kind == "str" and not v.strip():
            return f"payload.{name}: must not be empty"
        if publishing and f.limit is not None and len(v) > f.limit:
            return f"payload.{name}: longer than {f.limit} characters"
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
        if publishing and not _publishable_amount(v):
            return f"payload.{name}: {_AMOUNT_ERROR}"
        if not publishing and not _old_amount_ok(v):
            return f'payload.{name}: must be a non-negative decimal string like "12.50"'
    elif kind == "currency":
        if publishing and not is_currency(v):
            return f"payload.{name}: must be an ISO 4217 currency code, like EUR"
        if type(v) is not str or len(v) != 3 or not (v.isascii() and v.isalpha() and v.isupper()):
            return f"payload.{name}: must be an ISO 4217 code of 3 uppercase letters"
    return None


def _publishable_amount(v: object) -> bool:
    return (type(v) is str and len(v) <= 32 and _AMOUNT.fullmatch(v) is not None
            and len(v.partition(".")[2]) <= AMOUNT_DECIMALS and amount_value(v) is not None)


def _old_amount_ok(v: object) -> bool:
    """The amount rule of the releases before issue 10: records they accepted stay valid
    on the log (the figures count only ``amount_value``'s range)."""
    if type(v) is str and v and v == v.strip() and "_" not in v:
        try:
            d = Decimal(v)
        except InvalidOperation:
            return False
        return d.is_finite() and d >= 0
    return False


def _check_payload(etype: str, payload: object, errors: list[str], publishing: bool) -> None:
    if type(payload) is not dict:
        errors.append("payload: must be an object")
        return
    for name, f in EVENT_TYPES[etype].items():
        v = payload.get(name)
        if v is None:
            if f.required:
                errors.append(f"payload.{name}: required")
        elif (err := _check_field(name, f, v, publishing)) is not None:
            errors.append(err)
    if etype == "survey.answered":
        kind, score = payload.get("kind"), payload.get("score")
        scale = SURVEY_SCALES.get(kind) if type(kind) is str else None
        if scale is not None and type(score) is int and not scale[0] <= score <= scale[1]:
            errors.append(f"payload.score: must be between {scale[0]} and {scale[1]} for {kind}")
    if publishing:
        if len(payload) > MAX_PAYLOAD_KEYS:
            errors.append(f"payload: more than {MAX_PAYLOAD_KEYS} keys")
        long = next((k for k in payload if len(k) > MAX_PAYLOAD_KEY), None)
        if long is not None:
            errors.append(f"payload: key {echo_repr(long)} longer than {MAX_PAYLOAD_KEY}"
                          " characters")


def _check_customer(c: object, errors: list[str], warnings: list[str], publishing: bool,
                    phone_ok: PhoneCheck) -> dict[str, Any] | None:
    """The customer to publish (bad identifiers dropped while a good one remains)."""
    if type(c) is not dict:
        errors.append("customer: must be an object")
        return None
    for key, v in c.items():
        if key not in CUSTOMER_FIELDS:
            errors.append(f"customer.{echo(key)}: unknown field (allowed:"
                          f" {', '.join(CUSTOMER_FIELDS)})")
        elif v is not None and type(v) is not str:
            errors.append(f"customer.{key}: must be a string")
    kept = dict(c)
    dropped: list[str] = []
    if publishing:
        for key in CUSTOMER_FIELDS:
            v = c.get(key)
            if type(v) is not str or (key != "name" and not v.strip()):
                continue
            why = _customer_field_problem(key, v, phone_ok)
            if why is None:
                continue
            if key in ("id", "name"):
                errors.append(f"customer.{key}: {why}")
            else:  # a weak identifier: the fact is kept on the others, if any
                dropped.append(f"customer.{key}: {why}")
                del kept[key]
    if any(type(kept.get(k)) is str and kept[k].strip() for k in CUSTOMER_IDENTIFIERS):
        warnings.extend(f"{d} (dropped; the event was accepted on the other identifiers)"
                        for d in dropped)
        return kept
    errors.extend(dropped)
    errors.append("customer: needs at least one of id, email, phone, visitor_id")
    return None


def _customer_field_problem(key: str, v: str, phone_ok: PhoneCheck) -> str | None:
    limit = CUSTOMER_LIMITS[key]
    if key == "id":
        return customer_id_problem(v, limit)
    if len(v) > limit:
        return f"longer than {limit} characters"
    if key == "email":
        return email_problem(v)
    if key == "phone" and not phone_ok(v):
        return "not a phone number"
    if key == "visitor_id" and not v.isprintable():
        return "must not contain control characters"
    return None


def _check_str(obj: dict[str, Any], key: str, errors: list[str], limit: int | None) -> None:
    v = obj.get(key)
    if type(v) is str and v.strip():
        if limit is not None and len(v) > limit:
            errors.append(f"{key}: longer than {limit} characters")
        return
    if v is None:
        errors.append(f"{key}: required")
    elif type(v) is not str:
        errors.append(f"{key}: must be a string")
    else:
        errors.append(f"{key}: must not be empty")


def screen_envelope(obj: object, phone_ok: PhoneCheck = phone_syntax_ok) -> Screened:
    """Why ``obj`` is not a valid v1 envelope for a publisher to send, or the envelope to
    publish with ``warnings`` for the identifiers dropped from it. ``phone_ok`` says whether
    a phone number is one (ingest passes libphonenumber's opinion for its region).

    Extra payload keys are allowed: a fact is never rejected for carrying more detail.
    """
    return _screen(obj, True, phone_ok)


def validate_envelope(obj: object, phone_ok: PhoneCheck = phone_syntax_ok) -> list[str]:
    """Why ``obj`` is not a valid v1 envelope for a publisher to send; [] when it is (it
    may still lose a bad identifier: see ``screen_envelope``)."""
    return _screen(obj, True, phone_ok).errors


def validate_record(obj: object) -> list[str]:
    """Why a record read from the log cannot be projected; [] when it can. The publishing
    limits are not asked again: what an older release accepted stays readable."""
    return _screen(obj, False, phone_syntax_ok).errors


def _screen(obj: object, publishing: bool, phone_ok: PhoneCheck) -> Screened:
    if type(obj) is not dict:
        return Screened(["envelope: must be a JSON object"], [], None)
    errors: list[str] = []
    warnings: list[str] = []
    limit = MAX_ID if publishing else None
    _check_str(obj, "event_id", errors, MAX_EVENT_ID)
    etype = obj.get("type")
    if etype is None:
        errors.append("type: required")
    elif type(etype) is not str or etype not in EVENT_TYPES:
        errors.append(f"type: unknown event type {echo_repr(etype)}")
        etype = None
    at = obj.get("occurred_at")
    if at is None:
        errors.append("occurred_at: required")
    elif type(at) is not str or not _is_timestamp(at):
        errors.append(f"occurred_at: {_TS_ERROR}")
    _check_str(obj, "source", errors, limit)
    customer = None
    if "customer" not in obj or obj["customer"] is None:
        errors.append("customer: required")
    else:
        customer = _check_customer(obj["customer"], errors, warnings, publishing, phone_ok)
    channel = obj.get("channel")
    if channel is None:
        errors.append("channel: required")
    elif type(channel) is not str or channel not in CHANNELS:
        errors.append(f"channel: must be one of {', '.join(CHANNELS)}")
    for key in ("agent_id", "queue", "case_id"):
        v = obj.get(key)
        if v is not None and type(v) is not str:
            errors.append(f"{key}: must be a string or null")
        elif limit is not None and v is not None and len(v) > limit:
            errors.append(f"{key}: longer than {limit} characters")
    payload = obj.get("payload")
    if payload is None:
        errors.append("payload: required")
    elif etype is not None:
        _check_payload(etype, payload, errors, publishing)
    elif type(payload) is not dict:
        errors.append("payload: must be an object")
    if not errors and (why := unstorable(obj, MAX_DEPTH if publishing else None)) is not None:
        # no store can keep it (PostgreSQL refuses U+0000, UTF-8 a lone surrogate, JSON
        # NaN): rejected here, with the field named, instead of failing a whole batch later
        errors.append(why)
    if errors:
        return Screened(errors, [], None)
    if customer is not None and customer != obj["customer"]:
        return Screened([], warnings, {**obj, "customer": customer})
    return Screened([], warnings, obj)


def _is_timestamp(s: str) -> bool:
    # a date alone, or a time without an offset, parses as naive and is rejected below
    if len(s) > 64 or len(s) < 16:
        return False
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return False
    return dt.tzinfo is not None
