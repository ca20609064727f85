"""``MockFactory``: pins that exist only in memory, driven by tests and simulators."""
from __future__ import annotations

import threading
import time

from drivers.gpio.base import EdgeCallback, Pull, _check_pull, _claim

class MockInputPin:
    """An input a test or simulator drives. A pull-up input idles high, otherwise low."""

    def __init__(self, number: int, pull: Pull, lock: threading.RLock) -> None:
        self.number = number
        self.pull = pull
        self.when_edge: EdgeCallback | None = None
        self._level = 1 if pull == "up" else 0
        # Shared by all pins of one factory: callbacks run one at a time, as
        # they do on a real backend's single callback thread.
        self._lock = lock

    def read(self) -> int:
        return self._level

    def drive(self, level: int, t_ns: int | None = None) -> bool:
        """Set the level; on a change call ``when_edge`` synchronously.

        Returns True if the level changed (an edge was delivered)."""
        level = 1 if level else 0
        with self._lock:
            if level == self._level:
                return False
            self._level = level
            callback = self.when_edge
            if callback is not None:
                callback(level, time.monotonic_ns() if t_ns is None else t_ns)
            return True

    def drive_low(self, t_ns: int | None = None) -> bool:
        return self.drive(0, t_ns)

    def drive_high(self, t_ns: int | None = None) -> bool:
        return self.drive(1, t_ns)

    def __repr__(self) -> str:
        return f"MockInputPin(GPIO{self.number}, level={self._level})"


class MockOutputPin:
    """An output that remembers every write as (t_ns, level), the initial level first."""

    def __init__(self, number: int, initial: int) -> None:
        self.number = number
        self.history: list[tuple[int, int]] = []
        self._level = 0
        self._lock = threading.Lock()
        self.write(initial)

    def write(self, level: int) -> None:
        level = 1 if level else 0
        with self._lock:
            self._level = level
            self.history.append((time.monotonic_ns(), level))

    def read(self) -> int:
        return self._level

    @property
    def levels(self) -> list[int]:
        """Just the levels written, oldest first."""
        with self._lock:
            return [level for _, level in self.history]

    def __repr__(self) -> str:
        return f"MockOutputPin(GPIO{self.number}, level={self._level})"


MockPin = MockInputPin | MockOutputPin


class MockFactory:
    """Pins that exist only in memory. Keeps its pins so a simulator can find the
    one a driver claimed: ``factory.pin(n)``."""

    name = "mock"

    def __init__(self) -> None:
        self._pins: dict[int, MockPin] = {}
        self._lock = threading.RLock()

    def input(self, pin: int, *, pull: Pull = None) -> MockInputPin:
        _check_pull(pull)
        with self._lock:
            _claim(self._pins, pin)
            p = MockInputPin(pin, pull, self._lock)
            self._pins[pin] = p
            return p

    def output(self, pin: int, *, initial: int = 0) -> MockOutputPin:
        with self._lock:
            _claim(self._pins, pin)
            p = MockOutputPin(pin, initial)
            self._pins[pin] = p
            return p

    def pin(self, number: int) -> MockPin:
        try:
            return self._pins[number]
        except KeyError:
            raise KeyError(f"GPIO{number} has not been claimed on this MockFactory") from None

    def close(self) -> None:
        with self._lock:
            for p in self._pins.values():
                if isinstance(p, MockInputPin):
                    p.when_edge = None
            self._pins.clear()
