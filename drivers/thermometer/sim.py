"""``SimThermometer``: a simulated GY-MCU90614 or Modbus RTU sensor behind a real
pseudo-terminal, so drills and tests exercise the real serial path."""
from __future__ import annotations

import fcntl
import os
import select
import shutil
import struct
import tempfile
import termios
import threading
import time
import tty
from collections import deque
from typing import TYPE_CHECKING, Literal

from drivers.thermometer.gy90614 import CMD_CONTINUOUS, CMD_QUERY, encode_frame
from drivers.thermometer.modbus import (MODBUS_MAX_REGISTERS, MODBUS_READ_HOLDING, crc16_modbus,
                                        exception_response, read_holding_response)

if TYPE_CHECKING:
    from drivers.thermometer.serial_reader import SerialThermometer


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
