"""`gate thermometer calibrate`: derive a thermometer's offset against a reference.

Hold a blackbody (or the forehead of a person whose temperature a reference
thermometer just took) in front of the sensor at the distance people stand; the
gate takes N readings with something warm in front, takes their medians, and
finds the ``offset_c`` that makes the lane's compensation give the reference
temperature for them:

    reference = object + offset_c + ambient_k * (ambient_ref_c - ambient)

The other compensation parameters are kept; the result is printed as the TOML
line to paste into the lane's thermometer section. Nothing is written.
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from drivers.thermometer import Compensation, Frame, SerialThermometer

# Readings this far from the reference mean the wrong target (or a wrong
# --reference), not a sensor that needs an offset: refuse rather than paper over it.
MAX_OFFSET_C = 5.0
# Median spread (10th to 90th percentile of the object readings) above which the
# target was not steady: the result is reported, with a warning.
STEADY_SPREAD_C = 0.3


class CalibrationError(Exception):
    """Calibration could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Calibration:
    reference_c: float
    readings: int
    seconds: float
    object_c: float  # median raw object temperature
    ambient_c: float  # median ambient temperature
    spread_c: float  # 10th-90th percentile range of the object readings
    before: Compensation  # the compensation in use
    offset_c: float  # the new offset

    @property
    def after(self) -> Compensation:
        return Compensation(self.offset_c, self.before.ambient_ref_c, self.before.ambient_k)

    @property
    def reads_before_c(self) -> float:
        """What the lane makes of the target with its current compensation."""
        return self.before.body(self.object_c, self.ambient_c)

    @property
    def steady(self) -> bool:
        return self.spread_c <= STEADY_SPREAD_C

    def toml_line(self) -> str:
        c = self.after
        return (f"compensation = {{ offset_c = {c.offset_c:.2f}, ambient_ref_c = {c.ambient_ref_c:g}, "
                f"ambient_k = {c.ambient_k:g} }}")


def derive(frames: list[Frame], reference_c: float, compensation: Compensation,
           seconds: float = 0.0) -> Calibration:
    """The calibration that makes ``compensation`` read ``reference_c`` for ``frames``."""
    if not frames:
        raise CalibrationError("no readings to calibrate with")
    objects = sorted(f.object_c for f in frames)
    obj = statistics.median(objects)
    amb = statistics.median(f.ambient_c for f in frames)
    if len(objects) >= 10:
        deciles = statistics.quantiles(objects, n=10)
        spread = deciles[-1] - deciles[0]
    else:
        spread = objects[-1] - objects[0]
    without_offset = compensation.body(obj, amb) - compensation.offset_c
    offset = round(reference_c - without_offset, 2)
    if abs(offset) > MAX_OFFSET_C:
        raise CalibrationError(
            f"the sensor reads {obj:.2f} °C (ambient {amb:.1f} °C), {abs(offset):.1f} °C from the "
            f"reference {reference_c:.2f} °C: more than any offset should correct. Is the reference "
            "in front of the sensor, at the distance people stand, and is --reference right?")
    return Calibration(reference_c, len(frames), seconds, obj, amb, spread, compensation, offset)


def measure(port: str, *, compensation: Compensation, readings: int = 50, timeout_s: float = 30.0,
            presence_delta_c: float = 3.0, serial_kw: dict[str, Any] | None = None,
            progress: Callable[[int], None] | None = None) -> tuple[list[Frame], float]:
    """Up to ``readings`` readings with a target in front of the sensor (object at
    least ``presence_delta_c`` above ambient), and the seconds they took.

    Raises CalibrationError if the port cannot be opened, or if not enough readings
    came within ``timeout_s``.
    """
    if readings < 1:
        raise ValueError("readings must be at least 1")
    got: list[Frame] = []
    seen = 0
    done = threading.Event()
    failure: list[str] = []
    lock = threading.Lock()

    def on_frame(frame: Frame) -> None:
        nonlocal seen
        with lock:
            seen += 1
            if done.is_set() or frame.object_c - frame.ambient_c < presence_delta_c:
                return
            got.append(frame)
            n = len(got)
            if n >= readings:
                done.set()
        if progress is not None:
            progress(n)

    def on_fault(device: str, ok: bool, detail: str) -> None:
        if not ok and detail.startswith("cannot open"):
            failure.append(detail)
            done.set()

    reader = SerialThermometer(port, compensation=compensation, on_measurement=lambda m: None,
                               on_frame=on_frame, on_fault=on_fault, name="thermometer",
                               stale_s=None, **(serial_kw or {}))
    t0 = time.monotonic()
    reader.start()
    try:
        done.wait(timeout_s)
    finally:
        reader.close()
    took = time.monotonic() - t0
    if failure and not got:
        raise CalibrationError(
            f"{failure[0]}. Check the port (ls -l /dev/serial/by-id/); if the gate is running "
            "it holds the port: stop it first (systemctl stop gate).")
    with lock:
        frames = list(got)
    if len(frames) < readings:
        what = (f"{seen} reading(s), none warm" if seen and not frames
                else f"{len(frames)} of {readings} readings" if frames
                else "no reading at all (wrong port, protocol, baud rate or Modbus address?)")
        raise CalibrationError(
            f"{what} in {timeout_s:g} s from {port}: hold the blackbody (or the reference "
            "person's forehead) steadily in front of the sensor, then run this again.")
    return frames, took
