"""What every QR decoder shares: the ``Decoder`` contract, ``Found`` (a code and
where it is), merging what several passes found, and reading zxing-cpp's results."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import numpy as np

from drivers.frames import to_grey

def _as_decodable(grey: np.ndarray) -> np.ndarray | None:
    """The frame as 2-D contiguous uint8, or None if there is nothing to decode.

    Raises ValueError (via to_grey) for non-images; callers count that as an error.
    """
    g = to_grey(grey)
    # Both libraries fail on empty images (zxing raises, pyzbar divides by zero).
    return g if g.size > 0 else None


class Decoder(Protocol):
    """Finds QR codes in a greyscale frame.

    ``decode`` never raises on any image content and returns every code's text;
    payloads that are not UTF-8 come back decoded as well as the library can.
    """

    name: str

    def decode(self, grey: np.ndarray) -> list[str]: ...


Point = tuple[float, float]


@dataclass(frozen=True)
class Found:
    """A code found in an image: its text and its corners in that image's pixels
    (four for zxing-cpp, as many as zbar reports for pyzbar)."""

    text: str
    corners: tuple[Point, ...]

    @property
    def center(self) -> Point:
        n = len(self.corners)
        return (sum(p[0] for p in self.corners) / n, sum(p[1] for p in self.corners) / n)

    @property
    def size(self) -> float:
        """The longer side of the code's bounding box, in pixels."""
        xs = [p[0] for p in self.corners]
        ys = [p[1] for p in self.corners]
        return max(max(xs) - min(xs), max(ys) - min(ys), 1.0)

    def contains(self, pt: Point) -> bool:
        """Whether ``pt`` lies inside the code's outline (ray casting; any winding)."""
        x, y = pt
        inside = False
        pts = self.corners
        for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1]):
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
        return inside

    def overlaps(self, other: Found) -> bool:
        """The same symbol seen twice (by two passes): either centre lies in the other."""
        return self.contains(other.center) or other.contains(self.center)


def _merge(found: list[Found], new: Iterable[Found]) -> None:
    """Add each code of ``new`` not already found at the same place.

    Position, not text, decides: two copies of one pass on a sheet are two codes,
    and a second library's different reading of a symbol already read (zbar's guess
    at a Shift-JIS payload, say) is not a second code."""
    for f in new:
        if not any(f.overlaps(g) for g in found):
            found.append(f)


def reading_order(found: Iterable[Found]) -> list[Found]:
    """Codes sorted into rows (top to bottom), each row left to right: a sheet of
    printed passes comes out in the order a person reads it."""
    rest = sorted(found, key=lambda f: f.center[1])
    out: list[Found] = []
    while rest:
        top = rest[0]
        row = [f for f in rest if f.center[1] - top.center[1] < 0.5 * max(top.size, f.size)]
        out += sorted(row, key=lambda f: f.center[0])
        rest = [f for f in rest if f not in row]
    return out


def _zx_text(barcode: Any) -> str | None:
    """The payload of a zxing-cpp result; None if the binding cannot produce it."""
    try:
        return barcode.text
    except Exception:
        # The binding builds str from the library's UTF-8; if that ever fails,
        # fall back to the raw bytes rather than losing the code.
        try:
            return bytes(barcode.bytes).decode("utf-8", "replace")
        except Exception:
            return None


def _zx_corners(barcode: Any, fx: float = 1.0, fy: float = 1.0,
                dx: float = 0.0, dy: float = 0.0) -> tuple[Point, ...]:
    """A zxing-cpp result's corners mapped back into the original image: scaled by
    (fx, fy), then shifted by (dx, dy)."""
    p = barcode.position
    return tuple((q.x * fx + dx, q.y * fy + dy)
                 for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
