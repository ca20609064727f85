"""``SimCamera``: a camera that shows what a drill or test tells it to (rendered
codes, empty frames, or an empty stream at a frame rate for the live demo)."""
from __future__ import annotations

import collections
import threading
import time
from typing import Protocol

import numpy as np

from drivers.base import Progress
from drivers.camera.render import render, render_empty
from drivers.frames import CameraError


class _Scanner(Protocol):
    """What ``settle`` waits on (a QrScanner): frames processed so far."""

    progress: Progress


class SimCamera:
    """A camera that shows what a drill or test tells it to.

    ``show(text)`` queues frames of a held-up code followed by one empty frame;
    ``read()`` hands queued frames out first. With ``stream_fps`` > 0 it otherwise
    produces empty frames at that rate in real time (live demo), cycling through
    ``STREAM_VARIANTS`` renderings with different sensor noise, as a real sensor's
    frames differ (what a scanner skipping unchanged frames must cope with); with
    0 it waits up to the timeout and returns None. Frames are read-only and shared (rendered once
    per text and cached). Thread-safe.
    """

    _CACHE_SIZE = 256  # distinct texts kept rendered; a drill reuses a few hundred passes
    STREAM_VARIANTS = 4

    def __init__(self, width: int = 640, height: int = 480, *, stream_fps: float = 0.0,
                 module_px: int | None = None, noise_sigma: float = 4.0,
                 blur_sigma: float = 0.6, seed: int = 0) -> None:
        self.width = width
        self.height = height
        self.stream_fps = stream_fps
        self._render_args = dict(module_px=module_px, noise_sigma=noise_sigma,
                                 blur_sigma=blur_sigma, seed=seed)
        self._empty = _frozen(render_empty(width, height, noise_sigma=noise_sigma, seed=seed))
        self._stream: list[np.ndarray] = [self._empty]
        if stream_fps > 0:
            self._stream += [_frozen(render_empty(width, height, noise_sigma=noise_sigma,
                                                  seed=seed + 1 + i))
                             for i in range(self.STREAM_VARIANTS - 1)]
        self._cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._cond = threading.Condition()
        self._shown = 0
        self._next_stream_at: float | None = None
        self._closed = False

    def frame(self, text: str) -> np.ndarray:
        """The (cached, read-only) frame showing ``text``."""
        with self._cond:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        # Render outside the lock so a reader is not held up behind it.
        img = _frozen(render(text, self.width, self.height, **self._render_args))
        with self._cond:
            self._cache[text] = img
            while len(self._cache) > self._CACHE_SIZE:
                self._cache.popitem(last=False)
        return img

    def show(self, text: str, frames: int = 3) -> None:
        """Queue ``frames`` frames of the code held up, then one empty frame."""
        img = self.frame(text)
        self._enqueue([img] * frames + [self._empty])

    def show_empty(self, frames: int = 1) -> None:
        self._enqueue([self._empty] * frames)

    @property
    def frames_shown(self) -> int:
        """Frames queued plus empty frames streamed: what a scanner will have
        processed once it has caught up."""
        with self._cond:
            return self._shown

    def settle(self, scanner: _Scanner, timeout: float = 5.0) -> bool:
        """Wait until ``scanner`` has processed every frame shown so far."""
        return scanner.progress.wait_for(self.frames_shown, timeout)

    def read(self, timeout: float) -> np.ndarray | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                if self._queue:
                    return self._queue.popleft()
                now = time.monotonic()
                wake = deadline
                if self.stream_fps > 0:
                    period = 1.0 / self.stream_fps
                    # After an idle spell restart the schedule instead of bursting
                    # out every frame "missed".
                    if self._next_stream_at is None or self._next_stream_at < now - period:
                        self._next_stream_at = now
                    if now >= self._next_stream_at:
                        self._next_stream_at += period
                        self._shown += 1
                        return self._stream[self._shown % len(self._stream)]
                    wake = min(deadline, self._next_stream_at)
                if now >= deadline:
                    return None
                self._cond.wait(wake - now)
        return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()

    def _enqueue(self, frames: list[np.ndarray]) -> None:
        with self._cond:
            if self._closed:
                raise CameraError("SimCamera is closed")
            self._queue.extend(frames)
            self._shown += len(frames)
            self._cond.notify_all()


def _frozen(img: np.ndarray) -> np.ndarray:
    img.setflags(write=False)  # shared between reads: nobody may draw on it
    return img
