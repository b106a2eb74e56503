"""Revenue in Decimal, RFM quintiles and segments, Pareto, pinned on worked examples."""

from __future__ import annotations

from decimal import Decimal

from contactstream.projections.value import (
    DAY_MS,
    SEGMENTS,
    CustomerValueFacts,
    Purchase,
    lifetime_revenue,
    pareto,
    quintiles,
    rfm,
    segments_report,
)

NOW = 1_790_000_000_000
D = Decimal


def buy(eid: str, amount: str, currency: str = "EUR") -> Purchase:
    return Purchase(eid, "c-1", NOW, D(amount), currency)


def test_money_is_decimal_exact() -> None:
    out = lifetime_revenue([buy("a", "0.1"), buy("b", "0.2")])
    assert out["lifetime_revenue"] == "0.30" and out["by_currency"] == {"EUR": "0.30"}
    ten_dimes = lifetime_revenue([buy(f"d{i}", "0.10") for i in range(10)])
    assert ten_dimes["lifetime_revenue"] == "1.00"
    assert lifetime_revenue([buy("h", "0.125")])["lifetime_revenue"] == "0.13"  # half up


def test_currencies_convert_at_fixed_rates_and_duplicates_count_once() -> None:
    p = [buy("a", "999.90"), buy("b", "100000", "HUF"), buy("b", "100000", "HUF")]
    out = lifetime_revenue(p, "EUR", {"HUF": D("0.0025")})
    assert out == {"by_currency": {"EUR": "999.90", "HUF": "100000.00"},
                   "lifetime_revenue": "1249.90", "currency": "EUR", "unconverted": [],
                   "skipped": []}


def test_a_currency_without_a_rate_stays_out_of_the_total() -> None:
    out = lifetime_revenue([buy("a", "10"), buy("b", "5", "USD")])
    assert out["lifetime_revenue"] == "10.00" and out["unconverted"] == ["USD"]
    assert lifetime_revenue([])["lifetime_revenue"] == "0.00"


def test_quintiles_on_ten_distinct_values_are_pairs_and_ties_share_a_score() -> None:
    assert quintiles({str(i): i for i in range(10)}, lambda x: x) == {
        "0": 1, "1": 1, "2": 2, "3": 2, "4": 3, "5": 3, "6": 4, "7": 4, "8": 5, "9": 5}
    tied = quintiles({"a": 1, "b": 1, "c": 1, "d": 5, "e": 9}, lambda x: x)
    assert tied == {"a": 2, "b": 2, "c": 2, "d": 4, "e": 5}
    assert quintiles({"only": 3}, lambda x: x) == {"only": 3}


def facts(days_ago: int, frequency: int, monetary: str) -> CustomerValueFacts:
    return CustomerValueFacts(NOW - days_ago * DAY_MS, frequency, D(monetary))


def test_rfm_on_a_small_worked_base() -> None:
    base = {"ana": facts(2, 12, "900"), "bela": facts(10, 8, "500"),
            "cili": facts(40, 4, "300"), "dani": facts(90, 2, "100"),
            "erno": facts(300, 1, "20"),
            "feri": CustomerValueFacts(None, 0, D(0))}
    out = rfm(base, NOW)
    assert [(out[c].r, out[c].f, out[c].m) for c in ("ana", "bela", "cili", "dani", "erno")] \
        == [(5, 5, 5), (4, 4, 4), (3, 3, 3), (2, 2, 2), (1, 1, 1)]
    assert [out[c].segment for c in ("ana", "bela", "cili", "dani", "erno", "feri")] == [
        "champions", "loyal", "need_attention", "hibernating", "lost", "prospect"]
    assert out["bela"].recency_days == 10 and out["feri"].r is None


def test_rfm_segment_map_corners() -> None:
    # recency and frequency pull apart: recent one-off buyer, old frequent buyer
    base = {"new": facts(1, 1, "10"), "x2": facts(5, 2, "10"), "x3": facts(50, 3, "10"),
            "x4": facts(100, 4, "10"), "gone": facts(400, 20, "10")}
    out = rfm(base, NOW)
    assert (out["new"].r, out["new"].f, out["new"].segment) == (5, 1, "new")
    assert (out["gone"].r, out["gone"].f, out["gone"].segment) == (1, 5, "cannot_lose")


def test_rfm_does_not_depend_on_input_order() -> None:
    base = {f"c{i}": facts(i % 37, 1 + i % 5, str(i % 11)) for i in range(200)}
    assert rfm(dict(reversed(list(base.items()))), NOW) == rfm(base, NOW)


def test_pareto_on_an_80_20_base() -> None:
    revenue = {f"c{i}": D("25") for i in range(8)} | {"big1": D("400"), "big2": D("400")}
    assert pareto(revenue) == {"customers": 10, "top_customers": ["big1", "big2"],
                               "top_share_of_revenue": 0.8, "top_revenue": "800.00",
                               "total_revenue": "1000.00"}


def test_pareto_rounds_the_top_count_up_without_float_error() -> None:
    assert len(pareto({f"c{i:02}": D(i) for i in range(15)})["top_customers"]) == 3
    assert len(pareto({"a": D(1)})["top_customers"]) == 1
    assert pareto({})["top_share_of_revenue"] == 0.0


def test_segments_report_lists_every_segment() -> None:
    base = {"ana": facts(2, 12, "900"), "bela": facts(10, 8, "500"),
            "cili": facts(40, 4, "300"), "dani": facts(90, 2, "100"),
            "erno": facts(300, 1, "20"), "feri": CustomerValueFacts(None, 0, D(0))}
    revenue = {"ana": D("900"), "bela": D("500"), "erno": D("20.5")}
    rows = segments_report(rfm(base, NOW), revenue)
    assert [r["segment"] for r in rows] == list(SEGMENTS)
    by = {r["segment"]: r for r in rows}
    assert by["champions"] == {"segment": "champions", "customers": 1, "revenue": "900.00"}
    assert by["lost"]["revenue"] == "20.50" and by["prospect"]["customers"] == 1
    assert by["at_risk"] == {"segment": "at_risk", "customers": 0, "revenue": "0.00"}
    assert sum(r["customers"] for r in rows) == len(base)


def test_an_amount_or_total_the_fold_cannot_take_is_skipped_not_raised() -> None:
    # a stored row from before amounts had a limit: money() could not print it
    out = lifetime_revenue([buy("a", "10"), buy("b", "1E+26"), buy("c", "5", "USD"),
                            buy("d", "1e999999999", "HUF"), buy("e", "NaN", "GBP")],
                           "EUR", {"USD": D("0.92"), "HUF": D("0.0025")})
    assert out["lifetime_revenue"] == "14.60"
    assert out["by_currency"] == {"EUR": "10.00", "USD": "5.00"}
    assert out["skipped"] == ["EUR", "GBP", "HUF"] and out["unconverted"] == []
    # a rate that lifts a sane total out of range skips that currency alone
    assert lifetime_revenue([buy("a", "1000", "XAU"), buy("b", "1")], "EUR",
                            {"XAU": D("1E+20")})["skipped"] == ["XAU"]
    assert pareto({"a": D("1E+30"), "b": D("10")}, 0.5)["total_revenue"] == "10.00"
    segs = segments_report(rfm({"a": CustomerValueFacts(NOW, 1, D("1E+30"))}, NOW),
                           {"a": D("1E+30")})
    assert {s["segment"]: s["revenue"] for s in segs}["new"] == "0.00"
