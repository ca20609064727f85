"""Infrared forehead thermometer: GY-MCU90614 (MLX90614), a line-based ASCII sensor or
a Modbus RTU sensor (holding registers in tenths of °C) on a serial port.

Layers, each usable on its own:

* ``Gy90614Parser`` / ``AsciiLineParser`` / ``ModbusRtuParser`` turn bytes into
  ``Frame`` readings (the Modbus one also makes the read-holding-registers polls).
* ``MeasurementDetector`` turns a frame stream into one ``Measurement`` per
  "something warm in front of the sensor" episode (median of the frames).
* ``Compensation`` maps forehead skin temperature to an estimated body temperature.
* ``SerialThermometer`` runs all of it on a pyserial port in a thread, reconnects
  after an unplug and reports faults.
* ``SimThermometer`` is a simulated GY-MCU90614 or Modbus RTU sensor behind a real
  pseudo-terminal, so drills and tests exercise the real serial path.

The driver reports what it measured; judging fever or human range is the lane's job.
"""
from __future__ import annotations

import fcntl
import logging
import os
import random
import re
import select
import shutil
import statistics
import struct
import tempfile
import termios
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import serial

from drivers.base import Counters, FaultCallback, Progress, no_fault

log = logging.getLogger(__name__)

# --- GY-MCU90614 byte protocol ---------------------------------------------------

# Commands are header A5, command byte, then the low byte of their sum.
CMD_CONTINUOUS = bytes([0xA5, 0x45, 0xEA])
CMD_QUERY = bytes([0xA5, 0x15, 0xBA])
FRAME_HEADER = bytes([0x5A, 0x5A, 0x45, 0x04])  # preamble, type 0x45 (temperature), 4 data bytes
FRAME_LEN = 9

# What the MLX90614 can physically report (datasheet ranges). A frame outside them
# passed an 8-bit checksum by luck or comes from a broken module: never a reading.
OBJECT_RANGE_C = (-70.0, 382.2)
AMBIENT_RANGE_C = (-40.0, 125.0)


@dataclass(frozen=True)
class Frame:
    object_c: float
    ambient_c: float


def _in_range(frame: Frame) -> bool:
    return (OBJECT_RANGE_C[0] <= frame.object_c <= OBJECT_RANGE_C[1]
            and AMBIENT_RANGE_C[0] <= frame.ambient_c <= AMBIENT_RANGE_C[1])


def encode_frame(object_c: float, ambient_c: float) -> bytes:
    """One module output frame. Values are signed big-endian int16 in 1/100 °C
    (signed so that sub-zero readings survive; the vendor's Arduino sample reads
    them unsigned, which only works above 0 °C)."""
    try:
        body = FRAME_HEADER + struct.pack(">hh", round(object_c * 100), round(ambient_c * 100))
    except struct.error as exc:
        raise ValueError(f"temperature outside int16 centi-degrees: {object_c}, {ambient_c}") from exc
    return body + bytes([sum(body) & 0xFF])


def _decode_frame(raw: bytes | bytearray) -> Frame:
    to, ta = struct.unpack(">hh", bytes(raw[4:8]))
    return Frame(to / 100.0, ta / 100.0)


class Parser(Protocol):
    counters: Counters

    def feed(self, data: bytes) -> list[Frame]: ...


