"""The synthetic demo stream: deterministic, valid, and shaped like a real customer base."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import phonenumbers
import pytest

from contactstream.adapters.demo import (
    AGENTS,
    QUEUES,
    DemoPopulation,
    synthetic_events,
)
from contactstream.domain.interactions import screen_envelope, validate_envelope

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ENVELOPE_KEYS = {"event_id", "type", "occurred_at", "source", "customer", "channel", "agent_id",
                 "queue", "case_id", "payload"}
CUSTOMER_KEYS = {"id", "email", "phone", "visitor_id", "name"}
TYPES = {"call.started", "call.ended", "email.received", "email.sent", "chat.message",
         "web.visit", "complaint.filed", "survey.answered", "purchase.completed",
         "consent.changed"}
CHANNELS = {"voice", "email", "chat", "sms", "social", "web", "in_person"}
# Rough rates, only to compare spend across currencies.
TO_EUR = {"EUR": Decimal(1), "USD": Decimal("0.92"), "HUF": Decimal("0.0025")}


@pytest.fixture(scope="module")
def population() -> DemoPopulation:
    return DemoPopulation(seed=7, customers=500, now=NOW)


@pytest.fixture(scope="module")
def history(population: DemoPopulation) -> list[dict]:
    return list(population.history(days=90))


def at(env: dict) -> datetime:
    return datetime.fromisoformat(env["occurred_at"])


def test_the_same_seed_gives_the_same_stream() -> None:
    first = list(DemoPopulation(seed=3, customers=60, now=NOW).history(days=30))
    again = list(DemoPopulation(seed=3, customers=60, now=NOW).history(days=30))
    other = list(DemoPopulation(seed=4, customers=60, now=NOW).history(days=30))
    assert first == again
    assert [e["event_id"] for e in first] != [e["event_id"] for e in other]
    assert synthetic_events(500, seed=5, now=NOW) == synthetic_events(500, seed=5, now=NOW)


def test_event_ids_depend_on_the_seed_not_on_the_clock() -> None:
    a = DemoPopulation(seed=3, customers=40, now=NOW).history(days=30)
    b = DemoPopulation(seed=3, customers=40, now=NOW + timedelta(days=2)).history(days=30)
    assert [e["event_id"] for e in a] == [e["event_id"] for e in b]


def test_every_envelope_has_the_contract_shape(history: list[dict]) -> None:
    ids = set()
    for env in history:
        assert set(env) == ENVELOPE_KEYS
        assert set(env["customer"]) == CUSTOMER_KEYS
        assert any(env["customer"][k] for k in ("id", "email", "phone", "visitor_id"))
        assert env["type"] in TYPES and env["channel"] in CHANNELS
        assert env["agent_id"] is None or env["agent_id"] in AGENTS
        assert env["queue"] is None or env["queue"] in QUEUES
        assert at(env).utcoffset() is not None
        ids.add(env["event_id"])
    assert len(ids) == len(history)
    assert {e["type"] for e in history} == TYPES
    assert {at(e).utcoffset() for e in history} >= {
        timedelta(hours=1), timedelta(hours=3, minutes=30), timedelta(hours=8)}


def test_history_is_ordered_and_inside_the_window(history: list[dict]) -> None:
    times = [at(e) for e in history]
    assert times == sorted(times)
    assert NOW - timedelta(days=90) <= times[0] and times[-1] <= NOW


def test_payloads_look_real(history: list[dict]) -> None:
    by_type = defaultdict(list)
    for env in history:
        by_type[env["type"]].append(env["payload"])
    outcomes = Counter(p["outcome"] for p in by_type["call.ended"])
    assert outcomes["abandoned"] > 0 and outcomes["answered"] > outcomes["abandoned"]
    assert all(isinstance(p["duration_s"], int) and isinstance(p["wait_s"], int)
               for p in by_type["call.ended"])
    for p in by_type["purchase.completed"]:
        assert re.fullmatch(r"\d+\.\d{2}", p["amount"]) and p["currency"] in TO_EUR
    assert len({p["order_id"] for p in by_type["purchase.completed"]}) == len(
        by_type["purchase.completed"])
    scales = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}
    for p in by_type["survey.answered"]:
        low, high = scales[p["kind"]]
        assert low <= p["score"] <= high
    assert {p["kind"] for p in by_type["survey.answered"]} == set(scales)
    assert any("comment" in p for p in by_type["survey.answered"])
    assert {p["priority"] for p in by_type["complaint.filed"]} == {"low", "normal", "high",
                                                                    "urgent"}
    replies = [e for e in history if e["type"] == "email.sent"]
    assert replies and all(e["agent_id"] for e in replies)


def test_revenue_follows_the_80_20_rule(population: DemoPopulation,
                                        history: list[dict]) -> None:
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for env in history:
        if env["type"] == "purchase.completed":
            p = env["payload"]
            revenue[env["customer"]["id"]] += Decimal(p["amount"]) * TO_EUR[p["currency"]]
    spend = sorted((revenue[c.id] for c in population.customers), reverse=True)
    top = spend[: len(spend) // 5]
    assert sum(top) > Decimal("0.5") * sum(spend)


def identify(population: DemoPopulation):
    """Map any identifier an event carries (messy forms included) to its customer id."""
    index: dict[tuple[str, str], str] = {}
    for c in population.customers:
        index["email", c.email] = c.id
        index["phone", c.phone] = c.id
        for v in c.visitor_ids:
            index["visitor_id", v] = c.id

    def who(customer: dict) -> str | None:
        if customer["id"]:
            return customer["id"]
        if customer["email"]:
            return index["email", customer["email"].strip().lower()]
        if customer["phone"]:
            number = phonenumbers.parse(customer["phone"], "HU")
            return index["phone", phonenumbers.format_number(
                number, phonenumbers.PhoneNumberFormat.E164)]
        return index.get(("visitor_id", customer["visitor_id"]))  # None: anonymous visitor

    return who


def test_churners_go_quiet_for_the_last_30_days(population: DemoPopulation,
                                                history: list[dict]) -> None:
    churners = {c.id for c in population.customers if c.churn_ago_days is not None}
    assert len(churners) >= 0.05 * len(population.customers)
    who = identify(population)
    cutoff = NOW - timedelta(days=30)
    active_before: set[str] = set()
    for env in history:
        cid = who(env["customer"])
        if cid in churners:
            assert at(env) < cutoff, env
            active_before.add(cid)
    assert len(active_before) > len(churners) // 2  # they were customers once


def test_messy_identifiers_normalise_to_the_customer(population: DemoPopulation,
                                                     history: list[dict]) -> None:
    emails = [e["customer"]["email"] for e in history if e["customer"]["email"]]
    phones = [e["customer"]["phone"] for e in history if e["customer"]["phone"]]
    assert any(e != e.strip().lower() for e in emails)
    assert any(p.startswith("06 ") for p in phones)
    assert any(p.startswith("+") and " " in p for p in phones)
    canonical = {c.phone for c in population.customers}
    for p in set(phones):
        number = phonenumbers.parse(p, "HU")
        assert phonenumbers.is_valid_number(number), p
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) in canonical
    known = {c.email for c in population.customers}
    assert {e.strip().lower() for e in emails} <= known
    who = identify(population)
    assert all(who(e["customer"]) for e in history if not e["customer"]["visitor_id"])


def test_web_visitors_are_anonymous_until_they_log_in(history: list[dict]) -> None:
    visits = [e["customer"] for e in history if e["type"] == "web.visit"]
    anonymous = {c["visitor_id"] for c in visits if not c["email"]}
    known = {c["visitor_id"] for c in visits if c["email"]}
    assert all(c["visitor_id"] for c in visits)
    assert anonymous & known  # the same browser, first anonymous, then logged in


def test_names_and_texts_are_multilingual(population: DemoPopulation,
                                          history: list[dict]) -> None:
    names = [c.name for c in population.customers]
    assert any(re.search(r"[áéíóöőúüű]", n) for n in names)  # Hungarian
    assert any(re.search(r"[\u0600-\u06ff]", n) for n in names)  # Persian
    assert any(re.search(r"[\u4e00-\u9fff]", n) for n in names)  # Chinese
    assert any(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", n) for n in names)  # English
    assert all(re.fullmatch(r"[a-z0-9.]+@example\.(com|net|org)", c.email)
               for c in population.customers)
    locale = {c.id: c.locale for c in population.customers}
    complaints = [e for e in history if e["type"] == "complaint.filed"]
    for env in complaints:
        text = env["payload"]["description"]
        if locale[env["customer"]["id"]] == "IR":
            assert re.search(r"[\u0600-\u06ff]", text)
        if locale[env["customer"]["id"]] == "CN":
            assert re.search(r"[\u4e00-\u9fff]", text)


def test_live_events_follow_the_clock(population: DemoPopulation) -> None:
    start = NOW + timedelta(minutes=5)
    events = list(itertools.islice(population.live(rate_per_s=10, start=start), 400))
    times = [at(e) for e in events]
    assert times[0] == start and times == sorted(times)
    assert times[-1] - start == timedelta(seconds=39.9)
    churners = {c.id for c in population.customers if c.churn_ago_days is not None}
    assert not {e["customer"]["id"] for e in events} & churners
    history_ids = {e["event_id"] for e in population.history(days=10)}
    assert not {e["event_id"] for e in events} & history_ids
    again = list(itertools.islice(population.live(rate_per_s=10, start=start), 400))
    assert again == events


def test_live_takes_an_injectable_clock(population: DemoPopulation) -> None:
    ticks = iter([NOW + timedelta(seconds=s) for s in range(1000)])
    events = list(itertools.islice(population.live(rate_per_s=1, clock=lambda: next(ticks)), 50))
    assert at(events[0]) == NOW + timedelta(seconds=1)  # the first tick fixed the start
    assert at(events[-1]) == NOW + timedelta(seconds=50)


def test_live_brings_follow_ups_within_minutes(population: DemoPopulation) -> None:
    events = list(itertools.islice(population.live(rate_per_s=20), 30_000))
    assert {e["type"] for e in events} == TYPES


def test_synthetic_events_for_benchmarks() -> None:
    events = synthetic_events(5_000, seed=2, customers=2_000, now=NOW)
    assert len(events) == 5_000
    assert {e["type"] for e in events} == TYPES
    assert all(set(e) == ENVELOPE_KEYS for e in events)
    times = [at(e) for e in events]
    assert times == sorted(times)
    assert NOW - timedelta(hours=1) <= times[0] and times[-1] <= NOW
    assert len({e["event_id"] for e in events}) == 5_000


def test_every_generated_envelope_validates(history: list[dict],
                                            population: DemoPopulation) -> None:
    live = itertools.islice(population.live(rate_per_s=50), 5_000)
    for env in itertools.chain(history, live, synthetic_events(5_000, now=NOW)):
        assert validate_envelope(env) == [], env
        # as ingest screens them: nothing refused, no identifier dropped (issue 10)
        assert screen_envelope(env, phone_ok) == ([], [], env), env


def phone_ok(phone: str) -> bool:
    from contactstream.projections.identifiers import possible_phone

    return possible_phone(phone, "HU")
