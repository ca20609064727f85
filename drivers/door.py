"""The door's lock relay and its contact inputs (door contact, exit button, PIR).

``Relay`` drives the lock; ``DigitalInput`` turns a bouncing contact into clean
active/inactive changes. Both know nothing of why the door opens.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol

from drivers.base import Progress
from drivers.gpio import InputPin, MockFactory, MockInputPin, OutputPin

log = logging.getLogger(__name__)


class _Timer(Protocol):
    def start(self) -> None: ...

    def cancel(self) -> None: ...


#: Makes the (non-blocking) timers behind Relay.pulse and DigitalInput's trailing
#: debounce check; threading.Timer unless a test wants to fire them by hand.
TimerFactory = Callable[[float, Callable[[], None]], _Timer]


def _thread_timer(seconds: float, fn: Callable[[], None]) -> _Timer:
    timer = threading.Timer(seconds, fn)
    timer.daemon = True  # a pending relock must not keep the process alive
    return timer


class Relay:
    """The lock relay. Energised (pin at its active level) = unlocked.

    Starts locked. ``pulse(s)`` unlocks now and relocks after ``s`` seconds on a
    timer without blocking; any later ``pulse``, ``unlock`` or ``lock`` replaces
    that pending relock. ``close()`` leaves the door locked.
    """

    def __init__(
        self, pin: OutputPin, *, active_high: bool = True, timer: TimerFactory = _thread_timer
    ) -> None:
        self._pin = pin
        self._on = 1 if active_high else 0
        self._make_timer = timer
        self._cond = threading.Condition()
        self._timer: _Timer | None = None
        self._generation = 0  # bumps on every command, so a stale timer does nothing
        self._unlocked = False
        self.lock()

    @property
    def unlocked(self) -> bool:
        return self._unlocked

    def _set(self, unlocked: bool) -> None:
        self._pin.write(self._on if unlocked else 1 - self._on)
        self._unlocked = unlocked
        self._cond.notify_all()

    def _cancel_timer(self) -> int:
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return self._generation

    def unlock(self) -> None:
        """Unlock until told otherwise."""
        with self._cond:
            self._cancel_timer()
            self._set(True)

    def lock(self) -> None:
        with self._cond:
            self._cancel_timer()
            self._set(False)

    def pulse(self, seconds: float) -> None:
        """Unlock now and relock after ``seconds``; returns at once."""
        if seconds <= 0:
            raise ValueError("pulse length must be positive")
        with self._cond:
            generation = self._cancel_timer()
            self._set(True)
            self._timer = self._make_timer(seconds, lambda: self._relock(generation))
            self._timer.start()

    def _relock(self, generation: int) -> None:
        with self._cond:
            # A cancelled threading.Timer may already be running: only the
            # latest command's timer may relock.
            if generation != self._generation:
                return
            self._timer = None
            self._set(False)

    def wait_locked(self, timeout: float = 5.0) -> bool:
        """Block until locked (e.g. a pulse has ended); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._unlocked, timeout)

    def close(self) -> None:
        self.lock()


class DigitalInput:
    """A contact or sensor on one input, reported as debounced active/inactive.

    A new level counts only once it has held for ``debounce_ms``: judged by the
    edges' timestamps when the next edge comes, or by a timer when none does
    (the trailing check). ``on_change(active)`` is called on changes only, one
    at a time and in order (under the input's lock; it may read ``active``).
    With ``debounce_ms=0`` every change is reported at once on the GPIO
    callback thread.

    ``progress`` advances once per raw edge when that edge's fate is decided
    (accepted, or filtered as a bounce), so a simulator that waits for all its
    edges also waits out any debounce still pending.
    """

    def __init__(
        self,
        pin: InputPin,
        *,
        active_high: bool,
        debounce_ms: float,
        on_change: Callable[[bool], None],
        name: str,
        timer: TimerFactory = _thread_timer,
    ) -> None:
        if debounce_ms < 0:
            raise ValueError("debounce_ms must not be negative")
        self.name = name
        self.progress = Progress()
        self._pin = pin
        self._active_level = 1 if active_high else 0
        self._debounce_ns = int(debounce_ms * 1_000_000)
        self._debounce_s = debounce_ms / 1000.0
        self._on_change = on_change
        self._make_timer = timer
        self._lock = threading.RLock()  # re-entrant: on_change may call back in
        level = 1 if pin.read() else 0
        self._stable = level  # the debounced level
        self._raw = level  # the level after the latest edge
        self._pending: tuple[int, int] | None = None  # (level, t_ns) not yet held long enough
        self._timer: _Timer | None = None
        self._generation = 0
        self._closed = False
        pin.when_edge = self._on_edge

    @property
    def active(self) -> bool:
        return self._stable == self._active_level

    def _report(self, level: int) -> None:
        if level == self._stable:
            return
        self._stable = level
        try:
            self._on_change(level == self._active_level)
        except Exception:
            log.exception("%s: on_change failed", self.name)

    def _drop_pending(self) -> tuple[int, int] | None:
        pending, self._pending = self._pending, None
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return pending

    def _on_edge(self, level: int, t_ns: int) -> None:
        level = 1 if level else 0
        with self._lock:
            if self._closed:
                return
            decided = 1  # this edge, unless it starts a wait below
            if level != self._raw:  # (a repeated level is no change at all)
                self._raw = level
                if self._debounce_ns == 0:
                    self._report(level)
                else:
                    pending = self._drop_pending()
                    if pending is not None:
                        decided += 1  # the pending edge's fate is sealed now
                        pending_level, pending_t = pending
                        if t_ns - pending_t >= self._debounce_ns:
                            self._report(pending_level)  # it held long enough
                        # else: it was a bounce, filtered
                    if level != self._stable:
                        self._pending = (level, t_ns)
                        generation = self._generation
                        self._timer = self._make_timer(
                            self._debounce_s, lambda: self._expire(generation)
                        )
                        self._timer.start()
                        decided -= 1
            if decided:
                self.progress.advance(decided)

    def _expire(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation or self._pending is None:
                return  # superseded by a later edge
            level, _ = self._pending
            self._pending = None
            self._timer = None
            self._report(level)
            self.progress.advance()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._drop_pending() is not None:
                self.progress.advance()  # the pending edge is dropped: decided
            if self._pin.when_edge == self._on_edge:
                self._pin.when_edge = None


class SimInput:
    """Drives a MockFactory input as the device wired to it would."""

    def __init__(self, factory: MockFactory, pin: int, *, active_high: bool) -> None:
        self._factory = factory
        self._number = pin
        self._active_level = 1 if active_high else 0
        self.edges_sent = 0

    def _pin(self) -> MockInputPin:
        pin = self._factory.pin(self._number)  # on use: the sim may predate the driver
        if not isinstance(pin, MockInputPin):
            raise TypeError(f"GPIO{self._number} is not an input")
        return pin

    def set(self, active: bool, t_ns: int | None = None) -> None:
        """Make the input (in)active; nothing happens if it already is."""
        level = self._active_level if active else 1 - self._active_level
        if self._pin().drive(level, t_ns):
            self.edges_sent += 1

    def settle(self, inp: DigitalInput, timeout: float = 5.0) -> bool:
        """Wait until ``inp`` has handled every edge sent and no debounce is pending."""
        return inp.progress.wait_for(self.edges_sent, timeout)
