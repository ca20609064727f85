"""``SerialThermometer``: a thermometer on a pyserial port, read in a daemon thread
that reconnects after an unplug, reports faults and emits measurements."""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from typing import Callable, Literal

import serial

from drivers.base import Counters, FaultCallback, Progress, no_fault
from drivers.thermometer.ascii import AsciiLineParser
from drivers.thermometer.frame import Frame, Parser
from drivers.thermometer.gy90614 import CMD_CONTINUOUS, Gy90614Parser
from drivers.thermometer.measurement import Compensation, Measurement, MeasurementDetector
from drivers.thermometer.modbus import ModbusRtuParser

log = logging.getLogger(__name__)

_FPS_WINDOW_S = 2.0


Protocol_ = Literal["gy-mcu90614", "ascii", "modbus"]


class SerialThermometer:
    """Reads a thermometer on a serial port in a daemon thread.

    Calls ``on_measurement`` (from its thread) once per presence, and ``on_frame``
    (if given) for every valid reading. Reports ``on_fault(name, False, detail)``
    when the port fails or, if ``stale_s`` is not None, when no valid frame
    arrived for ``stale_s`` seconds while open (the GY-MCU90614 streams at ~14 Hz;
    the continuous command is re-sent meanwhile in case the module was
    power-cycled; a Modbus sensor is polled ``poll_hz`` times a second and must
    answer). ``on_fault(name, True, ...)`` follows on recovery. Faults are reported
    on changes only. ASCII sensors that print only when measuring should be given
    ``stale_s=None``.

    Modbus RTU: ``slave`` is the sensor's address, ``register`` the holding
    register of the object temperature and ``ambient_register`` that of the
    ambient one (None: the sensor has none), both in tenths of °C.
    """

    def __init__(self, port: str, *, baudrate: int = 9600,
                 protocol: Protocol_ = "gy-mcu90614",
                 compensation: Compensation = Compensation(),
                 on_measurement: Callable[[Measurement], None],
                 on_fault: FaultCallback = no_fault, name: str = "thermometer",
                 stale_s: float | None = 3.0,
                 backoff_s: tuple[float, float] = (0.2, 5.0),
                 parity: Literal["N", "E", "O"] = "N",
                 slave: int = 1, register: int = 0, ambient_register: int | None = None,
                 poll_hz: float = 10.0,
                 on_frame: Callable[[Frame], None] | None = None) -> None:
        if protocol not in ("gy-mcu90614", "ascii", "modbus"):
            raise ValueError(f"unknown thermometer protocol {protocol!r}")
        if not 0 < backoff_s[0] <= backoff_s[1]:
            raise ValueError("backoff_s must be (min, max) with 0 < min <= max")
        if poll_hz <= 0:
            raise ValueError("poll_hz must be positive")
        self.port = port
        self.baudrate = baudrate
        self.protocol = protocol
        self.parity = parity
        self.poll_hz = poll_hz
        self.name = name
        self.stale_s = stale_s
        self.backoff_s = backoff_s
        self._on_measurement = on_measurement
        self._on_frame = on_frame
        self._on_fault = on_fault
        self.counters = Counters()
        self.progress = Progress()
        self._modbus: ModbusRtuParser | None = None
        self._parser: Parser
        if protocol == "gy-mcu90614":
            self._parser = Gy90614Parser(self.counters)
        elif protocol == "ascii":
            self._parser = AsciiLineParser(self.counters, assumed_ambient_c=compensation.ambient_ref_c)
        else:
            self._parser = self._modbus = ModbusRtuParser(
                self.counters, slave=slave, register=register, ambient_register=ambient_register,
                assumed_ambient_c=compensation.ambient_ref_c)
        self._detector = MeasurementDetector(compensation, counters=self.counters)
        self._last_frame: Frame | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the fields read by other threads
        self._last: Measurement | None = None
        self._frame_times: deque[float] = deque(maxlen=1024)
        self._open = False
        self._ok = True  # last reported state; starts "assumed fine" so a clean start is silent
        self._rng = random.Random()

    # -- public state --

    @property
    def last_measurement(self) -> Measurement | None:
        with self._lock:
            return self._last

    @property
    def last_frame(self) -> Frame | None:
        """The last valid reading (object and ambient, uncompensated)."""
        with self._lock:
            return self._last_frame

    @property
    def frames_per_s(self) -> float:
        """Valid frames per second over the last two seconds."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for t in self._frame_times if t >= now - _FPS_WINDOW_S) / _FPS_WINDOW_S

    @property
    def healthy(self) -> bool:
        return self._open and self._ok

    # -- lifecycle --

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-reader", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)  # reads time out every 0.1 s, so this is quick

    # -- reader thread --

    def _run(self) -> None:
        delay = self.backoff_s[0]
        opened_before = False
        while not self._stop.is_set():
            try:
                ser = serial.Serial(self.port, self.baudrate, parity=self.parity, timeout=0.1,
                                    exclusive=True)
            except (serial.SerialException, OSError, ValueError) as exc:
                self._set_ok(False, f"cannot open {self.port}: {exc}")
                self._backoff(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            if opened_before:
                self.counters.inc("reopen")
            opened_before = True
            self._open = True
            self._set_ok(True, "reconnected")
            opened_at = time.monotonic()
            detail = ""
            got_frame = False
            try:
                got_frame = self._session(ser)
            except (serial.SerialException, OSError) as exc:
                # An unplugged USB adapter shows up as SerialException("device reports
                # readiness to read but returned no data ...") from read(), or EIO.
                detail = f"serial error on {self.port}: {exc}"
            finally:
                self._open = False
                self._detector.reset()
                try:
                    ser.close()
                except (serial.SerialException, OSError):
                    pass
            if self._stop.is_set():
                break
            self._set_ok(False, detail)
            # A link that worked for a while starts the backoff afresh; a flapping
            # one keeps growing it.
            if got_frame or time.monotonic() - opened_at >= self.backoff_s[1]:
                delay = self.backoff_s[0]
            self._backoff(delay)
            delay = min(delay * 2, self.backoff_s[1])

    def _backoff(self, delay: float) -> None:
        # Jitter so that several gates on one power supply do not retry in lockstep.
        self._stop.wait(delay * self._rng.uniform(0.5, 1.0))

    def _session(self, ser: serial.Serial) -> bool:
        """Read until stopped; raises on port errors. True if any frame arrived."""
        gy = self.protocol == "gy-mcu90614"
        if gy:
            ser.write(CMD_CONTINUOUS)
        got_frame = False
        stale = False
        last_frame = last_kick = next_poll = time.monotonic()
        period = 1.0 / self.poll_hz
        while not self._stop.is_set():
            if self._modbus is not None and time.monotonic() >= next_poll:
                ser.write(self._modbus.request())
                # After a stall (a slow answer, a busy machine) poll at the rate
                # again rather than in a burst.
                next_poll = max(next_poll + period, time.monotonic() + period / 2)
            data = ser.read(max(1, ser.in_waiting))
            now = time.monotonic()
            if data:
                try:
                    n = self._process(data, now)
                finally:
                    self.progress.advance(len(data))
                if n:
                    got_frame = True
                    last_frame = now
                    if stale:
                        stale = False
                        self._set_ok(True, "frames resumed")
            if self.stale_s is not None and now - last_frame >= self.stale_s:
                if not stale:
                    stale = True
                    self.counters.inc("stale")
                    self._set_ok(False, f"no valid frame for {self.stale_s:g} s on {self.port}")
                if gy and now - last_kick >= self.stale_s:
                    ser.write(CMD_CONTINUOUS)
                    last_kick = now
        return got_frame

    def _process(self, data: bytes, now: float) -> int:
        frames = self._parser.feed(data)
        if frames:
            with self._lock:
                self._frame_times.extend(now for _ in frames)
                self._last_frame = frames[-1]
        for frame in frames:
            if self._on_frame is not None:
                try:
                    self._on_frame(frame)
                except Exception:
                    self.counters.inc("callback_errors")
                    log.exception("%s: on_frame failed", self.name)
            m = self._detector.feed(frame)
            if m is None:
                continue
            with self._lock:
                self._last = m
            try:
                self._on_measurement(m)
            except Exception:  # a consumer bug must not kill the reader
                self.counters.inc("callback_errors")
                log.exception("%s: on_measurement failed", self.name)
        return len(frames)

    def _set_ok(self, ok: bool, detail: str) -> None:
        if ok == self._ok:
            return
        self._ok = ok
        try:
            self._on_fault(self.name, ok, detail)
        except Exception:
            self.counters.inc("callback_errors")
            log.exception("%s: on_fault failed", self.name)
