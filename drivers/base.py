"""What every driver shares: a progress counter that simulators and drills wait on,
and a small fault-reporting callback type.

Drivers know nothing of passes, lanes or policy. They turn hardware into calls of
plain callbacks (``on_code(text)``, ``on_card(number, bits)`` ...) that the lane
wiring binds to its queue, and they carry out effects (relay, voice).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

# device name, healthy?, human-readable detail
FaultCallback = Callable[[str, bool, str], None]


def no_fault(device: str, ok: bool, detail: str) -> None:
    """Default fault sink for drivers used on their own (scripts, tests)."""


class Progress:
    """A monotonically increasing count of input units a driver has finished with
    (frames decoded, serial bytes parsed, Wiegand frames ended, pin edges handled).

    A simulator counts what it has sent; a drill waits until the real driver has
    processed that much, so it can move the clock on without racing the driver's
    thread. Real deployments only ever read it for health figures.
    """

    def __init__(self) -> None:
        self._n = 0
        self._cond = threading.Condition()

    @property
    def value(self) -> int:
        return self._n

    def advance(self, n: int = 1) -> None:
        with self._cond:
            self._n += n
            self._cond.notify_all()

    def wait_for(self, target: int, timeout: float = 5.0) -> bool:
        """Block until at least ``target`` units are done; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._n >= target, timeout)


@dataclass
class Counters:
    """Named error/garbage counters a driver keeps (shown by `gate doctor`, sent in status)."""

    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


class Closeable(Protocol):
    def close(self) -> None: ...
