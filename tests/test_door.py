"""The lock relay and debounced contact inputs on mock pins."""
from __future__ import annotations

import threading

import pytest

from drivers.door import DigitalInput, Relay, SimInput
from drivers.gpio import MockFactory

MS = 1_000_000  # ns


class ManualTimers:
    """Timer factory whose timers fire only when the test says so."""

    def __init__(self) -> None:
        self.made: list[ManualTimer] = []

    def __call__(self, seconds: float, fn) -> "ManualTimer":
        timer = ManualTimer(seconds, fn)
        self.made.append(timer)
        return timer


class ManualTimer:
    def __init__(self, seconds: float, fn) -> None:
        self.seconds, self.fn = seconds, fn
        self.started = self.cancelled = False

    def start(self) -> None:
        self.started = True

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        # Deliberately ignores `cancelled`: a threading.Timer cancelled too late
        # still runs, and the relay must shrug that off.
        self.fn()


# --------------------------------------------------------------------- relay


def test_relay_starts_locked_and_follows_commands():
    out = MockFactory().output(17, initial=1)
    relay = Relay(out)
    assert not relay.unlocked and out.read() == 0
    relay.unlock()
    assert relay.unlocked and out.read() == 1
    relay.lock()
    assert out.levels == [1, 0, 1, 0]


def test_active_low_relay_is_locked_with_the_pin_high():
    out = MockFactory().output(17, initial=0)
    relay = Relay(out, active_high=False)
    assert out.read() == 1 and not relay.unlocked
    relay.unlock()
    assert out.read() == 0


def test_pulse_returns_at_once_and_relocks_by_itself():
    out = MockFactory().output(17)
    relay = Relay(out)
    relay.pulse(0.05)
    assert out.levels[:2] == [0, 0] and 1 in out.levels  # unlocked by the time pulse returned
    assert relay.wait_locked(timeout=5.0)
    assert out.levels == [0, 0, 1, 0]


def test_a_new_pulse_or_lock_replaces_the_pending_relock():
    timers = ManualTimers()
    out = MockFactory().output(17)
    relay = Relay(out, timer=timers)
    relay.pulse(5)
    relay.pulse(8)
    first, second = timers.made
    assert first.cancelled and second.started and second.seconds == 8
    first.fire()  # the old timer went off anyway
    assert relay.unlocked
    second.fire()
    assert not relay.unlocked

    relay.pulse(5)
    relay.lock()
    relay.unlock()  # held open on purpose
    timers.made[-1].fire()
    assert relay.unlocked


def test_close_leaves_the_door_locked_even_mid_pulse():
    timers = ManualTimers()
    out = MockFactory().output(17)
    relay = Relay(out, timer=timers)
    relay.pulse(30)
    relay.close()
    assert not relay.unlocked and out.read() == 0
    assert timers.made[0].cancelled


# ---------------------------------------------------------- digital inputs


class Changes(list):
    def __call__(self, active: bool) -> None:
        self.append(active)


def exit_button(factory: MockFactory, debounce_ms: float = 50, **kw):
    """An exit button to ground on a pulled-up input: active low."""
    changes = Changes()
    inp = DigitalInput(
        factory.input(5, pull="up"),
        active_high=False,
        debounce_ms=debounce_ms,
        on_change=changes,
        name="exit_button",
        **kw,
    )
    return inp, changes, SimInput(factory, 5, active_high=False)


def test_active_low_input_starts_inactive_and_reports_a_steady_press():
    factory = MockFactory()
    inp, changes, sim = exit_button(factory)
    assert not inp.active and changes == []
    sim.set(True)
    assert sim.settle(inp)
    assert changes == [True] and inp.active
    sim.set(False)
    assert sim.settle(inp)
    assert changes == [True, False] and not inp.active


