"""Which camera frames are worth decoding (issue 17: idle is nearly free).

At a gate most frames of most hours show the same empty scene. ``ChangeGate``
compares a tiny copy of each frame (every 8th row and every 4th pixel of it,
area-averaged to one cell per 16 x 16 pixels: 80 x 45 cells at 720p, about 0.03 ms
with the frame in cache and 0.15 ms without, which is how a camera's frames come;
reading every 4th row instead made that 0.6 ms) with the copy of the
last decoded frame, and lets a frame through to the decoder only when

* something in front of the camera changed: ``min_cells`` cells or more moved by
  ``threshold`` grey levels or more (a cell averages 8 pixels: sensor noise of 4
  grey levels moves it by about 2, and the largest of 3,600 such moves stays
  near 8; twice that noise still rarely moves three cells that far, while a pass
  held up at arm's length covers 25 cells or more);
* the lane says someone is there (``presence(True)``, from its PIR), until it
  says they are gone;
* the decoder saw a code, or something code-like (``busy``), on the frame before:
  a code held up is followed frame by frame, as without the gate; something
  code-like that never reads stops being followed ``linger`` frames after the
  scene last changed;
* the last decode failed (no reference to compare with);
* ``full_check_s`` seconds passed since the last decoded frame: the slow full check,
  which finds a code that arrived without a visible change (held perfectly still
  before the reference was taken, a slow fade-in).

A frame let through after skipped ones is ``fresh``: the scanner asks the decoder
to look at it fully (``restart``), so a code that appears is read on that frame.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

ROW_STRIDE, COL_STRIDE = 8, 4  # rows and pixels read: an eighth of the frame's memory
CELL = 16  # frame pixels per cell side


@dataclass(frozen=True)
class Verdict:
    """Whether to decode a frame, why, and whether frames were skipped before it."""

    decode: bool
    reason: str  # "changed", "presence", "busy", "check", "first", "unchanged"
    fresh: bool = False


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """The frame as one grey level per CELL x CELL pixels (uint8). A colour frame
    contributes its green channel, close enough to luminance here."""
    import cv2

    sub = frame[::ROW_STRIDE, ::COL_STRIDE]
    if sub.ndim == 3:
        sub = sub[:, :, 1 if sub.shape[2] >= 3 else 0]
    h, w = sub.shape[:2]
    size = (max(1, w // (CELL // COL_STRIDE)), max(1, h // (CELL // ROW_STRIDE)))
    return cv2.resize(np.ascontiguousarray(sub), size, interpolation=cv2.INTER_AREA)


class ChangeGate:
    """Decides per frame whether to decode it (see the module docstring).

    ``clock`` is real time (the camera's), not a drill's simulated clock: the slow
    full check is about how long a code may stay unread. ``counters``-style tallies
    live in ``reasons`` (how many frames went through for each reason, and how
    many were skipped as "unchanged").
    """

    def __init__(self, *, threshold: int = 16, min_cells: int = 3, full_check_s: float = 1.0,
                 linger: int = 8, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < threshold < 255 or min_cells < 1 or full_check_s <= 0 or linger < 0:
            raise ValueError("need 0 < threshold < 255, min_cells >= 1, full_check_s > 0 "
                             "and linger >= 0")
        self.threshold = threshold
        self.min_cells = min_cells
        self.full_check_s = full_check_s
        self.linger = linger
        self.clock = clock
        self.reasons: dict[str, int] = {}
        self._ref: np.ndarray | None = None
        self._last_decode = -float("inf")
        self._present = False
        self._busy = False
        self._since_change = 0  # decoded frames since the last change
        self._skipped = False

    def presence(self, present: bool) -> None:
        """Someone is in front of the lane (PIR) or has gone. Thread-safe (one flag)."""
        self._present = bool(present)

    @property
    def present(self) -> bool:
        return self._present

    def check(self, frame: np.ndarray) -> Verdict:
        import cv2

        thumb = thumbnail(frame)
        ref = self._ref
        now = self.clock()
        if ref is None or ref.shape != thumb.shape:
            reason = "first"
        elif self._moved(cv2.absdiff(thumb, ref)) >= self.min_cells:
            reason = "changed"
        elif self._present:
            reason = "presence"
        elif self._busy and self._since_change < self.linger:
            reason = "busy"
        elif now - self._last_decode >= self.full_check_s:
            reason = "check"
        else:
            reason = "unchanged"
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if reason == "unchanged":
            self._skipped = True
            return Verdict(False, reason)
        fresh, self._skipped = self._skipped, False
        self._since_change = 0 if reason in ("changed", "first") else self._since_change + 1
        self._ref = thumb
        self._last_decode = now
        return Verdict(True, reason, fresh)

    def _moved(self, diff: np.ndarray) -> int:
        import cv2

        return cv2.countNonZero(cv2.threshold(diff, self.threshold - 1, 255,
                                              cv2.THRESH_BINARY)[1])

    def decoded(self, *, ok: bool, codes: bool, code_like: bool) -> None:
        """What the decoder made of the frame let through: a failed decode leaves no
        reference; a code keeps the gate open; something code-like keeps it open for
        ``linger`` frames after the last change."""
        if not ok:
            self._ref = None
        self._busy = codes or code_like
        if codes:
            self._since_change = 0
