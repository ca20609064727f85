"""Choosing a pin factory by name ('mock', 'rpigpio', 'lgpio', or 'auto': lgpio
wherever it works, RPi.GPIO otherwise)."""
from __future__ import annotations

from drivers.gpio import lgpio as lgpio_pins
from drivers.gpio.base import GpioUnavailable, PinFactory
from drivers.gpio.lgpio import LgpioFactory
from drivers.gpio.mock import MockFactory
from drivers.gpio.rpigpio import RPiGPIOFactory

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
        # Through the module, so that one stand-in for the chip list (a test's)
        # serves this probe and LgpioFactory's search alike.
        if lgpio_pins._gpiochip_numbers():
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
