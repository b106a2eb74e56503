"""Validation of the v1 envelope: each rule with a good and a bad example."""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from contactstream.domain.interactions import (
    CHANNELS,
    EVENT_TYPES,
    amount_value,
    parse_occurred_at,
    screen_envelope,
    validate_envelope,
    validate_record,
)

GOOD_PAYLOADS: dict[str, dict[str, Any]] = {
    "call.started": {"direction": "inbound"},
    "call.ended": {"direction": "outbound", "outcome": "answered", "duration_s": 312.5,
                   "wait_s": 0},
    "email.received": {"subject": "Számla", "body": "Kétszer terheltek."},
    "email.sent": {"subject": "Re: Számla"},
    "chat.message": {"direction": "inbound", "text": "سلام، سفارش من کجاست؟"},
    "web.visit": {"url": "https://example.com/pricing", "referrer": None, "duration_s": 42},
    "complaint.filed": {"category": "billing", "priority": "high",
                        "description": "Charged twice"},
    "survey.answered": {"kind": "nps", "score": 9, "comment": "很好"},
    "purchase.completed": {"amount": "1249.90", "currency": "EUR", "order_id": "o-1"},
    "consent.changed": {"channel": "email", "granted": True, "purpose": "marketing"},
}


def envelope(type_: str = "complaint.filed", **changes: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "event_id": "5f0c8a9e-4f8e-4f43-9d0a-2f3c1b7d6e10",
        "type": type_,
        "occurred_at": "2026-11-22T09:15:00+01:00",
        "source": "webform",
        "customer": {"id": "c-1001", "email": "anna@example.com", "phone": "+36301234567",
                     "visitor_id": "v-77", "name": "Anna Kovács"},
        "channel": "web",
        "agent_id": None,
        "queue": "billing",
        "case_id": None,
        "payload": copy.deepcopy(GOOD_PAYLOADS[type_]),
    }
    env.update(changes)
    return env


def with_payload(type_: str, **changes: Any) -> dict[str, Any]:
    env = envelope(type_)
    env["payload"].update(changes)
    return env


def without(env: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in env.items() if k != key}


def test_every_contract_type_is_known() -> None:
    assert set(EVENT_TYPES) == set(GOOD_PAYLOADS)
    assert CHANNELS == ("voice", "email", "chat", "sms", "social", "web", "in_person")


@pytest.mark.parametrize("type_", sorted(GOOD_PAYLOADS))
def test_a_good_event_of_every_type_is_valid(type_: str) -> None:
    assert validate_envelope(envelope(type_)) == []


@pytest.mark.parametrize("name, text", [
    ("Kovács Anna Ödönné", "Árvíztűrő tükörfúrógép — köszönöm!"),
    ("زهرا محمدی", "سلام، بسته من هنوز نرسیده است."),
    ("王小明", "我的订单还没到，请帮忙查一下。"),
])
def test_unicode_names_and_texts_pass(name: str, text: str) -> None:
    env = envelope("chat.message", customer={"email": "x@example.com", "name": name})
    env["payload"]["text"] = text
    assert validate_envelope(env) == []


def test_not_an_object() -> None:
    assert validate_envelope([1, 2]) == ["envelope: must be a JSON object"]
    assert validate_envelope(None) == ["envelope: must be a JSON object"]


@pytest.mark.parametrize("key", ["event_id", "type", "occurred_at", "source", "customer",
                                 "channel", "payload"])
def test_required_fields(key: str) -> None:
    assert f"{key}: required" in validate_envelope(without(envelope(), key))


def test_event_id_must_be_a_short_non_empty_string() -> None:
    assert validate_envelope(envelope(event_id="")) == ["event_id: must not be empty"]
    assert validate_envelope(envelope(event_id=42)) == ["event_id: must be a string"]
    assert validate_envelope(envelope(event_id="x" * 200)) == []
    assert validate_envelope(envelope(event_id="x" * 201)) == [
        "event_id: longer than 200 characters"]


