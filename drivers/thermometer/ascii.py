"""Line-based ASCII thermometers: one reading per line in the common formats
(``36.52``, ``36.5,24.1``, ``T=36.52 A=24.10`` ...)."""
from __future__ import annotations

import re

from drivers.base import Counters
from drivers.thermometer.frame import Frame, _in_range

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
