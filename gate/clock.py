"""Where the lane's time comes from: the system clock, or a clock a drill moves."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Protocol


class Clock(Protocol):
    realtime: bool

    def now(self) -> datetime:
        """Aware wall-clock time in the gate's time zone."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for hold and debounce windows)."""


class SystemClock:
    realtime = True

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def monotonic(self) -> float:
        return time.monotonic()


class DrillClock:
    """Stands still until the drill runner moves it, so a drill runs faster than
    real time and the same drill prints the same timeline every run."""

    realtime = False

    def __init__(self, start: datetime, tz: tzinfo | None = None) -> None:
        self.start = start.astimezone(tz) if tz else start
        # Elapsed time is counted in UTC: local arithmetic would jump an hour at a
        # daylight-saving change.
        self._start_utc = self.start.astimezone(timezone.utc)
        self._offset = 0.0
        self._exact: datetime | None = None
        self._lock = threading.Lock()

    def set(self, seconds_since_start: float) -> None:
        with self._lock:
            if seconds_since_start < self._offset:
                raise ValueError("a drill clock only moves forward")
            self._offset = seconds_since_start
            self._exact = None

    def set_time(self, moment: datetime) -> None:
        """Move to an exact moment (a lane's deadline), without float rounding."""
        with self._lock:
            offset = moment.astimezone(timezone.utc) - self._start_utc
            if offset.total_seconds() < self._offset - 1e-6:
                raise ValueError("a drill clock only moves forward")
            self._offset = offset.total_seconds()
            self._exact = moment.astimezone(self.start.tzinfo)  # the gate's zone, as now() always is

    @property
    def elapsed(self) -> float:
        return self._offset

    def now(self) -> datetime:
        exact = self._exact
        if exact is not None:
            return exact
        return (self._start_utc + timedelta(seconds=self._offset)).astimezone(self.start.tzinfo)

    def at(self, seconds_since_start: float) -> datetime:
        return (self._start_utc + timedelta(seconds=seconds_since_start)).astimezone(self.start.tzinfo)

    def since_start(self, moment: datetime) -> float:
        return (moment.astimezone(timezone.utc) - self._start_utc).total_seconds()

    def monotonic(self) -> float:
        return self._offset


class TimeFloor:
    """The latest time the gate knows has passed: its last event, its last sync,
    central's signed timestamps. A gate without a real-time clock may boot in 1970
    or last week; validity checks never use a time below the floor, so setting the
    clock back does not revive an expired pass."""

    def __init__(self, initial: datetime | None = None) -> None:
        self._floor = initial
        self._lock = threading.Lock()

    def raise_to(self, moment: datetime) -> None:
        with self._lock:
            if self._floor is None or moment > self._floor:
                self._floor = moment

    @property
    def value(self) -> datetime | None:
        return self._floor

    def apply(self, now: datetime) -> tuple[datetime, bool]:
        """(the time to judge by, whether the clock was behind the floor)."""
        floor = self._floor
        if floor is not None and now < floor:
            return floor.astimezone(now.tzinfo) if now.tzinfo else floor, True
        return now, False