def test_active_high_input_follows_the_pin_level():
    factory = MockFactory()
    changes = Changes()
    inp = DigitalInput(
        factory.input(6, pull="down"),
        active_high=True,
        debounce_ms=20,
        on_change=changes,
        name="pir",
    )
    sim = SimInput(factory, 6, active_high=True)
    assert not inp.active
    sim.set(True)
    assert sim.settle(inp)
    assert changes == [True] and factory.pin(6).read() == 1


def test_a_bounce_shorter_than_the_debounce_is_filtered():
    factory = MockFactory()
    inp, changes, sim = exit_button(factory, debounce_ms=500)
    t = 10_000 * MS
    sim.set(True, t_ns=t)
    sim.set(False, t_ns=t + 3 * MS)  # back after 3 ms: a glitch
    assert sim.settle(inp)
    assert changes == [] and not inp.active


def test_contact_bounce_then_steady_is_one_change():
    factory = MockFactory()
    inp, changes, sim = exit_button(factory, debounce_ms=30)
    t = 10_000 * MS
    for i in range(7):  # chatter 1 ms apart, ending pressed
        sim.set(i % 2 == 0, t_ns=t + i * MS)
    assert sim.settle(inp)
    assert changes == [True] and inp.active
    assert inp.progress.value == sim.edges_sent == 7


def test_a_level_that_held_long_enough_counts_by_its_timestamps():
    # The press lasted 400 ms by the edge timestamps; the release then waits out
    # the debounce on the timer.
    timers = ManualTimers()
    factory = MockFactory()
    inp, changes, sim = exit_button(factory, debounce_ms=200, timer=timers)
    t = 10_000 * MS
    sim.set(True, t_ns=t)
    sim.set(False, t_ns=t + 400 * MS)
    assert changes == [True]
    assert inp.progress.value == 1  # the release is still pending
    timers.made[-1].fire()
    assert changes == [True, False]
    assert sim.settle(inp, timeout=0.1)


def test_the_trailing_timer_of_a_filtered_edge_does_nothing():
    timers = ManualTimers()
    factory = MockFactory()
    inp, changes, sim = exit_button(factory, debounce_ms=200, timer=timers)
    t = 10_000 * MS
    sim.set(True, t_ns=t)
    sim.set(False, t_ns=t + 5 * MS)
    timers.made[0].fire()  # a cancelled timer that ran anyway
    assert changes == [] and not inp.active


def test_without_debounce_changes_are_reported_at_once_on_the_callback_thread():
    factory = MockFactory()
    threads: list[str] = []
    changes = Changes()

    def on_change(active: bool) -> None:
        changes(active)
        threads.append(threading.current_thread().name)

    inp = DigitalInput(
        factory.input(7, pull="up"),
        active_high=False,
        debounce_ms=0,
        on_change=on_change,
        name="door",
    )
    sim = SimInput(factory, 7, active_high=False)
    sim.set(True)
    assert changes == [True]  # before set() returned
    sim.set(False)
    sim.set(True)
    assert changes == [True, False, True]
    assert threads == [threading.current_thread().name] * 3
    assert inp.progress.value == 3


def test_set_to_the_current_state_sends_no_edge():
    factory = MockFactory()
    inp, changes, sim = exit_button(factory)
    sim.set(False)
    assert sim.edges_sent == 0 and sim.settle(inp, timeout=0.1)


def test_close_drops_a_pending_change_and_stops_listening():
    timers = ManualTimers()
    factory = MockFactory()
    inp, changes, sim = exit_button(factory, debounce_ms=200, timer=timers)
    sim.set(True)
    inp.close()
    assert timers.made[0].cancelled
    assert sim.settle(inp, timeout=0.1)  # nothing left for a drill to wait on
    sim.set(False)
    sim.set(True)
    assert changes == [] and factory.pin(5).when_edge is None


def test_negative_debounce_is_refused():
    with pytest.raises(ValueError):
        DigitalInput(
            MockFactory().input(5), active_high=True, debounce_ms=-1, on_change=print, name="x"
        )
