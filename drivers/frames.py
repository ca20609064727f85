"""What the camera and QR drivers share: the ``FrameSource`` contract (greyscale
frames from ``read(timeout)``), its ``CameraError``, and ``to_grey``."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class CameraError(RuntimeError):
    """A frame source could not be opened, or stopped delivering frames."""


class FrameSource(Protocol):
    def read(self, timeout: float) -> np.ndarray | None:
        """The next greyscale frame, or None if none came within ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


def to_grey(frame: np.ndarray) -> np.ndarray:
    """BGR, BGRA or greyscale uint8 frame -> 2-D C-contiguous uint8 greyscale.

    A grey frame is returned as is (no copy), so a camera's Y plane costs nothing.
    Raises ValueError for anything that is not a uint8 image.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image, got {type(frame).__name__} "
                         f"{getattr(frame, 'dtype', '')}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        return np.ascontiguousarray(frame)
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        import cv2  # lazy: decoders and the scanner do not otherwise need OpenCV

        code = cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(frame), code)
    raise ValueError(f"expected a grey, BGR or BGRA image, got shape {frame.shape}")
