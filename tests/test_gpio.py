"""Pin factories: the mock a simulator drives, the hardware backends' edge
handling (against stand-ins with lgpio's / RPi.GPIO's call signatures), and the
errors a gate off a Pi gives."""
from __future__ import annotations

import importlib.util
import sys
import time
import types

import pytest

from drivers.gpio import lgpio as gpio_lgpio, rpigpio as gpio_rpigpio
from drivers.gpio import (
    GpioUnavailable,
    LgpioFactory,
    MockFactory,
    MockInputPin,
    MockOutputPin,
    RPiGPIOFactory,
    make_factory,
)


def _recorder(edges: list[tuple[int, int]]):
    return lambda level, t_ns: edges.append((level, t_ns))


# ---------------------------------------------------------------- mock factory


def test_pull_up_input_idles_high_others_low():
    f = MockFactory()
    assert f.input(1, pull="up").read() == 1
    assert f.input(2, pull="down").read() == 0
    assert f.input(3).read() == 0


def test_mock_edges_fire_on_changes_only_with_given_or_current_timestamps():
    f = MockFactory()
    pin = f.input(4, pull="up")
    edges: list[tuple[int, int]] = []
    pin.when_edge = _recorder(edges)

    assert pin.drive_high(t_ns=5) is False  # already high: no edge
    assert pin.drive_low(t_ns=1_000) is True
    assert pin.drive(0, t_ns=2_000) is False
    before = time.monotonic_ns()
    pin.drive_high()
    after = time.monotonic_ns()

    assert [level for level, _ in edges] == [0, 1]
    assert edges[0][1] == 1_000
    assert before <= edges[1][1] <= after
    assert pin.read() == 1


def test_mock_output_records_every_write_starting_with_the_initial_level():
    f = MockFactory()
    out = f.output(17, initial=1)
    out.write(0)
    out.write(1)
    assert out.levels == [1, 0, 1]
    assert out.read() == 1
    stamps = [t for t, _ in out.history]
    assert stamps == sorted(stamps)


def test_factory_keeps_its_pins_for_simulators_and_refuses_double_claims():
    f = MockFactory()
    inp = f.input(5, pull="up")
    out = f.output(6)
    assert f.pin(5) is inp and isinstance(inp, MockInputPin)
    assert f.pin(6) is out and isinstance(out, MockOutputPin)
    with pytest.raises(KeyError, match="GPIO7"):
        f.pin(7)
    with pytest.raises(ValueError, match="GPIO5 is already in use"):
        f.output(5)
    with pytest.raises(ValueError, match="pull"):
        f.input(8, pull="sideways")  # type: ignore[arg-type]


def test_closing_the_factory_detaches_callbacks():
    f = MockFactory()
    pin = f.input(9, pull="up")
    edges: list[tuple[int, int]] = []
    pin.when_edge = _recorder(edges)
    f.close()
    pin.drive_low()
    assert edges == []


# ------------------------------------------------------- not on a Pi (this box)


@pytest.mark.skipif(importlib.util.find_spec("RPi") is not None, reason="RPi.GPIO installed")
def test_rpigpio_unavailable_says_what_to_install():
    with pytest.raises(GpioUnavailable) as err:
        make_factory("rpigpio")
    message = str(err.value)
    assert "RPi.GPIO" in message and "rpi-lgpio" in message


@pytest.mark.skipif(importlib.util.find_spec("lgpio") is not None, reason="lgpio installed")
def test_lgpio_unavailable_says_what_to_install():
    with pytest.raises(GpioUnavailable) as err:
        make_factory("lgpio")
    assert "pip install lgpio" in str(err.value)


@pytest.mark.skipif(
    importlib.util.find_spec("lgpio") is not None or importlib.util.find_spec("RPi") is not None,
    reason="a GPIO library is installed",
)
def test_auto_off_a_pi_points_at_the_sim_driver():
    with pytest.raises(GpioUnavailable, match="not appear to be running on a Raspberry Pi.*'sim'"):
        make_factory("auto")


