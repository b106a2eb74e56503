"""The alert log is read by seq (relays, webhooks, SSE resume): an alert added while a
batch transaction holds an earlier one must not become visible before it."""

from __future__ import annotations

import threading
import time

import pytest

from contactstream.adapters.control import ControlStore
from contactstream.adapters.database import Database
from contactstream.streams.ports import NewAlert

pytestmark = pytest.mark.integration


def _alert(i: int) -> NewAlert:
    return NewAlert(id=f"a-{i}", kind="sla.breached", at="2026-11-22T10:00:00+00:00",
                    level="critical", case_id=f"case-{i}")


def test_a_later_alert_waits_for_the_batch_holding_an_earlier_one(db: Database) -> None:
    control = ControlStore(db)
    in_batch = threading.Event()
    release = threading.Event()
    seqs: dict[str, int | None] = {}

    def batch() -> None:  # the case stage: one long transaction
        with control.batch():
            seqs["batch"] = control.add_alert(_alert(1))
            in_batch.set()
            release.wait(10)

    def timer() -> None:  # an SLA timer: a short transaction of its own
        seqs["timer"] = control.add_alert(_alert(2))

    first = threading.Thread(target=batch)
    first.start()
    assert in_batch.wait(10)
    second = threading.Thread(target=timer)
    second.start()
    time.sleep(0.3)
    # a reader following the log sees neither yet: nothing after seq 0 is committed
    assert [a["id"] for a in ControlStore(db).alerts(after=0)] == []
    assert second.is_alive()  # the timer waits for the batch's turn
    release.set()
    first.join(10)
    second.join(10)
    assert seqs["batch"] is not None and seqs["timer"] is not None
    assert seqs["batch"] < seqs["timer"]
    assert [a["id"] for a in control.alerts(after=0)] == ["a-1", "a-2"]


def test_an_alert_added_twice_is_kept_once_and_takes_no_number(db: Database) -> None:
    control = ControlStore(db)
    assert control.add_alert(_alert(1)) == 1
    assert control.add_alert(_alert(1)) is None
    assert control.add_alert(_alert(2)) == 2


def test_alerts_added_together_keep_their_order_and_each_id_once(db: Database) -> None:
    control = ControlStore(db)
    assert control.add_alert(_alert(1)) == 1
    # a known one, a new one twice, another new one: numbers for the new ones only
    assert control.add_alerts([_alert(3), _alert(1), _alert(3), _alert(2)]) == [
        2, None, None, 3]
    assert control.add_alerts([]) == []
    assert control.add_alert(_alert(4)) == 4  # no number was spent on the repeats
    assert [a["id"] for a in control.alerts(after=0)] == ["a-1", "a-3", "a-2", "a-4"]
