"""Character displays: an HD44780 LCD (16x2 or 20x4) on a PCF8574 I2C backpack,
and a simulated one that decodes the same I2C byte stream.

The interface is small: ``show(lines)`` puts up to ``rows`` lines of text on the
screen (only lines that changed are rewritten, an I2C write is slow), ``close()``
clears it and turns the backlight off. What to show is decided elsewhere.

The HD44780's character ROM (A00) has ASCII and katakana, no Chinese: ``to_rom``
maps the degree sign to the ROM's own and anything else outside ASCII to ``?``.

PCF8574 backpack wiring (the common one): P0=RS, P1=RW, P2=E, P3=backlight,
P4..P7=D4..D7; the LCD runs in 4-bit mode. The real bus is smbus2, imported only
when a real display is opened.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Protocol, Sequence

RS, RW, EN, BACKLIGHT = 0x01, 0x02, 0x04, 0x08

CLEAR = 0x01
HOME = 0x02
ENTRY_MODE = 0x04  # | 0x02 increment
DISPLAY_CTRL = 0x08  # | 0x04 display on
FUNCTION_SET = 0x20  # | 0x08 two lines (4-bit: DL=0)
SET_DDRAM = 0x80

ROW_OFFSETS = (0x00, 0x40, 0x14, 0x54)


class Bus(Protocol):
    def write_byte(self, address: int, value: int) -> None: ...
    def close(self) -> None: ...


class CharDisplay(Protocol):
    cols: int
    rows: int

    def show(self, lines: Sequence[str]) -> None: ...
    def close(self) -> None: ...


def to_rom(text: str) -> bytes:
    """Text as bytes of the HD44780 A00 character ROM."""
    out = bytearray()
    for ch in text:
        if ch == "°":
            out.append(0xDF)
        elif 0x20 <= ord(ch) < 0x7E:  # 0x7E/0x7F are arrows in the A00 ROM
            out.append(ord(ch))
        else:
            out.append(ord("?"))
    return bytes(out)


class Hd44780:
    """An HD44780 on a PCF8574 I2C expander, driven through any ``Bus``."""

    def __init__(
        self,
        bus: Bus,
        *,
        address: int = 0x27,
        cols: int = 16,
        rows: int = 2,
        backlight: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (cols, rows) not in ((16, 2), (20, 4), (16, 4), (20, 2)):
            raise ValueError(f"unsupported LCD size {cols}x{rows}; expected 16x2 or 20x4")
        self.bus = bus
        self.address = address
        self.cols = cols
        self.rows = rows
        self._bl = BACKLIGHT if backlight else 0
        self._sleep = sleep
        self._lock = threading.Lock()
        self._shown: list[bytes | None] = [None] * rows
        self._init()

    # ------------------------------------------------------------ bus level

    def _write(self, value: int) -> None:
        self.bus.write_byte(self.address, value | self._bl)

    def _pulse(self, value: int) -> None:
        self._write(value | EN)
        self._write(value & ~EN)

    def _nibble(self, nib: int, rs: int) -> None:
        self._pulse(((nib & 0x0F) << 4) | rs)

    def _send(self, byte: int, rs: int) -> None:
        self._nibble(byte >> 4, rs)
        self._nibble(byte, rs)

    def command(self, byte: int) -> None:
        self._send(byte, 0)
        if byte in (CLEAR, HOME):
            self._sleep(0.002)  # these two take 1.5 ms

    def data(self, byte: int) -> None:
        self._send(byte, RS)

    def _init(self) -> None:
        # The datasheet's reset-by-instruction: 8-bit mode three times, then 4-bit.
        self._write(0)
        self._sleep(0.05)
        for wait in (0.0045, 0.0045, 0.00015):
            self._nibble(0x03, 0)
            self._sleep(wait)
        self._nibble(0x02, 0)
        self.command(FUNCTION_SET | (0x08 if self.rows > 1 else 0))
        self.command(DISPLAY_CTRL | 0x04)
        self.command(CLEAR)
        self.command(ENTRY_MODE | 0x02)

    # ------------------------------------------------------------ the interface

    def show(self, lines: Sequence[str]) -> None:
        with self._lock:
            for row in range(self.rows):
                text = lines[row] if row < len(lines) else ""
                raw = to_rom(text)[: self.cols].ljust(self.cols, b" ")
                if self._shown[row] == raw:
                    continue
                self.command(SET_DDRAM | ROW_OFFSETS[row])
                for b in raw:
                    self.data(b)
                self._shown[row] = raw

    def close(self) -> None:
        with self._lock:
            try:
                self.command(CLEAR)
                self._bl = 0
                self._write(0)
            finally:
                self.bus.close()


class Hd44780Emulator:
    """A simulated HD44780 behind a PCF8574: takes the bytes a driver writes to the
    I2C bus and keeps what the LCD would show. Speaks the same protocol as the real
    one (4-bit nibbles latched on the falling edge of E), so the driver is tested
    byte for byte."""

    def __init__(self, *, address: int = 0x27, cols: int = 16, rows: int = 2) -> None:
        self.address = address
        self.cols = cols
        self.rows = rows
        self.ddram = bytearray(b" " * 0x80)
        self.addr = 0
        self.four_bit = False
        self._high: int | None = None
        self._last = 0
        self.backlight = False
        self.display_on = False
        self.writes = 0
        self.closed = False

    def write_byte(self, address: int, value: int) -> None:
        if address != self.address:
            raise OSError(121, "Remote I/O error (no device at this address)")
        self.writes += 1
        self.backlight = bool(value & BACKLIGHT)
        falling = (self._last & EN) and not (value & EN)
        self._last = value
        if not falling:
            return
        nib = (value >> 4) & 0x0F
        rs = bool(value & RS)
        if not self.four_bit:
            if nib == 0x02:
                self.four_bit = True
            return  # the 8-bit-mode reset nibbles
        if self._high is None:
            self._high = nib
            return
        byte = (self._high << 4) | nib
        self._high = None
        if rs:
            self.ddram[self.addr & 0x7F] = byte
            self.addr = (self.addr + 1) & 0x7F
        else:
            self._command(byte)

    def _command(self, byte: int) -> None:
        if byte & 0x80:
            self.addr = byte & 0x7F
        elif byte & 0x20:
            pass  # function set
        elif byte & 0x08:
            self.display_on = bool(byte & 0x04)
        elif byte == CLEAR:
            self.ddram[:] = b" " * 0x80
            self.addr = 0
        elif byte & 0x02 and byte < 0x04:
            self.addr = 0

    def lines(self) -> list[str]:
        out = []
        for row in range(self.rows):
            raw = bytes(self.ddram[ROW_OFFSETS[row] : ROW_OFFSETS[row] + self.cols])
            out.append(raw.decode("latin-1").replace("\xdf", "°"))
        return out

    def close(self) -> None:
        self.closed = True


class SimDisplay(Hd44780):
    """The display driver on an emulated LCD: ``lines()`` is what a person would read."""

    def __init__(self, *, cols: int = 16, rows: int = 2, address: int = 0x27) -> None:
        self.emulator = Hd44780Emulator(address=address, cols=cols, rows=rows)
        super().__init__(self.emulator, address=address, cols=cols, rows=rows, sleep=lambda s: None)

    def lines(self) -> list[str]:
        return self.emulator.lines()


def open_hd44780(*, port: int = 1, address: int = 0x27, cols: int = 16, rows: int = 2) -> Hd44780:
    """The real LCD on /dev/i2c-PORT (smbus2 imported here only)."""
    try:
        from smbus2 import SMBus
    except ImportError:
        raise RuntimeError("the HD44780 display needs smbus2 (pip install smbus2, or the gate's 'pi' extra)") from None
    bus = SMBus(port)
    try:
        return Hd44780(bus, address=address, cols=cols, rows=rows)
    except OSError as exc:
        bus.close()
        raise RuntimeError(f"no HD44780 backpack at I2C address {address:#04x} on bus {port}: {exc}") from None


def make_display(driver: str, **kw: int) -> CharDisplay:
    if driver == "sim":
        return SimDisplay(**kw)
    if driver == "hd44780":
        return open_hd44780(**kw)
    raise ValueError(f"unknown display driver {driver!r}; expected hd44780 or sim")
