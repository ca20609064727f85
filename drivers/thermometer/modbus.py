"""Modbus RTU thermometers on RS-485: the read-holding-registers poll and answer
frames (CRC-16/MODBUS), and the master's parser that turns answers into readings."""
from __future__ import annotations

import struct

from drivers.base import Counters
from drivers.thermometer.frame import Frame, _in_range

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
