"""Where the lane's time comes from: the system clock, or a clock a drill moves."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time
import uuid
from pathlib import Path
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
        self.boot_id = boot_id()
        self._sync_at, self._synced = float("-inf"), False

    def synchronized(self) -> bool:
        # Asked for every event: the kernel's answer is kept for a second.
        now = time.monotonic()
        if now - self._sync_at >= 1.0:
            self._sync_at, self._synced = now, system_clock_synchronized()
        return self._synced

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
        # A drill's gate keeps good time unless a test says otherwise; each drill
        # clock is a boot of its own (its monotonic clock starts at zero).
        self.synced = True
        self.boot_id = uuid.uuid4().hex

    def synchronized(self) -> bool:
        return self.synced

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


def boot_id() -> str:
    """This boot's id (Linux): the monotonic clock is only comparable within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_TIME_ERROR = 5  # adjtimex: the clock is not synchronised (STA_UNSYNC set)
_TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


def system_clock_synchronized() -> bool:
    """Whether the kernel says an NTP client (timesyncd, chrony, ntpd) keeps the clock
    in step: systemd-timesyncd's flag file, else adjtimex's state (read-only call)."""
    if _TIMESYNCD_FLAG.exists():
        return True
    try:
        buf = ctypes.create_string_buffer(512)  # struct timex; modes = 0: only read
        state = _libc().adjtimex(buf)
    except (OSError, AttributeError):
        return False
    return state >= 0 and state != _TIME_ERROR


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    # Looked up once: find_library runs ldconfig, far too slow for every event.
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


from gate.core.floor import TimeFloor  # noqa: E402,F401  (where the lane imports it from)