class Gy90614Parser:
    """Stream parser for GY-MCU90614 frames.

    Resynchronises on the 4-byte header. A header whose checksum fails is dropped
    one byte at a time (not a whole frame), so a real frame starting inside a
    corrupt one is still found. Counters: ``frames``, ``bad_checksum``,
    ``out_of_range`` and ``garbage_bytes`` (every byte not part of an accepted
    or range-rejected frame).
    """

    def __init__(self, counters: Counters | None = None) -> None:
        self.counters = counters if counters is not None else Counters()
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        i = 0
        n = len(buf)
        garbage = 0
        while i < n:
            j = buf.find(FRAME_HEADER, i)
            if j < 0:
                # Keep a tail that could still become a header with the next chunk.
                keep = next((k for k in range(min(len(FRAME_HEADER) - 1, n - i), 0, -1)
                             if buf[n - k:] == FRAME_HEADER[:k]), 0)
                garbage += n - keep - i
                i = n - keep
                break
            garbage += j - i
            i = j
            if n - i < FRAME_LEN:
                break  # wait for the rest of the frame
            if sum(buf[i:i + 8]) & 0xFF != buf[i + 8]:
                self.counters.inc("bad_checksum")
                garbage += 1
                i += 1
                continue
            frame = _decode_frame(buf[i:i + FRAME_LEN])
            i += FRAME_LEN
            if _in_range(frame):
                self.counters.inc("frames")
                out.append(frame)
            else:
                self.counters.inc("out_of_range")
        del buf[:i]
        if garbage:
            self.counters.inc("garbage_bytes", garbage)
        return out

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a possible frame."""
        return len(self._buf)


# --- ASCII line sensors ------------------------------------------------------------

_NUM = r"[-+]?\d+(?:\.\d+)?"
_UNIT = r"(?:\s*°?\s*C)?"
_PLAIN = re.compile(rf"\s*({_NUM}){_UNIT}\s*(?:[,;\s]\s*({_NUM}){_UNIT})?\s*", re.IGNORECASE)
_PAIR = re.compile(rf"\s*([a-z]+)\s*[=:]\s*({_NUM}){_UNIT}\s*[,;]?", re.IGNORECASE)
_OBJECT_KEYS = {"t", "to", "o", "obj", "object", "ir"}
_AMBIENT_KEYS = {"a", "ta", "amb", "ambient"}
_MAX_LINE = 128  # a sensor line is short; longer means noise or the wrong baud rate


class AsciiLineParser:
    """One reading per line: ``36.52``, ``36.5,24.1``, ``36.5 24.1``,
    ``T=36.52 A=24.10`` or ``TO:36.52 TA:24.10`` (optional ``C``/``°C`` units).

    A line without ambient gets ``assumed_ambient_c``. ``SerialThermometer`` passes
    the compensation's ``ambient_ref_c`` so the ambient term of the compensation
    becomes zero (no correction without an ambient reading) and presence means
    "object at least presence_delta_c above that reference". Counters: ``frames``
    and ``bad_lines`` (unparseable, non-ASCII, overlong or out of sensor range).
    """

    def __init__(self, counters: Counters | None = None, *, assumed_ambient_c: float = 25.0) -> None:
        self.counters = counters if counters is not None else Counters()
        self.assumed_ambient_c = assumed_ambient_c
        self._buf = bytearray()
        self._overlong = False  # inside a line already counted bad for length

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        self._buf += data
        while True:
            cut = next((k for k, b in enumerate(self._buf) if b in (0x0A, 0x0D)), -1)
            if cut < 0:
                if len(self._buf) > _MAX_LINE:
                    if not self._overlong:
                        self.counters.inc("bad_lines")
                    self._overlong = True
                    self._buf.clear()
                break
            line = bytes(self._buf[:cut])
            del self._buf[:cut + 1]
            if self._overlong:
                self._overlong = False  # the tail of a line already counted
                continue
            if not line.strip():
                continue  # blank line or the \n of \r\n
            frame = self._parse(line)
            if frame is None:
                self.counters.inc("bad_lines")
            else:
                self.counters.inc("frames")
                out.append(frame)
        return out

    def _parse(self, line: bytes) -> Frame | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return None
        obj: float | None = None
        amb: float | None = None
        m = _PLAIN.fullmatch(text)
        if m:
            obj = float(m.group(1))
            amb = float(m.group(2)) if m.group(2) is not None else None
        else:
            pos = 0
            while pos < len(text):
                p = _PAIR.match(text, pos)
                if not p or p.end() == pos:
                    return None
                key, value = p.group(1).lower(), float(p.group(2))
                if key in _OBJECT_KEYS and obj is None:
                    obj = value
                elif key in _AMBIENT_KEYS and amb is None:
                    amb = value
                else:
                    return None  # unknown or repeated key: not a format we know
                pos = p.end()
                if not text[pos:].strip():
                    break
            if obj is None:
                return None
        frame = Frame(obj, self.assumed_ambient_c if amb is None else amb)
        return frame if _in_range(frame) else None


# --- Modbus RTU sensors ---------------------------------------------------------------
#
# Many industrial IR sensors speak Modbus RTU on RS-485: the gate is the master and
# polls "read holding registers" (function 0x03); the sensor answers with signed
# 16-bit registers, here temperatures in tenths of °C. A frame is the slave
# address, the function, its data and a CRC-16 (polynomial 0xA001 reflected,
# initial 0xFFFF, low byte first). A full Modbus library (pymodbus) is far more
# than these two frame types need.

MODBUS_READ_HOLDING = 0x03
MODBUS_MAX_REGISTERS = 125  # per read, by the specification


def crc16_modbus(data: bytes | bytearray) -> int:
    """CRC-16/MODBUS of ``data``."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(body: bytes) -> bytes:
    return body + crc16_modbus(body).to_bytes(2, "little")


