"""A running lane whose wall clock is stepped (NTP, an operator): deadlines keep to
real seconds, so a stepped clock neither holds a door open nor cuts a wait short."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import pytest

from gate.app.gate_app import GateApp
from gate.config import Config
from gate.core.records import DoorRecord


class SteppableClock:
    """The system clock, plus an offset a test can step like NTP does."""

    realtime = True

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(self.tz) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def gate(tmp_path: Path):  # type: ignore[no-untyped-def]
    conf = Config.model_validate({
        "store": {"path": str(tmp_path / "gate.db")},
        "voice": {"cache_dir": str(tmp_path / "voice")},
        "door": {"unlock_s": 1.0},
        "lanes": [{"name": "in", "direction": "in", "relay": {"driver": "sim", "pin": 22}}]})
    clock = SteppableClock(datetime.now().astimezone().tzinfo)
    doors: list[tuple[str, float]] = []
    seen = threading.Condition()

    def sink(record: object) -> None:
        if isinstance(record, DoorRecord):
            with seen:
                doors.append((record.action, time.monotonic()))
                seen.notify_all()

    app = GateApp(conf, sinks=[sink], prerender=False, clock=clock)
    app.start()

    def wait_for(action: str, timeout: float) -> float:
        with seen:
            assert seen.wait_for(lambda: any(a == action for a, _ in doors), timeout), \
                f"no {action} within {timeout} s: {doors}"
            return next(t for a, t in doors if a == action)

    def relay_open_s() -> float:
        """How long the relay held the door unlocked, from the relay's own writes
        (monotonic, as the pin saw them; the records' fsyncs can lag on a loaded machine)."""
        history = app.drivers._sim_pins["in"].pin(22).history
        locked = history[0][1]
        t_open = next(t for t, level in history if level != locked)
        t_shut = next(t for t, level in history if level == locked and t > t_open)
        return (t_shut - t_open) / 1e9

    try:
        yield app, clock, wait_for, relay_open_s
    finally:
        app.stop()


@pytest.mark.parametrize("step", [timedelta(hours=-1), timedelta(days=-7), timedelta(minutes=30)],
                         ids=["back_1h", "back_7d", "ahead_30min"])
def test_door_relocks_after_its_real_seconds_whatever_the_clock_does(gate, step) -> None:  # type: ignore[no-untyped-def]
    app, clock, wait_for, relay_open_s = gate
    app.open_door("in", "delivery", "guard")
    wait_for("unlock", 5)
    time.sleep(0.2)
    clock.offset += step  # the clock jumps while the door is open
    wait_for("lock", 5)
    # unlock_s is 1 s: locked about a second after unlocking, not an hour (or a
    # week) later, and not at once either.
    assert 0.5 <= relay_open_s() <= 2.5  # (its deadline counts from before the open was recorded)


@pytest.mark.parametrize("step", [timedelta(hours=1), timedelta(hours=-1)], ids=["ahead_1h", "back_1h"])
def test_a_door_opened_just_after_a_step_relocks_on_time(gate, step) -> None:  # type: ignore[no-untyped-def]
    # The step happens while the lane is idle, and the next thing it sees is an
    # event: the deadline that event sets is in the stepped clock already.
    app, clock, wait_for, relay_open_s = gate
    time.sleep(1.5)  # a timer pass or two before the step
    clock.offset += step
    app.open_door("in", "delivery", "guard")
    wait_for("unlock", 5)
    wait_for("lock", 5)
    assert 0.5 <= relay_open_s() <= 2.5  # (its deadline counts from before the open was recorded)