def test_type_must_be_known() -> None:
    assert validate_envelope(envelope(type="foo.bar")) == [
        "type: unknown event type 'foo.bar'"]
    assert validate_envelope(envelope(type=7)) == ["type: unknown event type 7"]


@pytest.mark.parametrize("ts", ["2026-11-22T09:15:00+01:00", "2026-11-22T08:15:00Z",
                                "2026-11-22T08:15:00.123456+00:00", "2026-11-22T13:45:00+05:30"])
def test_occurred_at_good(ts: str) -> None:
    assert validate_envelope(envelope(occurred_at=ts)) == []


@pytest.mark.parametrize("ts", ["2026-11-22T09:15:00", "2026-11-22", "yesterday", "", 1700000000,
                                "2026-13-22T09:15:00Z", "2026-11-22T09:15:00+25:00"])
def test_occurred_at_bad(ts: object) -> None:
    assert validate_envelope(envelope(occurred_at=ts)) == [
        "occurred_at: not an ISO 8601 timestamp with a UTC offset"]


def test_parse_occurred_at_is_aware_and_keeps_the_offset() -> None:
    dt = parse_occurred_at("2026-11-22T09:15:00+01:00")
    assert dt.utcoffset() == timedelta(hours=1)
    assert parse_occurred_at("2026-11-22T08:15:00Z") == dt
    with pytest.raises(ValueError):
        parse_occurred_at("2026-11-22T09:15:00")
    with pytest.raises(ValueError):
        parse_occurred_at("not a time")


def test_source_must_be_a_non_empty_string() -> None:
    assert validate_envelope(envelope(source=" ")) == ["source: must not be empty"]
    assert validate_envelope(envelope(source=["x"])) == ["source: must be a string"]


@pytest.mark.parametrize("customer", [{"id": "c-1"}, {"email": "a@b.c"},
                                      {"phone": "+36301234567"}, {"phone": "06 30 123 4567"},
                                      {"visitor_id": "v-1", "name": None},
                                      {"id": None, "email": "a@b.c"}])
def test_customer_with_one_identifier_is_enough(customer: dict[str, Any]) -> None:
    assert validate_envelope(envelope(customer=customer)) == []


@pytest.mark.parametrize("customer", [{}, {"name": "Anna"}, {"id": "", "email": "  "},
                                      {"id": None}])
def test_customer_needs_an_identifier(customer: dict[str, Any]) -> None:
    assert validate_envelope(envelope(customer=customer)) == [
        "customer: needs at least one of id, email, phone, visitor_id"]


def test_customer_shape() -> None:
    assert validate_envelope(envelope(customer="c-1")) == ["customer: must be an object"]
    assert validate_envelope(envelope(customer={"id": "c-1", "name": 5})) == [
        "customer.name: must be a string"]
    assert validate_envelope(envelope(customer={"id": 1001, "email": "a@b.c"})) == [
        "customer.id: must be a string"]
    errors = validate_envelope(envelope(customer={"id": "c-1", "shoe_size": "42"}))
    assert errors == ["customer.shoe_size: unknown field "
                      "(allowed: id, email, phone, visitor_id, name)"]


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_channel_is_accepted(channel: str) -> None:
    assert validate_envelope(envelope(channel=channel)) == []


@pytest.mark.parametrize("channel", ["fax", "", "Voice", None, 3])
def test_unknown_channel(channel: object) -> None:
    expected = "channel: required" if channel is None else (
        "channel: must be one of voice, email, chat, sms, social, web, in_person")
    assert validate_envelope(envelope(channel=channel)) == [expected]


@pytest.mark.parametrize("key", ["agent_id", "queue", "case_id"])
def test_optional_references(key: str) -> None:
    assert validate_envelope(envelope(**{key: "x-1"})) == []
    assert validate_envelope(envelope(**{key: None})) == []
    assert validate_envelope(without(envelope(), key)) == []
    assert validate_envelope(envelope(**{key: 12})) == [f"{key}: must be a string or null"]