def read_holding_request(slave: int, address: int, count: int) -> bytes:
    """The RTU frame asking ``slave`` for ``count`` holding registers from ``address``."""
    if not 1 <= slave <= 247:
        raise ValueError(f"Modbus slave address must be 1..247, got {slave}")
    if not 0 <= address <= 0xFFFF or not 1 <= count <= MODBUS_MAX_REGISTERS \
            or address + count > 0x10000:
        raise ValueError(f"cannot read {count} registers from {address}")
    return with_crc(struct.pack(">BBHH", slave, MODBUS_READ_HOLDING, address, count))


def read_holding_response(slave: int, values: list[int]) -> bytes:
    """A slave's answer carrying ``values`` (signed 16-bit)."""
    data = struct.pack(f">{len(values)}h", *values)
    return with_crc(struct.pack(">BBB", slave, MODBUS_READ_HOLDING, len(data)) + data)


def exception_response(slave: int, function: int, code: int) -> bytes:
    return with_crc(bytes([slave, function | 0x80, code]))


class ModbusRtuParser:
    """A Modbus RTU master's side of one sensor: ``request()`` is the poll,
    ``feed()`` turns the answers into ``Frame`` readings.

    The object temperature is holding register ``register``; the ambient one is
    ``ambient_register`` if the sensor has it, else ``assumed_ambient_c`` (as for
    ASCII sensors: no ambient correction). Both are read by one request. Bytes that
    do not make a CRC-correct answer from our slave are skipped one at a time
    (answers of other slaves on a shared bus, line noise). Counters: ``frames``,
    ``bad_crc``, ``modbus_exception``, ``out_of_range``, ``garbage_bytes``.
    """

    def __init__(self, counters: Counters | None = None, *, slave: int = 1, register: int = 0,
                 ambient_register: int | None = None, assumed_ambient_c: float = 25.0) -> None:
        regs = [register] if ambient_register is None else [register, ambient_register]
        self.first = min(regs)
        self.count = max(regs) - self.first + 1
        self._request = read_holding_request(slave, self.first, self.count)  # validates
        self.counters = counters if counters is not None else Counters()
        self.slave = slave
        self.register = register
        self.ambient_register = ambient_register
        self.assumed_ambient_c = assumed_ambient_c
        self.last_exception: int | None = None
        self._buf = bytearray()

    def request(self) -> bytes:
        return self._request

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        garbage = 0
        want = 5 + 2 * self.count
        while len(buf) >= 2:
            if buf[0] != self.slave or buf[1] not in (MODBUS_READ_HOLDING, MODBUS_READ_HOLDING | 0x80):
                garbage += 1
                del buf[0]
                continue
            if buf[1] & 0x80:  # exception: slave, 0x83, code, crc
                if len(buf) < 5:
                    break
                if crc16_modbus(buf[:3]) == int.from_bytes(buf[3:5], "little"):
                    self.counters.inc("modbus_exception")
                    self.last_exception = buf[2]
                    del buf[:5]
                else:
                    self.counters.inc("bad_crc")
                    garbage += 1
                    del buf[0]
                continue
            if len(buf) < 3:
                break
            if buf[2] != 2 * self.count:  # not the answer to our poll
                garbage += 1
                del buf[0]
                continue
            if len(buf) < want:
                break
            if crc16_modbus(buf[:want - 2]) != int.from_bytes(buf[want - 2:want], "little"):
                self.counters.inc("bad_crc")
                garbage += 1
                del buf[0]
                continue
            values = struct.unpack(f">{self.count}h", bytes(buf[3:want - 2]))
            del buf[:want]
            obj = values[self.register - self.first] / 10.0
            amb = (values[self.ambient_register - self.first] / 10.0
                   if self.ambient_register is not None else self.assumed_ambient_c)
            frame = Frame(obj, amb)
            if _in_range(frame):
                self.counters.inc("frames")
                out.append(frame)
            else:
                self.counters.inc("out_of_range")
        if garbage:
            self.counters.inc("garbage_bytes", garbage)
        return out


# --- compensation and measurement ----------------------------------------------------


