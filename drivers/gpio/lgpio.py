"""``LgpioFactory``: pins through lgpio (/dev/gpiochipN) with kernel-timestamped
edges, on every Pi including the Pi 5 (whose header chip is found by its label)."""
from __future__ import annotations

import glob
import logging
import os
import re
import threading
import time
from typing import Any

from drivers.gpio.base import RP1_LABEL, EdgeCallback, GpioUnavailable, Pull, _check_pull, _claim

log = logging.getLogger(__name__)

def _lgpio_flag(lgpio: Any, names: tuple[str, ...], value: int) -> int:
    # lgpio renamed SET_BIAS_* to SET_PULL_*; the values (lg's lgpio.h) never changed.
    for name in names:
        if hasattr(lgpio, name):
            return int(getattr(lgpio, name))
    return value


def _kernel_ns_to_monotonic(tick: int) -> int:
    """lg 0.2 stamps alerts with CLOCK_REALTIME, older lg with CLOCK_MONOTONIC.
    Convert to the monotonic clock right away (the alert is milliseconds old at
    most), so a wall-clock step (NTP on an offline box) cannot fake a gap."""
    mono = time.monotonic_ns()
    real = time.time_ns()
    if abs(tick - real) < abs(tick - mono):
        return tick - real + mono
    return tick


def _gpiochip_numbers() -> list[int]:
    numbers = []
    for path in glob.glob("/dev/gpiochip*"):
        m = re.fullmatch(r"gpiochip(\d+)", os.path.basename(path))
        if m:
            numbers.append(int(m.group(1)))
    return sorted(numbers)


def _chip_label(lgpio: Any, chip: int) -> str | None:
    try:
        handle = lgpio.gpiochip_open(chip)
    except Exception:
        return None
    try:
        # [status, number of lines, name, label]
        label = lgpio.gpio_get_chip_info(handle)[3]
        return label.decode() if isinstance(label, bytes) else str(label)
    except Exception:
        return None
    finally:
        lgpio.gpiochip_close(handle)


def find_gpiochip(lgpio: Any, label: str = RP1_LABEL) -> int | None:
    """Number of the gpiochip with this label, or None."""
    for chip in _gpiochip_numbers():
        if _chip_label(lgpio, chip) == label:
            return chip
    return None


class LgpioInputPin:
    """lgpio alert on both edges: exact levels, kernel timestamps, and lg's alert
    thread delivers the edges of all pins in timestamp order."""

    def __init__(self, lgpio: Any, handle: int, number: int, pull: Pull) -> None:
        self.number = number
        self.when_edge: EdgeCallback | None = None
        self._lgpio = lgpio
        self._handle = handle
        flags = {
            "up": _lgpio_flag(lgpio, ("SET_PULL_UP", "SET_BIAS_PULL_UP"), 32),
            "down": _lgpio_flag(lgpio, ("SET_PULL_DOWN", "SET_BIAS_PULL_DOWN"), 64),
            None: _lgpio_flag(lgpio, ("SET_PULL_NONE", "SET_BIAS_DISABLE"), 128),
        }[pull]
        lgpio.gpio_claim_alert(handle, number, lgpio.BOTH_EDGES, flags)
        self._callback = lgpio.callback(handle, number, lgpio.BOTH_EDGES, self._on_alert)

    def read(self) -> int:
        return int(self._lgpio.gpio_read(self._handle, self.number))

    def _on_alert(self, chip: int, gpio: int, level: int, tick: int) -> None:
        if level not in (0, 1):  # 2 = watchdog timeout, not an edge
            return
        callback = self.when_edge
        if callback is not None:
            callback(level, _kernel_ns_to_monotonic(tick))

    def close(self) -> None:
        self.when_edge = None
        self._callback.cancel()
        self._lgpio.gpio_free(self._handle, self.number)


class LgpioOutputPin:
    def __init__(self, lgpio: Any, handle: int, number: int, initial: int) -> None:
        self.number = number
        self._lgpio = lgpio
        self._handle = handle
        lgpio.gpio_claim_output(handle, number, 1 if initial else 0)

    def write(self, level: int) -> None:
        self._lgpio.gpio_write(self._handle, self.number, 1 if level else 0)

    def read(self) -> int:
        return int(self._lgpio.gpio_read(self._handle, self.number))

    def close(self) -> None:
        self._lgpio.gpio_free(self._handle, self.number)


class LgpioFactory:
    """Pins through lgpio (/dev/gpiochipN). By default the chip labelled
    ``pinctrl-rp1`` (Pi 5, chip 4 before kernel 6.6.45, 0 after), else chip 0
    (the header chip on a Pi 1-4)."""

    name = "lgpio"

    def __init__(self, chip: int | None = None) -> None:
        try:
            import lgpio  # lazily: not installed off a Pi
        except Exception as exc:
            raise GpioUnavailable(
                f"lgpio is not usable here ({exc}). On a Raspberry Pi: pip install "
                "lgpio (or apt install python3-lgpio)"
            ) from exc
        if chip is None:
            found = find_gpiochip(lgpio, RP1_LABEL)
            chip = 0 if found is None else found
        try:
            self._handle = lgpio.gpiochip_open(chip)
        except Exception as exc:
            raise GpioUnavailable(
                f"lgpio cannot open /dev/gpiochip{chip} ({exc}); is this a Raspberry "
                "Pi, and is the gate's user in the 'gpio' group?"
            ) from exc
        self.chip = chip
        self._lgpio = lgpio
        self._pins: dict[int, LgpioInputPin | LgpioOutputPin] = {}
        self._lock = threading.Lock()

    def input(self, pin: int, *, pull: Pull = None) -> LgpioInputPin:
        _check_pull(pull)
        with self._lock:
            _claim(self._pins, pin)
            p = LgpioInputPin(self._lgpio, self._handle, pin, pull)
            self._pins[pin] = p
            return p

    def output(self, pin: int, *, initial: int = 0) -> LgpioOutputPin:
        with self._lock:
            _claim(self._pins, pin)
            p = LgpioOutputPin(self._lgpio, self._handle, pin, initial)
            self._pins[pin] = p
            return p

    def close(self) -> None:
        with self._lock:
            pins = list(self._pins.values())
            self._pins.clear()
            handle, self._handle = self._handle, None
        for p in pins:
            try:
                p.close()
            except Exception:
                log.exception("releasing GPIO%d", p.number)
        if handle is not None:
            self._lgpio.gpiochip_close(handle)
