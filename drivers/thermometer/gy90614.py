"""The GY-MCU90614 (MLX90614) module's byte protocol: its commands, its 9-byte
temperature frame, and a stream parser that resynchronises on the frame header."""
from __future__ import annotations

import struct

from drivers.base import Counters
from drivers.thermometer.frame import Frame, _in_range

# Commands are header A5, command byte, then the low byte of their sum.
CMD_CONTINUOUS = bytes([0xA5, 0x45, 0xEA])
CMD_QUERY = bytes([0xA5, 0x15, 0xBA])
FRAME_HEADER = bytes([0x5A, 0x5A, 0x45, 0x04])  # preamble, type 0x45 (temperature), 4 data bytes
FRAME_LEN = 9


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
