"""What every pin backend shares: the ``InputPin``/``OutputPin``/``PinFactory``
protocols devices are written against, ``GpioUnavailable``, and pin bookkeeping."""
from __future__ import annotations

from typing import Any, Callable, Literal, Protocol

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
