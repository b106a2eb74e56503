"""SLA policies that match on the customer's segment and lifetime revenue (issue 14)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contactstream.domain.segments import SEGMENTS
from contactstream.domain.sla import (
    VALUE_KEY,
    CustomerValue,
    PolicyError,
    SlaPolicy,
    first_matching,
    from_snapshot,
    policy_snapshot,
)
from contactstream.projections import value

TARGETS = {"first_response_s": 600, "resolution_s": 3600}


def test_a_policy_reads_and_shows_segment_and_minimum_revenue() -> None:
    p = SlaPolicy.from_json("vip", {**TARGETS, "segment": ["champions", "loyal", "champions"],
                                    "min_lifetime_revenue": "1000.00"})
    assert p.segment == ("champions", "loyal") and p.min_lifetime_revenue == Decimal("1000.00")
    shown = p.to_dict()
    assert shown["segment"] == ["champions", "loyal"]
    assert shown["min_lifetime_revenue"] == "1000.00"
    assert SlaPolicy.from_json("vip", {k: v for k, v in shown.items() if k != "name"}) == p
    plain = SlaPolicy.from_json("any", TARGETS).to_dict()
    assert plain["segment"] is None and plain["min_lifetime_revenue"] is None


@pytest.mark.parametrize(("field", "bad", "says"), [
    ("segment", ["vips"], "'vips' is not one of"),
    ("segment", [], "non-empty list"),
    ("segment", "champions", "non-empty list"),
    ("min_lifetime_revenue", "-1", "at least 0"),
    ("min_lifetime_revenue", "lots", "not a decimal"),
    ("min_lifetime_revenue", "NaN", "at least 0"),
    ("min_lifetime_revenue", True, "decimal string"),
    ("min_lifetime_revenue", {"eur": 1}, "decimal string"),
])
def test_a_bad_value_condition_is_refused_naming_it(field: str, bad: object, says: str) -> None:
    with pytest.raises(PolicyError, match=field) as err:
        SlaPolicy.from_json("vip", {**TARGETS, field: bad})
    assert says in str(err.value)


def test_the_first_policy_the_customer_s_value_meets_is_taken() -> None:
    vip = SlaPolicy.from_json("vip", {**TARGETS, "segment": ["champions"]})
    big = SlaPolicy.from_json("big", {**TARGETS, "min_lifetime_revenue": "1000"})
    rest = SlaPolicy.from_json("rest", TARGETS)
    order = [vip, big, rest]
    assert first_matching(order, "normal", "email",
                          CustomerValue("champions", Decimal(5))) is vip
    assert first_matching(order, "normal", "email", CustomerValue("loyal", Decimal(1000))) is big
    assert first_matching(order, "normal", "email",
                          CustomerValue("loyal", Decimal("999.99"))) is rest
    # no figures yet: a prospect without revenue
    assert first_matching(order, "normal", "email") is rest
    assert first_matching([vip, big], "normal", "email") is None
    assert not rest.on_value and vip.on_value and big.on_value


def test_the_snapshot_keeps_the_value_matched_on_and_reads_back_the_policy() -> None:
    vip = SlaPolicy.from_json("vip", {**TARGETS, "segment": ["champions"]})
    snap = policy_snapshot(vip, None, CustomerValue("champions", Decimal("1234.50")))
    assert snap[VALUE_KEY] == {"segment": "champions", "lifetime_revenue": "1234.50"}
    assert from_snapshot(snap)[0] == vip
    assert VALUE_KEY not in policy_snapshot(vip)


def test_the_segments_policies_name_are_the_ones_the_value_projection_gives() -> None:
    given = {s for row in value._GRID for s in row} | {value.PROSPECT}  # noqa: SLF001
    assert given == set(SEGMENTS) and len(SEGMENTS) == len(set(SEGMENTS))
