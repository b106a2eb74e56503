"""The customer segments (RFM, projections/value.py), named once: SLA policies match on
them and the value projection assigns them."""

from __future__ import annotations

from typing import Final

PROSPECT: Final = "prospect"  # a customer without a purchase
SEGMENTS: Final = ("champions", "loyal", "potential_loyalist", "new", "promising",
                   "need_attention", "about_to_sleep", "at_risk", "cannot_lose",
                   "hibernating", "lost", PROSPECT)