def test_make_factory_names():
    assert isinstance(make_factory("mock"), MockFactory)
    with pytest.raises(ValueError, match="mock, rpigpio, lgpio, auto"):
        make_factory("pigpio")


# ------------------------------------------------ lgpio backend, with a stand-in


class _FakeCallback:
    def __init__(self, owner: "FakeLgpio", chip: int, gpio: int, func) -> None:
        self.owner, self.chip, self.gpio, self.func = owner, chip, gpio, func

    def cancel(self) -> None:
        self.owner.callbacks.remove(self)


class FakeLgpio(types.ModuleType):
    """Just enough of lgpio, with its call signatures and return shapes."""

    BOTH_EDGES = 3
    SET_PULL_UP = 32
    SET_PULL_DOWN = 64
    SET_PULL_NONE = 128

    class error(Exception):  # noqa: N801 - lgpio's own name
        pass

    def __init__(self, labels: dict[int, str]) -> None:
        super().__init__("lgpio")
        self.labels = labels
        self.open_handles: dict[int, int] = {}
        self.claims: dict[int, tuple] = {}
        self.levels: dict[int, int] = {}
        self.callbacks: list[_FakeCallback] = []
        self._next = 0

    def gpiochip_open(self, gpiochip: int) -> int:
        if gpiochip not in self.labels:
            raise self.error("can not open gpiochip")
        handle = self._next | gpiochip << 16  # lgpio puts the chip in bits 16+
        self._next += 1
        self.open_handles[handle] = gpiochip
        return handle

    def gpiochip_close(self, handle: int) -> int:
        del self.open_handles[handle]
        return 0

    def gpio_get_chip_info(self, handle: int) -> list:
        chip = self.open_handles[handle]
        return [0, 54, f"gpiochip{chip}", self.labels[chip]]

    def gpio_claim_alert(self, handle, gpio, eFlags, lFlags=0, notify_handle=None):  # noqa: N803
        self.claims[gpio] = ("alert", handle, eFlags, lFlags)
        self.levels.setdefault(gpio, 1 if lFlags == self.SET_PULL_UP else 0)
        return 0

    def gpio_claim_output(self, handle, gpio, level=0, lFlags=0):  # noqa: N803
        self.claims[gpio] = ("output", handle, level, lFlags)
        self.levels[gpio] = level
        return 0

    def gpio_free(self, handle, gpio):
        del self.claims[gpio]
        return 0

    def gpio_read(self, handle, gpio):
        return self.levels[gpio]

    def gpio_write(self, handle, gpio, level):
        self.levels[gpio] = level
        return 0

    def callback(self, handle, gpio, edge=1, func=None):
        cb = _FakeCallback(self, handle >> 16, gpio, func)
        self.callbacks.append(cb)
        return cb

    def alert(self, chip: int, gpio: int, level: int, tick: int) -> None:
        """What lg's notification thread does for one report."""
        self.levels[gpio] = level if level in (0, 1) else self.levels[gpio]
        for cb in list(self.callbacks):
            if cb.chip == chip and cb.gpio == gpio:
                cb.func(chip, gpio, level, tick)


@pytest.fixture
def fake_lgpio(monkeypatch):
    def install(labels: dict[int, str]) -> FakeLgpio:
        module = FakeLgpio(labels)
        monkeypatch.setitem(sys.modules, "lgpio", module)
        monkeypatch.setattr(gpio_lgpio, "_gpiochip_numbers", lambda: sorted(labels))
        return module

    return install


@pytest.mark.parametrize("rp1_chip", [0, 4])  # kernel >= 6.6.45 / older Pi 5 kernels
def test_lgpio_finds_the_pi5_header_chip_by_label(fake_lgpio, rp1_chip):
    labels = {0: "gpio-brcmstb@107d508500", 4: "gpio-brcmstb@107d517c00"}
    labels[rp1_chip] = "pinctrl-rp1"
    lg = fake_lgpio(labels)
    factory = LgpioFactory()
    assert factory.chip == rp1_chip
    assert list(lg.open_handles.values()) == [rp1_chip]  # probes closed again
    factory.close()
    assert lg.open_handles == {}