def test_payload_must_be_an_object() -> None:
    assert validate_envelope(envelope(payload="x")) == ["payload: must be an object"]
    assert validate_envelope(envelope(type="foo", payload=[])) == [
        "type: unknown event type 'foo'", "payload: must be an object"]


@pytest.mark.parametrize("type_", sorted(GOOD_PAYLOADS))
def test_required_payload_fields(type_: str) -> None:
    for name, spec in EVENT_TYPES[type_].items():
        env = envelope(type_)
        env["payload"].pop(name, None)
        errors = validate_envelope(env)
        assert errors == ([f"payload.{name}: required"] if spec.required else []), name


def test_extra_payload_keys_are_allowed() -> None:
    env = with_payload("call.started", ivr_path=["1", "3"], note={"a": 1}, flag=None)
    assert validate_envelope(env) == []


@pytest.mark.parametrize("type_, field, bad, message", [
    ("call.started", "direction", "sideways", "must be one of inbound, outbound"),
    ("chat.message", "direction", None, "required"),
    ("call.ended", "outcome", "hung_up", "must be one of answered, abandoned, missed, transferred"),
    ("call.ended", "duration_s", -1, "must be a non-negative number of seconds"),
    ("call.ended", "wait_s", "3", "must be a non-negative number of seconds"),
    ("call.ended", "wait_s", True, "must be a non-negative number of seconds"),
    ("call.ended", "wait_s", float("nan"), "must be a non-negative number of seconds"),
    ("web.visit", "duration_s", float("inf"), "must be a non-negative number of seconds"),
    ("web.visit", "url", "", "must not be empty"),
    ("web.visit", "referrer", 5, "must be a string"),
    ("email.received", "subject", ["x"], "must be a string"),
    ("complaint.filed", "priority", "critical", "must be one of low, normal, high, urgent"),
    ("complaint.filed", "category", " ", "must not be empty"),
    ("survey.answered", "kind", "ces2", "must be one of csat, nps, ces"),
    ("survey.answered", "score", 4.5, "must be an integer"),
    ("survey.answered", "score", False, "must be an integer"),
    ("purchase.completed", "order_id", 77, "must be a string"),
])
def test_bad_payload_values(type_: str, field: str, bad: object, message: str) -> None:
    assert validate_envelope(with_payload(type_, **{field: bad})) == [
        f"payload.{field}: {message}"]


def test_zero_durations_are_fine() -> None:
    assert validate_envelope(with_payload("call.ended", duration_s=0, wait_s=0.0)) == []


@pytest.mark.parametrize("kind, low, high", [("csat", 1, 5), ("nps", 0, 10), ("ces", 1, 7)])
def test_survey_score_range_per_kind(kind: str, low: int, high: int) -> None:
    for score in (low, high):
        assert validate_envelope(with_payload("survey.answered", kind=kind, score=score)) == []
    for score in (low - 1, high + 1):
        assert validate_envelope(with_payload("survey.answered", kind=kind, score=score)) == [
            f"payload.score: must be between {low} and {high} for {kind}"]


@pytest.mark.parametrize("amount", ["0", "0.00", "12.5", "1249.90", "999999999999.9999",
                                    "0.0001", "007.50"])
def test_good_amounts(amount: str) -> None:
    assert validate_envelope(with_payload("purchase.completed", amount=amount)) == []


AMOUNT_ERROR = ('payload.amount: must be a decimal string like "12.50": at least 0, less than'
                " 1,000,000,000,000, at most 4 decimals, no sign or exponent")


@pytest.mark.parametrize("amount", [
    "-1.00", "abc", "", " 12.50", "1_000", "NaN", "Infinity", 12.5, 12,
    # issue 10: out of range, too precise, signed, exponents
    "1000000000000", "100000000000000000000000000", "1E+400", "1e999999999", "1e3",
    "12.50001", "-0.00", "+5", ".5", "5.", "0" * 33,
])
def test_bad_amounts(amount: object) -> None:
    assert validate_envelope(with_payload("purchase.completed", amount=amount)) == [
        AMOUNT_ERROR]


