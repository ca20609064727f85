"""The driver factory: each lane's devices built from its config (camera and QR scanner,
thermometer, card reader, relay, door inputs, speaker), real or simulated, and bound to
the lane's queue through a `post` callable. `GateApp` owns one and closes it last."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from drivers.camera import SimCamera
from drivers.door import DigitalInput, Relay, SimInput
from drivers.gpio import MockFactory, PinFactory, make_factory
from drivers.qr import QrScanner, make_decoder
from drivers.thermometer import Compensation, Measurement, SerialThermometer, SimThermometer
from drivers.voice import PromptCache, SimSpeaker, Speaker
from drivers.wiegand import SimWiegandReader, WiegandReader
from gate.config import Config, InputConfig, LaneConfig
from gate.core.clock import Clock
from gate.core.events import (
    CardRead,
    DeviceHealth,
    DoorContactChanged,
    ExitPressed,
    FireAlarmChanged,
    PresenceChanged,
    QrSeen,
    TemperatureRead,
)

log = logging.getLogger(__name__)

Post = Callable[[Any], None]

@dataclass
class LaneDevices:
    """The drivers of one lane, and the simulators that stand in for missing hardware."""

    scanner: QrScanner | None = None
    camera: Any = None  # a FrameSource; a SimCamera in simulation
    thermometer: SerialThermometer | None = None
    sim_thermometer: SimThermometer | None = None
    compensation: Compensation = Compensation()
    ambient_c: float = 22.0
    wiegand: WiegandReader | None = None
    sim_wiegand: SimWiegandReader | None = None
    relay: Relay | None = None
    inputs: dict[str, DigitalInput] = field(default_factory=dict)
    sim_inputs: dict[str, SimInput] = field(default_factory=dict)
    speaker: Any = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("closing a driver failed")


class DriverFactory:
    """Builds the drivers of every lane. Simulated pins are per lane (lanes may reuse pin
    numbers); real ones are one factory per gate, made on first use."""

    def __init__(self, config: Config, clock: Clock, pins: PinFactory | None = None) -> None:
        self.config = config
        self.clock = clock
        self._gpio: PinFactory | None = pins
        self._sim_pins: dict[str, MockFactory] = {}

    def pins(self, driver: str, lane: str) -> PinFactory:
        if driver == "sim":
            return self._sim_pins.setdefault(lane, MockFactory())
        if self._gpio is None:
            self._gpio = make_factory(self.config.gpio.backend)
        return self._gpio

    def speaker(self, cfg: LaneConfig, cache: PromptCache) -> Any:
        if cfg.speaker.driver == "sim":
            return SimSpeaker(cache)
        return Speaker(cache, device=cfg.speaker.device)

    def relay(self, cfg: LaneConfig, devices: LaneDevices) -> Relay | None:
        if cfg.relay is None:
            return None
        factory = self.pins(cfg.relay.driver, cfg.name)
        locked = 0 if cfg.relay.active_high else 1
        relay = Relay(factory.output(cfg.relay.pin, initial=locked), active_high=cfg.relay.active_high)
        devices.relay = relay
        devices.closers.append(relay.close)
        return relay

    def inputs(self, cfg: LaneConfig, post: Post, post_all: Post, devices: LaneDevices) -> None:
        """The lane's readers and inputs, started; what they read is posted to the lane."""
        health: Callable[[str, bool, str], None] = lambda device, ok, detail: post(DeviceHealth(device, ok, detail))

        if cfg.camera is not None:
            cam = cfg.camera
            if cam.driver == "sim":
                source: Any = SimCamera(cam.width, cam.height, stream_fps=cam.fps if self.clock.realtime else 0.0)
            elif cam.driver in ("v4l2", "picamera2"):
                # Live cameras are supervised: opened lazily (a camera missing at boot
                # degrades the lane instead of stopping the gate), a stalled or
                # unplugged one is reported (sensor_fault) and reopened when it returns.
                from drivers.camera import Picamera2Camera, SupervisedCamera, V4L2Camera

                if cam.driver == "v4l2":
                    opener: Callable[[], Any] = lambda c=cam: V4L2Camera(c.device, c.width, c.height, c.fps,
                                                                           c.pixel_format)
                else:
                    opener = lambda c=cam: Picamera2Camera(c.width, c.height, c.fps, camera_num=c.camera)
                source = SupervisedCamera(opener, name="camera")
            else:
                from drivers.camera import ImageFolderSource, VideoFileSource

                source = ImageFolderSource(cam.path) if Path(cam.path).is_dir() else VideoFileSource(cam.path, loop=cam.loop)
            scanner = QrScanner(
                source,
                make_decoder(cam.decoder),
                lambda text: post(QrSeen(text)),
                now=self.clock.monotonic,
                name="camera",
                on_fault=health,
            )
            devices.camera, devices.scanner = source, scanner
            scanner.start()
            devices.closers.append(scanner.close)
            devices.closers.append(source.close)  # closed first: wakes the scanner's blocking read

        if cfg.thermometer is not None:
            th = cfg.thermometer
            comp = Compensation(th.compensation.offset_c, th.compensation.ambient_ref_c, th.compensation.ambient_k)
            devices.compensation = comp

            def measured(m: Measurement) -> None:
                post(TemperatureRead(m.body_c, m.object_c, m.ambient_c))

            if th.driver == "sim":
                simt = SimThermometer(ambient_c=th.ambient_c, stream=self.clock.realtime)
                simt.start()
                devices.sim_thermometer, devices.ambient_c = simt, th.ambient_c
                devices.closers.append(simt.close)
                port, baud, proto = simt.port, 9600, "gy-mcu90614"
                serial_extra: dict[str, Any] = {}
            else:
                port, baud, proto = th.port, th.baudrate, th.protocol
                serial_extra = {"parity": th.parity, **th.modbus()}
            reader = SerialThermometer(
                port,
                **serial_extra,
                baudrate=baud,
                protocol=proto,
                compensation=comp,
                on_measurement=measured,
                on_fault=health,
                # A drill's sim sends only when someone measures; the live one streams.
                stale_s=th.stale_after() if th.driver == "serial" else (3.0 if self.clock.realtime else None),
            )
            reader.start()
            devices.thermometer = reader
            devices.closers.append(reader.close)

        if cfg.card_reader is not None:
            cr = cfg.card_reader
            factory = self.pins(cr.driver, cfg.name)
            reader_w = WiegandReader(
                factory.input(cr.d0, pull="up"),
                factory.input(cr.d1, pull="up"),
                lambda number, bits: post(CardRead(number, bits)),
            )
            devices.wiegand = reader_w
            devices.closers.append(reader_w.close)
            if cr.driver == "sim":
                assert isinstance(factory, MockFactory)
                devices.sim_wiegand = SimWiegandReader(factory, cr.d0, cr.d1)

        def add_input(name: str, icfg: InputConfig | None, on_change: Callable[[bool], None]) -> None:
            if icfg is None:
                return
            factory = self.pins(icfg.driver, cfg.name)
            pull = icfg.pull or ("down" if icfg.active_high else "up")
            pull = None if pull == "none" else pull
            inp = DigitalInput(
                factory.input(icfg.pin, pull=pull),
                active_high=icfg.active_high,
                debounce_ms=icfg.debounce_ms,
                on_change=on_change,
                name=name,
            )
            devices.inputs[name] = inp
            devices.closers.append(inp.close)
            if icfg.driver == "sim":
                assert isinstance(factory, MockFactory)
                devices.sim_inputs[name] = SimInput(factory, icfg.pin, active_high=icfg.active_high)

        add_input("door_contact", cfg.door_contact, lambda active: post(DoorContactChanged(active)))
        add_input("exit_button", cfg.exit_button, lambda active: post(ExitPressed()) if active else None)
        def on_pir(active: bool) -> None:
            post(PresenceChanged(active))
            if devices.scanner is not None:
                devices.scanner.presence(active)  # someone there: decode every frame, not only changed ones

        add_input("pir", cfg.pir, on_pir)
        # The fire alarm is the whole gate's: every lane is held open while it is active.
        add_input("fire_alarm", cfg.fire_alarm, lambda active: post_all(FireAlarmChanged(active)))

    def close(self) -> None:
        if self._gpio is not None:
            self._gpio.close()