@dataclass(frozen=True)
class Compensation:
    """Forehead skin reads below core temperature and follows ambient (cold air
    cools the skin), so body = skin + offset + ambient_k * (ambient_ref - ambient)."""

    offset_c: float = 0.0
    ambient_ref_c: float = 25.0
    ambient_k: float = 0.0

    def body(self, object_c: float, ambient_c: float) -> float:
        return object_c + self.offset_c + self.ambient_k * (self.ambient_ref_c - ambient_c)

    def skin_for(self, body_c: float, ambient_c: float) -> float:
        """Inverse of ``body``: the skin reading that compensates to ``body_c``."""
        return body_c - self.offset_c - self.ambient_k * (self.ambient_ref_c - ambient_c)


@dataclass(frozen=True)
class Measurement:
    object_c: float  # median raw object (skin) temperature
    ambient_c: float  # median ambient temperature
    body_c: float  # compensated estimate of body temperature
    frames: int  # frames the medians were taken over


class MeasurementDetector:
    """One measurement per presence: a run of consecutive frames with
    object - ambient >= presence_delta_c.

    The median (not the mean) is reported so a single hot or cold frame (a hand,
    hair, the edge of the forehead) does not move the result. Emitted when the
    presence ends, or early once ``max_frames`` frames are in (the person need not
    step away before the lane can decide); then silent until the presence ends.
    Presences shorter than ``min_frames`` are counted as ``too_short``.
    """

    def __init__(self, compensation: Compensation = Compensation(), presence_delta_c: float = 3.0,
                 min_frames: int = 3, max_frames: int = 14, *, counters: Counters | None = None) -> None:
        if not 1 <= min_frames <= max_frames:
            raise ValueError("need 1 <= min_frames <= max_frames")
        self.compensation = compensation
        self.presence_delta_c = presence_delta_c
        self.min_frames = min_frames
        self.max_frames = max_frames
        self.counters = counters if counters is not None else Counters()
        self._run: list[Frame] = []
        self._emitted = False  # this presence already produced its measurement

    def feed(self, frame: Frame) -> Measurement | None:
        # NaN compares False, so an unknown ambient never counts as presence.
        if frame.object_c - frame.ambient_c >= self.presence_delta_c:
            if self._emitted:
                return None
            self._run.append(frame)
            if len(self._run) >= self.max_frames:
                self._emitted = True
                return self._measure()
            return None
        result: Measurement | None = None
        if self._run and not self._emitted:
            if len(self._run) >= self.min_frames:
                result = self._measure()
            else:
                self.counters.inc("too_short")
        self.reset()
        return result

    def reset(self) -> None:
        """Forget a presence in progress (frames across a gap are not consecutive)."""
        self._run = []
        self._emitted = False

    def _measure(self) -> Measurement:
        obj = statistics.median(f.object_c for f in self._run)
        amb = statistics.median(f.ambient_c for f in self._run)
        self.counters.inc("measurements")
        return Measurement(obj, amb, self.compensation.body(obj, amb), len(self._run))


# --- the serial driver -----------------------------------------------------------------

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


# --- simulator ---------------------------------------------------------------------------