@pytest.mark.parametrize("amount, value", [("12.50", "12.50"), ("1E+3", "1E+3"), ("0", "0"),
                                           ("1E+400", None), ("-0.00", None), ("-1", None),
                                           ("1e12", None), ("NaN", None), (" 1", None)])
def test_what_an_amount_counts_for(amount: str, value: str | None) -> None:
    assert amount_value(amount) == (None if value is None else Decimal(value))


def test_a_record_on_the_log_keeps_the_old_amount_and_currency_rules() -> None:
    env = with_payload("purchase.completed", amount="1E+400", currency="ZZZ")
    assert validate_record(env) == []
    assert validate_record(with_payload("purchase.completed", amount="-1")) == [
        'payload.amount: must be a non-negative decimal string like "12.50"']


@pytest.mark.parametrize("currency, ok", [("EUR", True), ("HUF", True), ("IRR", True),
                                          ("HRK", True), ("ZZZ", False), ("XXX", False),
                                          ("eur", False), ("EURO", False), ("E1R", False),
                                          ("ÉUR", False), (978, False)])
def test_currency(currency: object, ok: bool) -> None:
    errors = validate_envelope(with_payload("purchase.completed", currency=currency))
    assert errors == ([] if ok else [
        "payload.currency: must be an ISO 4217 currency code, like EUR"])


def test_all_reasons_are_reported_together() -> None:
    env = {"type": "complaint.filed", "occurred_at": "soon", "source": "x",
           "customer": {}, "channel": "pigeon", "payload": {"priority": "meh"}}
    assert validate_envelope(env) == [
        "event_id: required",
        "occurred_at: not an ISO 8601 timestamp with a UTC offset",
        "customer: needs at least one of id, email, phone, visitor_id",
        "channel: must be one of voice, email, chat, sms, social, web, in_person",
        "payload.category: required",
        "payload.priority: must be one of low, normal, high, urgent",
        "payload.description: required",
    ]


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("granted", [True, False])
def test_consent_changed_good(channel: str, granted: bool) -> None:
    env = with_payload("consent.changed", channel=channel, granted=granted)
    assert validate_envelope(env) == []


def test_consent_changed_needs_a_purpose() -> None:
    env = envelope("consent.changed")
    del env["payload"]["purpose"]
    assert validate_envelope(env) == ["payload.purpose: required"]
    assert validate_envelope(with_payload("consent.changed", purpose=" ")) == [
        "payload.purpose: must not be empty"]


@pytest.mark.parametrize("granted", ["yes", "true", 1, 0, "False"])
def test_consent_granted_must_be_a_json_boolean(granted: object) -> None:
    assert validate_envelope(with_payload("consent.changed", granted=granted)) == [
        "payload.granted: must be true or false"]


def test_consent_withdrawn_is_not_missing() -> None:
    assert validate_envelope(with_payload("consent.changed", granted=False)) == []
    assert validate_envelope(with_payload("consent.changed", granted=None)) == [
        "payload.granted: required"]


@pytest.mark.parametrize("channel", ["fax", "Email", "", 3])
def test_consent_for_an_unknown_channel_is_rejected(channel: object) -> None:
    assert validate_envelope(with_payload("consent.changed", channel=channel)) == [
        "payload.channel: must be one of voice, email, chat, sms, social, web, in_person"]


@pytest.mark.parametrize("where", ["source", "customer.name", "payload.description",
                                   "payload.extra_note"])
def test_a_nul_character_anywhere_is_rejected_with_the_field(where: str) -> None:
    env = envelope("complaint.filed")
    obj: Any = env
    *path, last = where.split(".")
    for key in path:
        obj = obj[key]
    obj[last] = "before\x00after"
    assert validate_envelope(env) == [f"{where}: contains a NUL character (U+0000)"]


