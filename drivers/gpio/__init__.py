"""GPIO pins behind swappable factories, in the manner of gpiozero.

Devices (Wiegand reader, relay, door contact ...) are written against the small
``InputPin``/``OutputPin`` protocols and never import a GPIO library. A
``PinFactory`` hands out pins: ``MockFactory`` for tests and simulators,
``LgpioFactory`` (kernel-timestamped edges, works on every Pi including the Pi 5)
and ``RPiGPIOFactory`` (classic RPi.GPIO, or rpi-lgpio which stands in for it on
the Pi 5), one module each. The hardware libraries are imported inside the
factories only, so this package imports on any machine.

Pin numbers are BCM GPIO numbers (= line offsets on the Pi's header gpiochip).
An input reports every level change as ``when_edge(level, t_ns)``; ``t_ns`` is a
``time.monotonic_ns()``-based timestamp, taken by the kernel where the backend
gives one. Callbacks run on the backend's callback thread, one at a time.
"""
from __future__ import annotations

from drivers.gpio.base import (RP1_LABEL, EdgeCallback, GpioUnavailable, InputPin, OutputPin,
                               PinFactory, Pull)
from drivers.gpio.factory import FACTORY_NAMES, make_factory
from drivers.gpio.lgpio import LgpioFactory, LgpioInputPin, LgpioOutputPin, find_gpiochip
from drivers.gpio.mock import MockFactory, MockInputPin, MockOutputPin, MockPin
from drivers.gpio.rpigpio import RPiGPIOFactory, RPiGPIOInputPin, RPiGPIOOutputPin

__all__ = [
    "FACTORY_NAMES", "RP1_LABEL", "EdgeCallback", "GpioUnavailable", "InputPin",
    "LgpioFactory", "LgpioInputPin", "LgpioOutputPin", "MockFactory", "MockInputPin",
    "MockOutputPin", "MockPin", "OutputPin", "PinFactory", "Pull", "RPiGPIOFactory",
    "RPiGPIOInputPin", "RPiGPIOOutputPin", "find_gpiochip", "make_factory",
]
