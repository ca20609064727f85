"""``LatestFrame``: the hand-off between a live camera's grab thread and its reader
that keeps only the newest frame."""
from __future__ import annotations

import threading

import numpy as np

from drivers.frames import CameraError

class LatestFrame:
    """The hand-off between a camera's grab thread and its reader: only the newest
    frame is kept, each is handed out once, and a failing camera wakes the reader
    with the reason instead of leaving it to wait out its timeout."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._seq = 0  # frames put so far
        self._taken = 0  # seq of the last frame handed out
        self._failing: str | None = None
        self._closed = False

    def put(self, frame: np.ndarray) -> None:
        with self._cond:
            self._latest = frame
            self._seq += 1
            self._failing = None
            self._cond.notify_all()

    def fail(self, why: str) -> None:
        with self._cond:
            self._failing = why
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float, what: str) -> np.ndarray | None:
        """The next new frame; None on timeout or once closed; CameraError while failing."""
        with self._cond:
            fresh = self._cond.wait_for(
                lambda: self._seq > self._taken or self._failing is not None or self._closed, timeout)
            if not fresh or self._closed:
                return None
            if self._seq <= self._taken:
                raise CameraError(self._failing or f"{what} failed")
            self._taken = self._seq
            return self._latest
