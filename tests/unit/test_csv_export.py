"""The audience export's CSV never hands a spreadsheet a formula (CSV injection): a contact
or id that starts like one is quoted with an apostrophe; phone numbers stay numbers."""

from __future__ import annotations

import csv
import io

from contactstream.adapters.http_crm import _csv, spreadsheet_safe


def test_formula_starts_are_neutralised_and_phones_are_not() -> None:
    assert spreadsheet_safe('=HYPERLINK("http://x")@example.com') == (
        "'=HYPERLINK(\"http://x\")@example.com")
    for risky in ("-2+3", "@SUM(A1)", "\tcmd", "\rcmd", "+cmd"):
        assert spreadsheet_safe(risky) == "'" + risky
    for plain in ("+36301234567", "anna@example.com", "", "c-0001"):
        assert spreadsheet_safe(plain) == plain
    assert spreadsheet_safe(0.75) == 0.75


def test_the_export_quotes_a_risky_contact() -> None:
    text = _csv([{"customer_id": "c-1", "contact": "=1+1@example.com", "segment": "lost",
                  "churn_risk": 0.7, "consent_at": "2026-12-01T00:00:00+00:00"},
                 {"customer_id": "c-2", "contact": "+36301234567", "segment": "new",
                  "churn_risk": 0.1, "consent_at": "2026-12-02T00:00:00+00:00"}])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["contact"] for r in rows] == ["'=1+1@example.com", "+36301234567"]
