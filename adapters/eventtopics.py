"""Short topics for the case and identity stores' events: a row's ``topic`` is an alias
from a fixed table (``c1`` for ``Case.Opened``) instead of the class path
(``contactstream.domain.cases:Case.Opened``, 38–51 bytes a row).

``AliasMapper`` (``MAPPER_TOPIC``, adapters/database.py) writes the aliases; reading goes
through the library's ``resolve_topic``, to which the aliases are registered
(``register_topic``), so rows stored before with class paths read as they always did.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic, register_topic, resolve_topic

TOPIC = "contactstream.adapters.eventtopics:AliasMapper"

# FIXED FOR EVER, as the compressor's dictionary: a stored row names its class by its
# alias, so an alias names that class for good. A new event class takes a new alias (one
# never used before) or none (it keeps its class path); a class renamed or moved keeps its
# alias (its new path here, and its old one registered for the rows stored before the
# aliases); an alias retired stays here or stays unused. No alias has a colon, so none
# can be read as a class path.
ALIASES: tuple[tuple[str, str], ...] = (
    ("c1", "contactstream.domain.cases:Case.Opened"),
    ("c2", "contactstream.domain.cases:Case.Assigned"),
    ("c3", "contactstream.domain.cases:Case.FirstResponseGiven"),
    ("c4", "contactstream.domain.cases:Case.ResponseGiven"),
    ("c5", "contactstream.domain.cases:Case.PausedForCustomer"),
    ("c6", "contactstream.domain.cases:Case.CustomerReplied"),
    ("c7", "contactstream.domain.cases:Case.Resolved"),
    ("c8", "contactstream.domain.cases:Case.Reopened"),
    ("l1", "contactstream.domain.identity:CustomerLink.Started"),
    ("l2", "contactstream.domain.identity:CustomerLink.Merged"),
    ("l3", "contactstream.domain.identity:CustomerLink.Unmerged"),
)


def one_to_one(pairs: tuple[tuple[str, str], ...]) -> dict[type[Any], str]:
    """The alias of each class; refuses a table that names an alias or a class twice."""
    aliases = [a for a, _ in pairs]
    classes = [resolve_topic(t) for _, t in pairs]
    if len(set(aliases)) != len(pairs) or len(set(classes)) != len(pairs):
        raise ValueError("the topic aliases must be one-to-one")
    if any(":" in a or not a for a in aliases):
        raise ValueError("a topic alias must not look like a class path (no colon)")
    return dict(zip(classes, aliases, strict=True))


ALIAS_OF = one_to_one(ALIASES)


def register_aliases() -> None:
    """Lets ``resolve_topic`` find each class by its alias (again: harmless; an alias
    some other code registered for another object is an error, TopicError)."""
    for cls, alias in ALIAS_OF.items():
        register_topic(alias, cls)


class AliasMapper(Mapper[Any]):
    """The library's mapper, writing a class's alias as the topic when it has one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        register_aliases()

    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        """As the library's ``Mapper.to_stored_event`` (eventsourcing 9.5), with the alias
        as the topic. Its steps are repeated rather than its result rebuilt: a second
        frozen ``StoredEvent`` cost ~0.5 µs an event, 5% of the mapper's time.
        tests/integration/test_event_topics.py compares the two."""
        cls = type(domain_event)
        topic = ALIAS_OF.get(cls) or get_topic(cls)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(cls, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        stored = self.transcoder.encode(state)
        if self.compressor:
            stored = self.compressor.compress(stored)
        if self.cipher:
            stored = self.cipher.encrypt(stored)
        return StoredEvent(originator_id, originator_version, topic, stored)
