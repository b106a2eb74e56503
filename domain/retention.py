"""Data that expires: the retention policy (``PUT /v1/retention-policy``) erases every
customer with no interaction for ``inactive_days``, continuously."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

MAX_DAYS: Final = 36_500


class RetentionError(ValueError):
    """A retention policy that cannot be used; the message says why."""


@dataclass(frozen=True)
class RetentionPolicy:
    """``inactive_days`` None: nothing expires (the policy is off)."""

    inactive_days: int | None

    def __post_init__(self) -> None:
        n = self.inactive_days
        if n is not None and (isinstance(n, bool) or not isinstance(n, int)
                              or not 1 <= n <= MAX_DAYS):
            raise RetentionError(f"inactive_days must be a whole number of days from 1 to"
                                 f" {MAX_DAYS}, or null to switch the policy off")

    @classmethod
    def from_json(cls, data: Any) -> RetentionPolicy:
        if not isinstance(data, Mapping):
            raise RetentionError("a retention policy must be a JSON object")
        unknown = sorted(set(data) - {"inactive_days"})
        if unknown:
            raise RetentionError(f"unknown field {unknown[0]!r}")
        if "inactive_days" not in data:
            raise RetentionError("inactive_days is required (null switches the policy off)")
        return cls(data["inactive_days"])
