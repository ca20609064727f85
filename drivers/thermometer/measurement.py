"""From readings to a measurement: one median per "something warm in front of the
sensor" episode, and the compensation from forehead skin to body temperature."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from drivers.base import Counters
from drivers.thermometer.frame import Frame


@dataclass(frozen=True)
class Compensation:
    """Forehead skin reads below core temperature and follows ambient (cold air
    cools the skin), so body = skin + offset + ambient_k * (ambient_ref - ambient)."""

    offset_c: float = 0.0
    ambient_ref_c: float = 25.0
    ambient_k: float = 0.0

    def body(self, object_c: float, ambient_c: float) -> float:
        return object_c + self.offset_c + self.ambient_k * (self.ambient_ref_c - ambient_c)

    def skin_for(self, body_c: float, ambient_c: float) -> float:
        """Inverse of ``body``: the skin reading that compensates to ``body_c``."""
        return body_c - self.offset_c - self.ambient_k * (self.ambient_ref_c - ambient_c)


@dataclass(frozen=True)
class Measurement:
    object_c: float  # median raw object (skin) temperature
    ambient_c: float  # median ambient temperature
    body_c: float  # compensated estimate of body temperature
    frames: int  # frames the medians were taken over


class MeasurementDetector:
    """One measurement per presence: a run of consecutive frames with
    object - ambient >= presence_delta_c.

    The median (not the mean) is reported so a single hot or cold frame (a hand,
    hair, the edge of the forehead) does not move the result. Emitted when the
    presence ends, or early once ``max_frames`` frames are in (the person need not
    step away before the lane can decide); then silent until the presence ends.
    Presences shorter than ``min_frames`` are counted as ``too_short``.
    """

    def __init__(self, compensation: Compensation = Compensation(), presence_delta_c: float = 3.0,
                 min_frames: int = 3, max_frames: int = 14, *, counters: Counters | None = None) -> None:
        if not 1 <= min_frames <= max_frames:
            raise ValueError("need 1 <= min_frames <= max_frames")
        self.compensation = compensation
        self.presence_delta_c = presence_delta_c
        self.min_frames = min_frames
        self.max_frames = max_frames
        self.counters = counters if counters is not None else Counters()
        self._run: list[Frame] = []
        self._emitted = False  # this presence already produced its measurement

    def feed(self, frame: Frame) -> Measurement | None:
        # NaN compares False, so an unknown ambient never counts as presence.
        if frame.object_c - frame.ambient_c >= self.presence_delta_c:
            if self._emitted:
                return None
            self._run.append(frame)
            if len(self._run) >= self.max_frames:
                self._emitted = True
                return self._measure()
            return None
        result: Measurement | None = None
        if self._run and not self._emitted:
            if len(self._run) >= self.min_frames:
                result = self._measure()
            else:
                self.counters.inc("too_short")
        self.reset()
        return result

    def reset(self) -> None:
        """Forget a presence in progress (frames across a gap are not consecutive)."""
        self._run = []
        self._emitted = False

    def _measure(self) -> Measurement:
        obj = statistics.median(f.object_c for f in self._run)
        amb = statistics.median(f.ambient_c for f in self._run)
        self.counters.inc("measurements")
        return Measurement(obj, amb, self.compensation.body(obj, amb), len(self._run))
