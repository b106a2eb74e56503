"""Repeated library log lines are held back (issue 10, item 4)."""

from __future__ import annotations

import logging

from contactstream.adapters.logging import HoldRepeats


def _record(msg: str, *args: object, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_the_same_message_passes_once_a_window_and_then_says_how_many_were_held() -> None:
    now = [0.0]
    hold = HoldRepeats(window_s=10, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    passed = []
    for i in range(150):
        now[0] = i * 0.01
        rec = _record(template, 111, "refused")
        if hold.filter(rec):
            passed.append(rec.getMessage())
    assert passed == ["Unable connect to node with id 111: refused"]
    assert hold.filter(_record("another message")) is True  # other texts are apart
    now[0] = 11.0
    later = _record(template, 111, "refused")
    assert hold.filter(later) is True
    assert later.getMessage().endswith("[and 149 more like it in the last 10 s]")
