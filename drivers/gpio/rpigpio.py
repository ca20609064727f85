"""``RPiGPIOFactory``: pins through RPi.GPIO (or rpi-lgpio on the Pi 5) in BCM
numbering; edges are timed in the callback, and pulses it was too slow for recovered."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from drivers.gpio.base import EdgeCallback, GpioUnavailable, Pull, _check_pull, _claim

log = logging.getLogger(__name__)

#: Two same-level reports closer than this are one short pulse reported twice
#: (see RPiGPIOInputPin). 200 us is the shortest gap the Wiegand SIA spec allows.
_RPIGPIO_DUPLICATE_NS = 200_000


class RPiGPIOInputPin:
    """RPi.GPIO input with BOTH-edge detection.

    RPi.GPIO tells the callback only *that* something changed, so the level is
    read in the callback and the time is taken there (no kernel timestamp). A
    pulse shorter than that latency (a 50 us Wiegand bit) has already ended when
    we look: we then see the old level again and report the pulse we missed as
    two edges. If the pulse's second edge also wakes us within a moment, that
    second report is the same pulse and is dropped.
    """

    def __init__(self, gpio: Any, number: int, pull: Pull) -> None:
        self.number = number
        self.when_edge: EdgeCallback | None = None
        self._gpio = gpio
        pud = {"up": gpio.PUD_UP, "down": gpio.PUD_DOWN, None: gpio.PUD_OFF}[pull]
        gpio.setup(number, gpio.IN, pull_up_down=pud)
        self._level = int(gpio.input(number))
        self._last_t = 0
        self._lock = threading.Lock()
        try:
            gpio.add_event_detect(number, gpio.BOTH, callback=self._on_event)
        except RuntimeError as exc:
            # RPi.GPIO 0.7 on kernel 6.6+ (Bookworm) fails exactly here.
            gpio.cleanup(number)
            raise GpioUnavailable(
                f"RPi.GPIO cannot watch GPIO{number} for edges ({exc}). On current "
                "Raspberry Pi OS kernels use driver 'lgpio' (pip install lgpio), or "
                "replace RPi.GPIO with rpi-lgpio"
            ) from exc

    def read(self) -> int:
        return int(self._gpio.input(self.number))

    def _on_event(self, channel: int) -> None:
        t = time.monotonic_ns()
        level = int(self._gpio.input(channel))
        with self._lock:
            if level != self._level:
                edges = [(level, t)]
            elif t - self._last_t < _RPIGPIO_DUPLICATE_NS:
                edges = []
            else:
                edges = [(1 - level, t), (level, t)]
            self._level = level
            self._last_t = t
        callback = self.when_edge
        if callback is not None:
            for lvl, ts in edges:
                callback(lvl, ts)

    def close(self) -> None:
        self.when_edge = None
        self._gpio.remove_event_detect(self.number)


class RPiGPIOOutputPin:
    def __init__(self, gpio: Any, number: int, initial: int) -> None:
        self.number = number
        self._gpio = gpio
        gpio.setup(number, gpio.OUT, initial=gpio.HIGH if initial else gpio.LOW)

    def write(self, level: int) -> None:
        self._gpio.output(self.number, self._gpio.HIGH if level else self._gpio.LOW)

    def read(self) -> int:
        return int(self._gpio.input(self.number))

    def close(self) -> None:
        pass


class RPiGPIOFactory:
    """Pins through RPi.GPIO in BCM numbering.

    Also works with rpi-lgpio, the drop-in replacement needed on the Pi 5 (the
    original RPi.GPIO cannot find the Pi 5's peripherals)."""

    name = "rpigpio"

    def __init__(self) -> None:
        try:
            import RPi.GPIO as gpio  # noqa: N813 - lazily: it fails off a Pi
        except Exception as exc:  # ImportError off a Pi, RuntimeError on a Pi 5
            raise GpioUnavailable(
                f"RPi.GPIO is not usable here ({exc}). On a Raspberry Pi 1-4: pip "
                "install RPi.GPIO; on a Pi 5: pip install rpi-lgpio (and uninstall "
                "RPi.GPIO, they cannot coexist) or use driver 'lgpio'"
            ) from exc
        mode = gpio.getmode()
        if mode is None:
            gpio.setmode(gpio.BCM)
        elif mode != gpio.BCM:
            raise GpioUnavailable(
                "RPi.GPIO is already in BOARD numbering in this process; the gate uses BCM"
            )
        gpio.setwarnings(False)  # we claim and release pins ourselves
        self._gpio = gpio
        self._pins: dict[int, RPiGPIOInputPin | RPiGPIOOutputPin] = {}
        self._lock = threading.Lock()

    def input(self, pin: int, *, pull: Pull = None) -> RPiGPIOInputPin:
        _check_pull(pull)
        with self._lock:
            _claim(self._pins, pin)
            p = RPiGPIOInputPin(self._gpio, pin, pull)
            self._pins[pin] = p
            return p

    def output(self, pin: int, *, initial: int = 0) -> RPiGPIOOutputPin:
        with self._lock:
            _claim(self._pins, pin)
            p = RPiGPIOOutputPin(self._gpio, pin, initial)
            self._pins[pin] = p
            return p

    def close(self) -> None:
        with self._lock:
            pins = list(self._pins.values())
            self._pins.clear()
        for p in pins:
            try:
                p.close()
            except Exception:  # keep releasing the others
                log.exception("releasing GPIO%d", p.number)
        inputs = [p.number for p in pins if not isinstance(p, RPiGPIOOutputPin)]
        if inputs:
            # Only our channels: another part of the process may use RPi.GPIO too.
            # Outputs are left as they are: cleanup() would turn the relay's pin
            # into a floating input, and a locked door must stay driven locked
            # after the gate exits, not hang on the relay board's pull resistor.
            self._gpio.cleanup(inputs)
