"""GPIO pins behind swappable factories, in the manner of gpiozero.

Devices (Wiegand reader, relay, door contact ...) are written against the small
``InputPin``/``OutputPin`` protocols and never import a GPIO library. A
``PinFactory`` hands out pins: ``MockFactory`` for tests and simulators,
``LgpioFactory`` (kernel-timestamped edges, works on every Pi including the Pi 5)
and ``RPiGPIOFactory`` (classic RPi.GPIO, or rpi-lgpio which stands in for it on
the Pi 5). The hardware libraries are imported inside the factories only, so this
module imports on any machine.

Pin numbers are BCM GPIO numbers (= line offsets on the Pi's header gpiochip).
An input reports every level change as ``when_edge(level, t_ns)``; ``t_ns`` is a
``time.monotonic_ns()``-based timestamp, taken by the kernel where the backend
gives one. Callbacks run on the backend's callback thread, one at a time.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import threading
import time
from typing import Any, Callable, Literal, Protocol

log = logging.getLogger(__name__)

Pull = Literal["up", "down"] | None
EdgeCallback = Callable[[int, int], None]

#: gpiochip label of the Pi 5's header GPIO (the RP1 south bridge). Its chip
#: number moved from 4 to 0 in kernel 6.6.45, so it is found by label.
RP1_LABEL = "pinctrl-rp1"

_PULLS = ("up", "down", None)


class GpioUnavailable(RuntimeError):
    """A GPIO backend cannot be used here (library missing, not a Pi, no access)."""


class InputPin(Protocol):
    number: int
    #: Called with (level, t_ns) on every level change; None to ignore edges.
    when_edge: EdgeCallback | None

    def read(self) -> int: ...


class OutputPin(Protocol):
    number: int

    def write(self, level: int) -> None: ...

    def read(self) -> int: ...


class PinFactory(Protocol):
    def input(self, pin: int, *, pull: Pull = None) -> InputPin: ...

    def output(self, pin: int, *, initial: int = 0) -> OutputPin: ...

    def close(self) -> None: ...


def _check_pull(pull: object) -> None:
    if pull not in _PULLS:
        raise ValueError(f"pull must be 'up', 'down' or None, not {pull!r}")


def _claim(pins: dict[int, Any], pin: int) -> None:
    # Two devices on one pin is a wiring/config mistake; say so at startup.
    if pin in pins:
        raise ValueError(f"GPIO{pin} is already in use")


# --------------------------------------------------------------------------- mock


class MockInputPin:
    """An input a test or simulator drives. A pull-up input idles high, otherwise low."""

    def __init__(self, number: int, pull: Pull, lock: threading.RLock) -> None:
        self.number = number
        self.pull = pull
        self.when_edge: EdgeCallback | None = None
        self._level = 1 if pull == "up" else 0
        # Shared by all pins of one factory: callbacks run one at a time, as
        # they do on a real backend's single callback thread.
        self._lock = lock

    def read(self) -> int:
        return self._level

    def drive(self, level: int, t_ns: int | None = None) -> bool:
        """Set the level; on a change call ``when_edge`` synchronously.

        Returns True if the level changed (an edge was delivered)."""
        level = 1 if level else 0
        with self._lock:
            if level == self._level:
                return False
            self._level = level
            callback = self.when_edge
            if callback is not None:
                callback(level, time.monotonic_ns() if t_ns is None else t_ns)
            return True

    def drive_low(self, t_ns: int | None = None) -> bool:
        return self.drive(0, t_ns)

    def drive_high(self, t_ns: int | None = None) -> bool:
        return self.drive(1, t_ns)

    def __repr__(self) -> str:
        return f"MockInputPin(GPIO{self.number}, level={self._level})"


class MockOutputPin:
    """An output that remembers every write as (t_ns, level), the initial level first."""

    def __init__(self, number: int, initial: int) -> None:
        self.number = number
        self.history: list[tuple[int, int]] = []
        self._level = 0
        self._lock = threading.Lock()
        self.write(initial)

    def write(self, level: int) -> None:
        level = 1 if level else 0
        with self._lock:
            self._level = level
            self.history.append((time.monotonic_ns(), level))

    def read(self) -> int:
        return self._level

    @property
    def levels(self) -> list[int]:
        """Just the levels written, oldest first."""
        with self._lock:
            return [level for _, level in self.history]

    def __repr__(self) -> str:
        return f"MockOutputPin(GPIO{self.number}, level={self._level})"


MockPin = MockInputPin | MockOutputPin


class MockFactory:
    """Pins that exist only in memory. Keeps its pins so a simulator can find the
    one a driver claimed: ``factory.pin(n)``."""

    name = "mock"

    def __init__(self) -> None:
        self._pins: dict[int, MockPin] = {}
        self._lock = threading.RLock()

    def input(self, pin: int, *, pull: Pull = None) -> MockInputPin:
        _check_pull(pull)
        with self._lock:
            _claim(self._pins, pin)
            p = MockInputPin(pin, pull, self._lock)
            self._pins[pin] = p
            return p

    def output(self, pin: int, *, initial: int = 0) -> MockOutputPin:
        with self._lock:
            _claim(self._pins, pin)
            p = MockOutputPin(pin, initial)
            self._pins[pin] = p
            return p

    def pin(self, number: int) -> MockPin:
        try:
            return self._pins[number]
        except KeyError:
            raise KeyError(f"GPIO{number} has not been claimed on this MockFactory") from None

    def close(self) -> None:
        with self._lock:
            for p in self._pins.values():
                if isinstance(p, MockInputPin):
                    p.when_edge = None
            self._pins.clear()


# ------------------------------------------------------------------- RPi.GPIO

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


# ---------------------------------------------------------------------- lgpio


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


# --------------------------------------------------------------------- choice

FACTORY_NAMES = ("mock", "rpigpio", "lgpio", "auto")


def _auto_factory() -> PinFactory:
    """lgpio wherever it works, RPi.GPIO otherwise.

    lgpio first: it works on every Pi (the character device, kernel-stamped
    edges), while RPi.GPIO 0.7.1 opens fine on a Pi 4 with Bookworm's kernel 6.6+
    and only fails later, when asked to watch an edge (raspberrypi/linux#6037), and
    cannot work on a Pi 5 at all. So RPi.GPIO is the choice only where lgpio is not
    installed or cannot open a gpiochip (an old Raspberry Pi OS)."""
    reasons: list[str] = []
    try:
        import lgpio  # noqa: F401  (LgpioFactory imports it again; this only probes)
    except Exception as exc:
        reasons.append(f"lgpio: {exc}")
    else:
        if _gpiochip_numbers():
            try:
                return LgpioFactory()  # the Pi 5's chip by its label, else chip 0
            except GpioUnavailable as exc:
                reasons.append(f"lgpio: {exc.__cause__ or exc}")
        else:
            reasons.append("lgpio: no /dev/gpiochip*")
    try:
        return RPiGPIOFactory()
    except GpioUnavailable as exc:
        reasons.append(f"RPi.GPIO: {exc.__cause__ or exc}")
    raise GpioUnavailable(
        "no GPIO backend found: this gate does not appear to be running on a "
        "Raspberry Pi (" + "; ".join(reasons) + "). Use driver 'sim' to run "
        "without hardware."
    )


def make_factory(name: str) -> PinFactory:
    """A pin factory by name: 'mock', 'rpigpio', 'lgpio' or 'auto'."""
    if name == "mock":
        return MockFactory()
    if name == "rpigpio":
        return RPiGPIOFactory()
    if name == "lgpio":
        return LgpioFactory()
    if name == "auto":
        return _auto_factory()
    raise ValueError(f"unknown GPIO factory {name!r}; choose one of {', '.join(FACTORY_NAMES)}")
