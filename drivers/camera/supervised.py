"""``SupervisedCamera``: the frame-age watchdog and reopen loop around a live camera
that stalls or is unplugged."""
from __future__ import annotations

import threading
import time
from typing import Callable, NoReturn

import numpy as np

from drivers.base import Counters
from drivers.frames import CameraError, FrameSource

class SupervisedCamera:
    """A live camera that heals itself: the frame-age watchdog and reopen loop.

    ``opener`` makes the real source (a V4L2Camera, a Picamera2Camera). It is
    called lazily, so a gate whose camera is unplugged at boot still starts (its
    lane runs degraded) instead of failing. ``read`` raises CameraError when the
    camera cannot be opened, when a read fails, or when no frame has come for
    ``stall_s`` seconds (a hung USB camera delivers nothing and reports nothing);
    the QrScanner reports that as the camera's fault (``on_fault``: the lane's
    ``sensor_fault`` alarm). The broken source is closed and reopened after a
    backoff (``reopen_s``: first and longest wait, doubling between); the first
    frame after that reports the camera healthy again.

    ``frame_age`` (seconds since the last frame) and ``counters`` (opens,
    open_failures, stalls, read_failures) are for `gate doctor` and status.
    """

    def __init__(self, opener: Callable[[], FrameSource], *, stall_s: float = 3.0,
                 reopen_s: tuple[float, float] = (0.5, 10.0), name: str = "camera") -> None:
        if stall_s <= 0 or not 0 < reopen_s[0] <= reopen_s[1]:
            raise ValueError("need stall_s > 0 and reopen_s = (first, longest), 0 < first <= longest")
        self.opener = opener
        self.stall_s = stall_s
        self.reopen_s = reopen_s
        self.name = name
        self.counters = Counters()
        self.last_error: str | None = None
        self._source: FrameSource | None = None
        self._since: float | None = None  # last frame, or when the source was opened
        self._last_frame: float | None = None
        self._next_open = 0.0
        self._delay = reopen_s[0]
        self._lock = threading.Lock()  # one reader; close() may come from another thread
        self._closed = threading.Event()

    @property
    def is_open(self) -> bool:
        return self._source is not None

    @property
    def frame_age(self) -> float | None:
        """Seconds since the last frame (None before the first)."""
        last = self._last_frame
        return None if last is None else time.monotonic() - last

    def read(self, timeout: float) -> np.ndarray | None:
        if self._closed.is_set():
            self._closed.wait(timeout)
            return None
        with self._lock:
            if self._source is None:
                wait = self._next_open - time.monotonic()
                if wait > 0:  # backing off: the fault is already reported
                    self._closed.wait(min(wait, timeout))
                    return None
                self._open()
            source = self._source
            assert source is not None
            try:
                frame = source.read(timeout)
            except Exception as exc:
                if self._closed.is_set():
                    return None  # closed under the read: shutting down, not a fault
                self.counters.inc("read_failures")
                self._drop(f"camera {self.name!r} read failed: {exc}")
            if self._closed.is_set():
                return None
            now = time.monotonic()
            if frame is not None:
                self._since = self._last_frame = now
                self._delay = self.reopen_s[0]  # it works: the next outage starts afresh
                self.last_error = None
                return frame
            if self._since is not None and now - self._since >= self.stall_s:
                self.counters.inc("stalls")
                self._drop(f"camera {self.name!r}: no frame for {now - self._since:.1f} s "
                           "(stalled or unplugged); reopening")
            return None

    def _open(self) -> None:
        try:
            self._source = self.opener()
        except Exception as exc:
            self.counters.inc("open_failures")
            self._schedule_reopen()
            self.last_error = f"cannot open camera {self.name!r}: {exc}"
            raise CameraError(self.last_error) from exc
        self.counters.inc("opens")
        self._since = time.monotonic()

    def _drop(self, detail: str) -> NoReturn:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except Exception:
                pass
        self._schedule_reopen()
        self.last_error = detail
        raise CameraError(detail)

    def _schedule_reopen(self) -> None:
        self._next_open = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.reopen_s[1])

    def close(self) -> None:
        self._closed.set()
        source = self._source
        if source is not None:
            source.close()  # outside the lock: this wakes a read blocked in the source
        with self._lock:
            self._source = None