class SimThermometer:
    """A simulated GY-MCU90614, or Modbus RTU sensor, on the master side of a real
    pseudo-terminal.

    ``port`` is a stable symlink (like /dev/serial/by-id/...) to the current pty
    slave. ``unplug()`` closes the master and removes the link, so the reader's
    read fails as with a pulled USB adapter; ``replug()`` makes a new pty and
    re-points the link. Like the real module after power-up the GY-MCU90614 is in
    query mode until a reader sends ``CMD_CONTINUOUS``.

    With ``protocol="modbus"`` it is slave ``slave`` answering read-holding-register
    requests (function 0x03): ``register`` holds the object and ``ambient_register``
    (if not None) the ambient temperature, in tenths of °C; other registers below
    16 read 0, higher ones are an illegal data address (exception 02), other
    functions exception 01. It speaks only when polled, so ``present()`` queues
    what the next polls are answered with; a reader counts as "continuous" once it
    polls. ``hold(object_c)`` keeps a steady target in front of the sensor (a
    blackbody, for calibration) for streamed frames and polls alike.

    ``bytes_sent`` counts bytes written into the line that a reader can still
    receive: bytes still unread in the pty at unplug are subtracted, since they are
    lost with the device. ``settle()`` is exact when the reader was settled before
    an unplug.
    """

    LINK_NAME = "usb-GY-MCU90614-sim-if00-port0"
    MODBUS_LINK_NAME = "usb-RS485-Modbus-IR-sim-if00-port0"
    MODBUS_REGISTERS = 16

    def __init__(self, *, ambient_c: float = 22.0, rate_hz: float = 14.0, stream: bool = False,
                 ready_timeout_s: float = 5.0,
                 protocol: Literal["gy-mcu90614", "modbus"] = "gy-mcu90614",
                 slave: int = 1, register: int = 0, ambient_register: int | None = 1) -> None:
        if rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        if protocol not in ("gy-mcu90614", "modbus"):
            raise ValueError(f"the simulator speaks gy-mcu90614 or modbus, not {protocol!r}")
        self.ambient_c = ambient_c
        self.rate_hz = rate_hz
        self.stream = stream
        self.ready_timeout_s = ready_timeout_s
        self.protocol = protocol
        self.slave = slave
        self.register = register
        self.ambient_register = ambient_register
        self.polls = 0  # Modbus requests answered (with data or an exception)
        self._script: deque[float] = deque()  # object temperatures for the next polls
        self._held: float | None = None
        self._dir = tempfile.mkdtemp(prefix="gate-sim-thermo-")
        self.port = os.path.join(self._dir, self.MODBUS_LINK_NAME if protocol == "modbus"
                                 else self.LINK_NAME)
        self._cond = threading.Condition()  # guards everything below and serialises writes
        self._master: int | None = None
        self._slave: int | None = None  # held open so the master never reads EIO between readers
        self._continuous = False
        self._bytes_sent = 0
        self._cmd_buf = bytearray()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._plug()

    # -- public --

    @property
    def bytes_sent(self) -> int:
        with self._cond:
            return self._bytes_sent

    @property
    def continuous(self) -> bool:
        with self._cond:
            return self._continuous

    @property
    def plugged(self) -> bool:
        with self._cond:
            return self._master is not None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sim-thermometer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._cond:
            self._unplug_locked()
        os.close(self._wake_r)
        os.close(self._wake_w)
        shutil.rmtree(self._dir, ignore_errors=True)

    def wait_continuous(self, timeout: float = 5.0) -> bool:
        """Block until a reader has put the module into continuous mode."""
        with self._cond:
            return self._cond.wait_for(lambda: self._continuous, timeout)

    def present(self, object_c: float, frames: int = 7) -> None:
        """A warm object for ``frames`` frames, then 2 ambient frames: written at
        once (GY-MCU90614), or the answers to the next polls (Modbus)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._continuous, self.ready_timeout_s):
                what = ("polled by a Modbus master" if self.protocol == "modbus"
                        else "put into continuous mode")
                raise RuntimeError(
                    f"simulated thermometer at {self.port} was not {what} within "
                    f"{self.ready_timeout_s:g} s: is a SerialThermometer started on this port "
                    "(and the sim plugged and started)?")
            if self.protocol == "modbus":
                self._script.extend([object_c] * frames + [self.ambient_c] * 2)
                return
            self._write_locked(encode_frame(object_c, self.ambient_c) * frames
                               + self._ambient_frame() * 2)

    def hold(self, object_c: float | None) -> None:
        """Keep an object at ``object_c`` in front of the sensor (None: take it away):
        what streamed frames and polls report when nothing is queued."""
        with self._cond:
            self._held = object_c

    def write_raw(self, data: bytes) -> None:
        """Write bytes as they are (garbage, corrupt frames) regardless of mode.

        pyserial flushes the input when it opens the port, so bytes written before
        a reader is open never arrive (and ``settle`` would wait for them): wait for
        ``wait_continuous()`` or the reader's ``healthy`` first."""
        with self._cond:
            self._write_locked(data)

    def settle(self, reader: SerialThermometer, timeout: float = 5.0) -> bool:
        """Wait until ``reader`` has processed everything presented so far."""
        deadline = time.monotonic() + timeout
        if self.protocol == "modbus":
            with self._cond:  # the queued readings go out as the reader polls
                if not self._cond.wait_for(lambda: not self._script, timeout):
                    return False
        return reader.progress.wait_for(self.bytes_sent, max(0.0, deadline - time.monotonic()))

    def unplug(self) -> None:
        with self._cond:
            self._unplug_locked()
        self._wake()

    def replug(self) -> None:
        with self._cond:
            if self._master is None and not self._closed:
                self._plug()
        self._wake()

    # -- pty handling --

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: frames are binary
        os.set_blocking(master, False)  # never block while holding the lock
        self._master, self._slave = master, slave
        self._continuous = False  # the module powers up in query mode
        self._cmd_buf.clear()
        tmp = self.port + ".new"
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.port)  # atomic re-point: a reader never sees a half-made link

    def _unplug_locked(self) -> None:
        if self._master is None:
            return
        try:
            unread = struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            unread = 0
        self._bytes_sent -= unread  # lost with the device, the reader will never see them
        try:
            os.unlink(self.port)
        except FileNotFoundError:
            pass
        os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
        self._master = self._slave = None
        self._continuous = False
        self._cond.notify_all()

    def _write_locked(self, data: bytes) -> None:
        if self._master is None:
            raise RuntimeError("simulated thermometer is unplugged")
        view = memoryview(data)
        deadline = time.monotonic() + 2.0
        while view:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                # The pty buffer is full: nobody is reading the slave side.
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("no reader is draining the simulated thermometer port") from None
                select.select([], [self._master], [], left)
                continue
            self._bytes_sent += n
            view = view[n:]

    def _ambient_frame(self) -> bytes:
        return encode_frame(self.ambient_c, self.ambient_c)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # -- device thread: commands in, stream out --

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        next_due = time.monotonic() + period
        while not self._stop.is_set():
            with self._cond:
                fd = self._master
                streaming = self.stream and self._continuous and self.protocol != "modbus"
            timeout = max(0.0, next_due - time.monotonic()) if streaming else 0.5
            fds = [self._wake_r] if fd is None else [self._wake_r, fd]
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                continue  # fd closed by unplug() under our feet; look again
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 64)
                except BlockingIOError:
                    pass
            if fd is not None and fd in ready:
                self._read_commands(fd)
            now = time.monotonic()
            if not streaming:
                next_due = now + period
            elif now >= next_due:
                with self._cond:
                    if self._master is not None and self._continuous:
                        try:
                            self._write_stream_frame_locked()
                        except OSError:
                            pass
                next_due = next_due + period if now - next_due < period else now + period

    def _write_stream_frame_locked(self) -> None:
        # A UART has no flow control: if nobody reads, the stream frame is just lost.
        assert self._master is not None
        frame = (self._ambient_frame() if self._held is None
                 else encode_frame(self._held, self.ambient_c))
        try:
            n = os.write(self._master, frame)
        except BlockingIOError:
            return
        self._bytes_sent += n

    def _read_commands(self, fd: int) -> None:
        with self._cond:
            if self._master != fd:
                return
            try:
                data = os.read(fd, 256)
            except OSError:  # EAGAIN or EIO: nothing to read now
                return
            buf = self._cmd_buf
            buf += data
            if self.protocol == "modbus":
                self._modbus_requests_locked(buf)
                return
            while len(buf) >= 3:
                if buf[0] != 0xA5 or (buf[0] + buf[1]) & 0xFF != buf[2]:
                    del buf[0]  # noise on the line; a real module ignores it too
                    continue
                cmd = buf[1]
                del buf[:3]
                if cmd == CMD_CONTINUOUS[1]:
                    self._continuous = True
                    self._cond.notify_all()
                elif cmd == CMD_QUERY[1]:
                    self._continuous = False  # query mode: one frame per request
                    self._write_locked(self._ambient_frame())

    def _modbus_requests_locked(self, buf: bytearray) -> None:
        """Answer every complete request in ``buf`` (8 bytes each, found by CRC)."""
        while len(buf) >= 8:
            if crc16_modbus(buf[:6]) != int.from_bytes(buf[6:8], "little"):
                del buf[0]  # noise, or the tail of a frame we came in halfway through
                continue
            slave, function, address, count = struct.unpack(">BBHH", bytes(buf[:6]))
            del buf[:8]
            if slave != self.slave:
                continue  # addressed to another device on the bus: stay silent
            if not self._continuous:
                self._continuous = True
                self._cond.notify_all()
            self.polls += 1
            if function != MODBUS_READ_HOLDING:
                self._write_locked(exception_response(slave, function, 0x01))
                continue
            if not 1 <= count <= MODBUS_MAX_REGISTERS or address + count > self.MODBUS_REGISTERS:
                self._write_locked(exception_response(slave, function, 0x02))
                continue
            if self._script:
                obj = self._script.popleft()
                if not self._script:
                    self._cond.notify_all()  # settle() waits for this
            else:
                obj = self.ambient_c if self._held is None else self._held
            regs = {self.register: obj}
            if self.ambient_register is not None:
                regs[self.ambient_register] = self.ambient_c
            values = [round(regs[a] * 10) if a in regs else 0 for a in range(address, address + count)]
            self._write_locked(read_holding_response(slave, values))