def test_lgpio_falls_back_to_chip_0_on_older_pis(fake_lgpio):
    fake_lgpio({0: "pinctrl-bcm2711", 1: "raspberrypi-exp-gpio"})
    assert LgpioFactory().chip == 0


def test_lgpio_input_reports_levels_with_monotonic_kernel_timestamps(fake_lgpio):
    lg = fake_lgpio({0: "pinctrl-rp1"})
    factory = LgpioFactory()
    pin = factory.input(20, pull="up")
    assert lg.claims[20][0] == "alert" and lg.claims[20][3] == lg.SET_PULL_UP
    assert pin.read() == 1
    edges: list[tuple[int, int]] = []
    pin.when_edge = _recorder(edges)

    mono = time.monotonic_ns()
    real = time.time_ns()
    lg.alert(0, 20, 0, real - 50_000_000)  # lg 0.2: CLOCK_REALTIME, 50 ms ago
    lg.alert(0, 20, 1, mono - 4_000_000)  # older lg: CLOCK_MONOTONIC, 4 ms ago
    lg.alert(0, 20, 2, real)  # watchdog timeout: not an edge
    lg.alert(0, 21, 0, real)  # another GPIO

    assert [level for level, _ in edges] == [0, 1]
    (_, t0), (_, t1) = edges
    # Both on one clock: ~46 ms apart (less the moments between reading the two clocks
    # here and in the driver, which a busy or emulated machine can stretch to a few ms).
    assert 0 < t1 - t0 < 100_000_000
    assert t1 <= time.monotonic_ns()

    factory.close()
    assert lg.callbacks == [] and lg.claims == {}


def test_lgpio_output_claims_with_initial_level_and_writes(fake_lgpio):
    lg = fake_lgpio({0: "pinctrl-bcm2835"})
    factory = LgpioFactory()
    out = factory.output(18, initial=1)
    assert lg.claims[18][:3] == ("output", factory._handle, 1)
    out.write(0)
    assert out.read() == 0 and lg.levels[18] == 0


def test_lgpio_unopenable_chip_is_a_clear_error(fake_lgpio):
    fake_lgpio({})
    with pytest.raises(GpioUnavailable, match="gpiochip0.*'gpio' group"):
        LgpioFactory()


# --------------------------------------------- RPi.GPIO backend, with a stand-in


class FakeRPiGPIO(types.ModuleType):
    BCM, BOARD = 11, 10
    IN, OUT = 1, 0
    HIGH, LOW = 1, 0
    PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22
    BOTH = 33

    def __init__(self) -> None:
        super().__init__("RPi.GPIO")
        self.mode = None
        self.levels: dict[int, int] = {}
        self.callbacks: dict[int, object] = {}
        self.cleaned: list = []

    def getmode(self):
        return self.mode

    def setmode(self, mode):
        self.mode = mode

    def setwarnings(self, flag):
        pass

    def setup(self, channel, direction, pull_up_down=20, initial=-1):
        if direction == self.OUT:
            self.levels[channel] = 1 if initial == self.HIGH else 0
        else:
            self.levels[channel] = 1 if pull_up_down == self.PUD_UP else 0

    def input(self, channel):
        return self.levels[channel]

    def output(self, channel, value):
        self.levels[channel] = value

    def add_event_detect(self, channel, edge, callback=None, bouncetime=None):
        self.callbacks[channel] = callback

    def remove_event_detect(self, channel):
        del self.callbacks[channel]

    def cleanup(self, channel=None):
        self.cleaned.append(channel)


@pytest.fixture
def fake_rpigpio(monkeypatch):
    module = FakeRPiGPIO()
    package = types.ModuleType("RPi")
    package.GPIO = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", package)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", module)
    return module


