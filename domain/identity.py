"""The CustomerLink aggregate: who was merged into whom, when, by whom and why; undoable."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from eventsourcing.domain import Aggregate, event

# uuid5 namespace of link ids: fixed forever, or a replay would start a second history
LINK_NAMESPACE: Final = uuid.UUID("0c6f2d0e-4b7a-5c19-8e3d-5a9b1f7c2e41")
SYSTEM: Final = "system"


class IdentityError(Exception):
    """A merge or unmerge the link refuses (HTTP 409 / 422 at the edge)."""


class InvalidCommand(IdentityError):
    """A command with a value the link cannot take (empty id, naive time ...)."""


class NotMerged(IdentityError):
    """Unmerge of a customer that is not merged into anyone."""

    def __init__(self, member: str) -> None:
        super().__init__(f"customer {member} is not merged: nothing to unmerge")
        self.member = member


class StrongIdConflict(IdentityError):
    """Two different publisher customer ids are never merged."""

    def __init__(self, member: str, survivor: str) -> None:
        super().__init__(f"customer ids {member} and {survivor} are both publisher ids: "
                         "they are never merged")
        self.member, self.survivor = member, survivor


class Separated(IdentityError):
    """The system may not merge again what a person separated with an unmerge."""

    def __init__(self, member: str, survivor: str) -> None:
        super().__init__(f"customer {member} was unmerged from {survivor}: "
                         "only a person may merge them again")
        self.member, self.survivor = member, survivor


def _check_aware(at: Any) -> None:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidCommand(f"at must be a timezone-aware datetime, got {at!r}")


def _check_text(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidCommand(f"{what} must be a non-empty string, got {value!r}")


class CustomerLink(Aggregate):
    """The link of one customer id (a base customer or a former survivor) to the survivor it
    is merged into. One aggregate per member id (uuid5 of it), so a replayed merge lands on
    the same history; a command whose `reason` (the linking event id, or the ticket of a
    manual change) it already handled changes nothing and returns False."""

    @staticmethod
    def id_for(member: str) -> uuid.UUID:
        return uuid.uuid5(LINK_NAMESPACE, member)

    @staticmethod
    def create_id(member: str) -> uuid.UUID:
        return CustomerLink.id_for(member)

    @classmethod
    def start(cls, member: str, *, strong: bool) -> CustomerLink:
        """The link of `member`; `strong`: it is a publisher's customer id."""
        _check_text(member, "member")
        return cls(member=member, strong=bool(strong))

    @event("Started")
    def __init__(self, member: str, strong: bool) -> None:
        self.member = member
        self.strong = strong
        self.survivor: str | None = None
        self.survivor_strong = False
        self.merged_at: datetime | None = None
        # survivors a person separated this member from
        self.separated_from: set[str] = set()
        # (kind "merged" / "unmerged", survivor, by, reason, at)
        self.history: list[tuple[str, str, str, str, datetime]] = []
        self._handled: set[tuple[str, str]] = set()

    # --- queries ------------------------------------------------------------------------

    @property
    def is_merged(self) -> bool:
        return self.survivor is not None

    def handled(self, action: str, reason: str) -> bool:
        return (action, reason) in self._handled

    # --- commands -----------------------------------------------------------------------

    def merge(self, survivor: str, *, survivor_strong: bool, reason: str, at: datetime,
              by: str = SYSTEM) -> bool:
        """Merges this member into `survivor` (or re-points it, when its survivor was itself
        merged on). False when already done; raises when refused."""
        _check_text(survivor, "survivor")
        _check_text(reason, "reason")
        _check_text(by, "by")
        _check_aware(at)
        if self.handled("merged", reason) or self.survivor == survivor:
            return False
        if survivor == self.member:
            raise InvalidCommand(f"customer {survivor} cannot be merged into itself")
        if self.strong and survivor_strong:
            raise StrongIdConflict(self.member, survivor)
        if by == SYSTEM and survivor in self.separated_from:
            raise Separated(self.member, survivor)
        self._merged(survivor=survivor, survivor_strong=bool(survivor_strong),
                     previous=self.survivor, reason=reason, by=by, at=at)
        return True

    def unmerge(self, *, by: str, reason: str, at: datetime) -> bool:
        """Undoes the merge: the member stands alone again, and the system will not merge
        it into that survivor again. False when already done; NotMerged when not merged."""
        _check_text(reason, "reason")
        _check_text(by, "by")
        _check_aware(at)
        if self.handled("unmerged", reason):
            return False
        if self.survivor is None:
            raise NotMerged(self.member)
        self._unmerged(survivor=self.survivor, reason=reason, by=by, at=at)
        return True

    # --- events: they only change state, never check --------------------------------------

    @event("Merged")
    def _merged(self, survivor: str, survivor_strong: bool, previous: str | None,
                reason: str, by: str, at: datetime) -> None:
        self.survivor, self.survivor_strong, self.merged_at = survivor, survivor_strong, at
        if by != SYSTEM:
            self.separated_from.discard(survivor)
        self.history.append(("merged", survivor, by, reason, at))
        self._handled.add(("merged", reason))

    @event("Unmerged")
    def _unmerged(self, survivor: str, reason: str, by: str, at: datetime) -> None:
        self.survivor, self.survivor_strong, self.merged_at = None, False, None
        self.separated_from.add(survivor)
        self.history.append(("unmerged", survivor, by, reason, at))
        self._handled.add(("unmerged", reason))
