"""The test harness reports what goes wrong: a failure in a background thread fails the
test (tests/helpers.py Background), and a failed stop of `up` is reported with the test's
own failure instead of hiding it (tests/e2e/system.py Up as a context manager)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.e2e import system
from tests.helpers import Background, eventually


def _fails() -> None:
    raise AssertionError("the thread's assert")


def test_an_assert_in_a_background_thread_fails_the_test() -> None:
    thread = Background(_fails)
    thread.start()
    with pytest.raises(AssertionError, match="thread _fails failed") as raised:
        thread.join(10)
    assert str(raised.value.__cause__) == "the thread's assert"


def test_check_raises_as_soon_as_the_thread_failed_and_join_waits_for_it() -> None:
    release = threading.Event()
    waiting = Background(release.wait)
    waiting.start()
    waiting.check()  # running: nothing to report yet
    with pytest.raises(AssertionError, match="still running"):
        waiting.join(0.01)
    release.set()
    waiting.join(10)  # ended well: nothing raised
    thread = Background(_fails)
    thread.start()
    eventually(lambda: not thread.is_alive(), timeout=10)
    with pytest.raises(AssertionError, match="thread _fails failed"):
        thread.check()


class _Stopped(system.Up):
    """An `up` that is not started: ``stop`` returns the code (or raises) it is given."""

    def __init__(self, data_dir: Path, code: int | Exception) -> None:
        super().__init__(data_dir)
        self.code = code

    def stop(self) -> int:
        if isinstance(self.code, Exception):
            raise self.code
        return self.code

    def logs(self) -> str:
        return "the end of up's log"


@pytest.fixture
def no_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "free_port", lambda: 1)


@pytest.mark.usefixtures("no_port")
def test_a_failed_stop_fails_a_test_that_passed(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="up exited 1 when stopped.*the end of up's log"):
        with _Stopped(tmp_path, 1):
            pass
    with _Stopped(tmp_path, 0):  # a clean stop: nothing to report
        pass


@pytest.mark.usefixtures("no_port")
def test_a_failed_stop_is_reported_with_the_tests_own_failure(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="the test's assert") as raised:
        with _Stopped(tmp_path, 3):
            raise AssertionError("the test's assert")
    assert raised.value.__notes__ == ["and then up exited 3 when stopped; the log ends: the end"
                                      " of up's log"]
    with pytest.raises(KeyError) as raised2:
        with _Stopped(tmp_path, RuntimeError("no such process")):
            raise KeyError("the test's error")
    [note] = raised2.value.__notes__
    assert note.startswith("and then stopping up failed: Traceback")
    assert "RuntimeError: no such process" in note


@pytest.mark.usefixtures("no_port")
def test_a_stop_that_raises_after_a_passing_test_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no such process"):
        with _Stopped(tmp_path, RuntimeError("no such process")):
            pass