# -- issue 10: no input takes it down ------------------------------------------------------
@pytest.mark.parametrize("where, bad, reason", [
    ("source", "\ud800", "contains a lone surrogate (U+D800–U+DFFF), which is not Unicode text"),
    ("customer.name", "a\udfffb", "contains a lone surrogate (U+D800–U+DFFF), which is not"
     " Unicode text"),
    ("payload.extra_note", float("nan"), "not a finite number (NaN and Infinity are not JSON)"),
    ("payload.extra_note", float("-inf"), "not a finite number (NaN and Infinity are not JSON)"),
])
def test_what_no_store_can_keep_is_rejected_with_the_field(where: str, bad: object,
                                                           reason: str) -> None:
    env = envelope("complaint.filed")
    obj: Any = env
    *path, last = where.split(".")
    for key in path:
        obj = obj[key]
    obj[last] = bad
    assert validate_envelope(env) == [f"{where}: {reason}"]
    assert validate_record(env) == [f"{where}: {reason}"]


def test_nesting_is_limited_to_32_levels() -> None:
    deep: Any = "bottom"
    for _ in range(30):  # the envelope and its payload are 2 levels; 30 lists make 32
        deep = [deep]
    assert validate_envelope(with_payload("call.started", note=deep)) == []
    errors = validate_envelope(with_payload("call.started", note=[deep]))
    assert len(errors) == 1 and errors[0].endswith(": nested deeper than 32 levels")
    very_deep: Any = {}
    for _ in range(5000):  # no recursion: depth is data
        very_deep = {"x": very_deep}
    assert validate_envelope(with_payload("call.started", note=very_deep)) == [
        "payload.note" + ".x" * 30 + ": nested deeper than 32 levels"]


@pytest.mark.parametrize("key, limit", [("source", 200), ("agent_id", 200), ("queue", 200),
                                        ("case_id", 200)])
def test_envelope_fields_have_length_limits(key: str, limit: int) -> None:
    assert validate_envelope(envelope(**{key: "x" * limit})) == []
    assert validate_envelope(envelope(**{key: "x" * 1_000_000})) == [
        f"{key}: longer than {limit} characters"]


@pytest.mark.parametrize("type_, field, limit", [
    ("complaint.filed", "category", 200), ("purchase.completed", "order_id", 200),
    ("consent.changed", "purpose", 200), ("web.visit", "url", 4096),
    ("web.visit", "referrer", 4096), ("web.visit", "session_id", 200),
    ("email.received", "subject", 1000),
])
def test_payload_fields_have_length_limits(type_: str, field: str, limit: int) -> None:
    assert validate_envelope(with_payload(type_, **{field: "x" * limit})) == []
    assert validate_envelope(with_payload(type_, **{field: "x" * (limit + 1)})) == [
        f"payload.{field}: longer than {limit} characters"]


def test_free_text_has_no_limit_of_its_own() -> None:
    assert validate_envelope(with_payload("complaint.filed", description="x" * 2_000_000)) == []


def test_payload_keys_are_limited_and_echoed_short() -> None:
    key = "k" * 1_000_000
    errors = validate_envelope(with_payload("call.started", **{key: 1}))
    assert errors == ["payload: key '" + "k" * 40 + "'… longer than 64 characters"]
    many = with_payload("call.started", **{f"k{i}": i for i in range(100)})
    assert validate_envelope(many) == ["payload: more than 100 keys"]


def test_a_rejection_echoes_a_short_prefix_only() -> None:
    errors = validate_envelope(envelope(type="t" * 1_000_000))
    assert errors == ["type: unknown event type '" + "t" * 40 + "'…"]
    errors = validate_envelope(envelope(customer={"id": "c-1", "s" * 1_000_000: "x"}))
    assert len(errors) == 1 and len(errors[0]) < 200
    errors = validate_envelope(envelope(customer={"id": "c-1", "\ud800": "x"}))
    assert errors[0].startswith("customer.\\ud800: unknown field")
    errors[0].encode("utf-8")