def test_rpigpio_reports_changes_and_recovers_pulses_shorter_than_its_latency(
    fake_rpigpio, monkeypatch
):
    now = [1_000_000_000]  # RPi.GPIO has no timestamps: the backend reads the clock
    monkeypatch.setattr(gpio_rpigpio, "time", types.SimpleNamespace(monotonic_ns=lambda: now[0]))
    factory = RPiGPIOFactory()
    assert fake_rpigpio.mode == fake_rpigpio.BCM
    pin = factory.input(6, pull="up")
    edges: list[tuple[int, int]] = []
    pin.when_edge = _recorder(edges)
    wake = fake_rpigpio.callbacks[6]

    fake_rpigpio.levels[6] = 0
    wake(6)  # woke while the line was low
    now[0] += 60_000
    fake_rpigpio.levels[6] = 1
    wake(6)
    assert edges == [(0, 1_000_000_000), (1, 1_000_060_000)]

    now[0] += 2_000_000
    wake(6)  # a 50 us pulse that was over before we read the pin
    assert [level for level, _ in edges] == [0, 1, 0, 1]
    now[0] += 80_000
    wake(6)  # ...and its rising edge waking us again at once: the same pulse
    assert [level for level, _ in edges] == [0, 1, 0, 1]
    now[0] += 2_000_000
    wake(6)  # the next short pulse
    assert [level for level, _ in edges] == [0, 1, 0, 1, 0, 1]

    factory.close()
    assert 6 not in fake_rpigpio.callbacks and fake_rpigpio.cleaned == [[6]]


def test_rpigpio_leaves_the_relay_driven_at_exit(fake_rpigpio):
    factory = RPiGPIOFactory()
    relay = factory.output(17, initial=0)
    button = factory.input(22, pull="up")
    relay.write(0)  # locked
    factory.close()
    # The input is handed back; the relay's pin stays an output at its locked level.
    assert fake_rpigpio.cleaned == [[button.number]] and fake_rpigpio.levels[17] == 0


def test_auto_prefers_lgpio_on_a_pi_4_with_both_libraries(fake_lgpio, fake_rpigpio):
    # RPi.GPIO would open here and then fail at the first edge watch on kernel 6.6+.
    fake_lgpio({0: "pinctrl-bcm2711", 1: "raspberrypi-exp-gpio"})
    factory = make_factory("auto")
    assert isinstance(factory, LgpioFactory) and factory.chip == 0


def test_auto_finds_the_pi_5_chip_with_both_libraries(fake_lgpio, fake_rpigpio):
    fake_lgpio({0: "gpio-brcmstb@107d508500", 4: "pinctrl-rp1"})
    factory = make_factory("auto")
    assert isinstance(factory, LgpioFactory) and factory.chip == 4


def test_auto_uses_rpigpio_where_lgpio_cannot_open_a_chip(fake_lgpio, fake_rpigpio, monkeypatch):
    fake_lgpio({})  # lgpio installed, but opening gpiochip0 fails
    monkeypatch.setattr(gpio_lgpio, "_gpiochip_numbers", lambda: [0])
    assert isinstance(make_factory("auto"), RPiGPIOFactory)


def test_rpigpio_refuses_board_numbering(fake_rpigpio):
    fake_rpigpio.mode = fake_rpigpio.BOARD
    with pytest.raises(GpioUnavailable, match="BOARD"):
        RPiGPIOFactory()


def test_rpigpio_edge_detection_failure_names_the_fix(fake_rpigpio, monkeypatch):
    working = fake_rpigpio.add_event_detect

    def fail(*args, **kwargs):
        raise RuntimeError("Failed to add edge detection")  # RPi.GPIO 0.7 on kernel 6.6

    monkeypatch.setattr(fake_rpigpio, "add_event_detect", fail)
    factory = RPiGPIOFactory()
    with pytest.raises(GpioUnavailable, match="rpi-lgpio"):
        factory.input(6, pull="up")
    assert fake_rpigpio.cleaned == [6]  # the channel was released again
    monkeypatch.setattr(fake_rpigpio, "add_event_detect", working)
    assert factory.input(6, pull="up").read() == 1  # and not left claimed
