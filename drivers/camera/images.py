"""``ImageFolderSource``: each image file of a folder as a frame, for replaying
captures."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np

from drivers.frames import CameraError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pbm", ".tif",
                  ".tiff", ".webp")


class ImageFolderSource:
    """Each image file of a folder (sorted by name) as a frame, then nothing.

    Files OpenCV cannot read are skipped and counted in ``unreadable``. Once the
    folder is used up ``read`` waits out its timeout and returns None, like a camera
    with nothing in view, so a reading loop does not spin.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        folder = Path(path)
        if not folder.is_dir():
            raise CameraError(f"image folder {str(folder)!r} does not exist")
        self.files: list[Path] = sorted(
            f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        self.unreadable = 0
        self._next = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self.files)

    def read(self, timeout: float) -> np.ndarray | None:
        with self._lock:
            while not self._closed.is_set() and self._next < len(self.files):
                f = self.files[self._next]
                self._next += 1
                img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                if img is not None:
                    return img
                self.unreadable += 1
        self._closed.wait(timeout)
        return None

    def close(self) -> None:
        self._closed.set()