@pytest.mark.parametrize("customer_id, reason", [
    ("a/b", "must not contain '/'"), ("/", "must not contain '/'"),
    (".", "must not be '.' or '..'"), ("..", "must not be '.' or '..'"),
    (" c-1", "must not start or end with white space"),
    ("c-1\t", "must not start or end with white space"),
    ("c\n1", "must not contain control characters"),
    ("c" * 201, "longer than 200 characters"),
])
def test_customer_ids_that_could_not_be_read_back_are_refused(customer_id: str,
                                                              reason: str) -> None:
    env = envelope(customer={"id": customer_id, "email": "anna@example.com"})
    assert validate_envelope(env) == [f"customer.id: {reason}"]


@pytest.mark.parametrize("customer_id", ["c-1", "c.1", "...", "Kovács Anna", "a:b@c", "x" * 200])
def test_customer_ids_that_can_be_read_back(customer_id: str) -> None:
    assert validate_envelope(envelope(customer={"id": customer_id})) == []


@pytest.mark.parametrize("email", ["anna@example.com", " Anna@Example.com ", "a.b+c@x.co.uk",
                                   "zoë@bücher.de", "ali@例え.jp", "a@b.c"])
def test_good_emails(email: str) -> None:
    assert screen_envelope(envelope(customer={"email": email})) == (
        [], [], envelope(customer={"email": email}))


@pytest.mark.parametrize("email, reason", [
    ("not-an-email", "not an e-mail address"), ("a@b", "not an e-mail address"),
    ("@example.com", "not an e-mail address"), ("a@@example.com", "not an e-mail address"),
    ("a b@example.com", "not an e-mail address"), ("a@example.123", "not an e-mail address"),
    ("a@-x.com", "not an e-mail address"), ("a..b@example.com", "not an e-mail address"),
    ("x" * 250 + "@example.com", "longer than 254 characters"),
])
def test_a_bad_email_is_dropped_while_another_identifier_remains(email: str,
                                                                 reason: str) -> None:
    env = envelope(customer={"id": "c-1", "email": email, "name": "Anna"})
    errors, warnings, published = screen_envelope(env)
    assert errors == []
    assert warnings == [f"customer.email: {reason} (dropped; the event was accepted on the"
                        " other identifiers)"]
    assert published is not None and published["customer"] == {"id": "c-1", "name": "Anna"}
    assert env["customer"]["email"] == email  # the caller's envelope is left as it was
    alone = screen_envelope(envelope(customer={"email": email, "name": "Anna"}))
    assert alone.errors == [f"customer.email: {reason}",
                            "customer: needs at least one of id, email, phone, visitor_id"]


def test_bad_phone_and_visitor_id_are_dropped_too() -> None:
    env = envelope(customer={"email": "anna@example.com", "phone": "abc",
                             "visitor_id": "v" * 201})
    errors, warnings, published = screen_envelope(env, phone_ok=lambda p: p.startswith("+"))
    assert errors == [] and published is not None
    assert published["customer"] == {"email": "anna@example.com"}
    assert [w.split(" (")[0] for w in warnings] == [
        "customer.phone: not a phone number", "customer.visitor_id: longer than 200 characters"]
    assert screen_envelope(envelope(customer={"phone": "abc"})).errors == [
        "customer.phone: not a phone number",
        "customer: needs at least one of id, email, phone, visitor_id"]


def test_a_long_name_is_refused() -> None:
    assert validate_envelope(envelope(customer={"id": "c-1", "name": "n" * 301})) == [
        "customer.name: longer than 300 characters"]


@pytest.mark.parametrize("phone, ok", [("+36301234567", True), ("06 30 123 4567", True),
                                       ("+98 912 345 6789", True), ("+1 800 FLOWERS", True),
                                       ("abc", False), ("+3630123", False), ("123", False),
                                       ("9" * 300, False)])
def test_ingest_asks_libphonenumber_whether_a_phone_is_possible(phone: str, ok: bool) -> None:
    from contactstream.projections.identifiers import possible_phone

    assert possible_phone(phone, "HU") is ok
