"""``VideoFileSource``: the frames of a video file in greyscale, for replaying
captures."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np

from drivers.frames import CameraError, to_grey

class VideoFileSource:
    """Frames of a video file, in greyscale; with ``loop`` it starts over at the end."""

    def __init__(self, path: str | os.PathLike[str], loop: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CameraError(f"video file {str(self.path)!r} does not exist")
        self.loop = loop
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"cannot open video file {str(self.path)!r}")
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.exhausted = False

    def read(self, timeout: float) -> np.ndarray | None:
        with self._lock:
            if not self._closed.is_set() and not self.exhausted:
                ok, frame = self._cap.read()
                if not ok and self.loop:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, frame = self._cap.read()
                if ok and frame is not None:
                    return to_grey(frame)
                self.exhausted = True
        self._closed.wait(timeout)  # end of file: behave like an idle camera
        return None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._cap.release()
