"""``ThoroughDecoder``, for still images (`gate scan`, photos): every code it can
find at several scales and binarisers, pyzbar, and flattened light patches."""
from __future__ import annotations

from typing import Any

import numpy as np

from drivers.qr.base import Found, _as_decodable, _merge, _zx_corners, _zx_text, reading_order
from drivers.qr.flatten import FlatPatch, flatten, holds, light_patches
from drivers.qr.whole_frame import PyzbarDecoder

class ThoroughDecoder:
    """For still images (``gate scan``, photos of passes): finds every code it can.

    Runs zxing-cpp with rotation and inversion at several scales (0.5 to 2: a
    shrunk copy averages away print texture and JPEG noise, an enlarged one gives
    tiny codes more pixels) with both of its binarisers, then pyzbar, then zxing-cpp
    again on each large light patch flattened (a code printed on a T-shirt ripples;
    ``flatten``), and keeps each symbol once (by position). Results come in reading order. A few to a few tens
    of milliseconds per photo, about a second for a 300 dpi A4 page: never for the
    live camera. Without zxing-cpp it is pyzbar alone.
    """

    name = "thorough"
    SCALES = (1.0, 0.5, 0.75, 1.5, 2.0)
    MAX_SIDE = 4200  # no enlarging beyond this (a 300 dpi A4 page is 3508 px tall)
    MIN_SIDE = 64  # no shrinking below this

    def __init__(self, *, use_pyzbar: bool = True) -> None:
        try:
            import zxingcpp
        except ImportError:
            zxingcpp = None  # type: ignore[assignment]
        self._zx: Any = zxingcpp
        self._pyzbar: PyzbarDecoder | None = None
        if use_pyzbar or zxingcpp is None:
            try:
                self._pyzbar = PyzbarDecoder()
            except ImportError:
                if zxingcpp is None:
                    raise
        self.errors = 0

    def decode(self, grey: np.ndarray) -> list[str]:
        return [f.text for f in self.find(grey)]

    def find(self, grey: np.ndarray) -> list[Found]:
        try:
            g = _as_decodable(grey)
        except Exception:
            self.errors += 1
            return []
        if g is None:
            return []
        found: list[Found] = []
        if self._zx is not None:
            for scale in self.SCALES:
                img = self._scaled(g, scale)
                if img is None:
                    continue
                fx, fy = g.shape[1] / img.shape[1], g.shape[0] / img.shape[0]
                for binarizer in (self._zx.Binarizer.LocalAverage,
                                  self._zx.Binarizer.GlobalHistogram):
                    _merge(found, self._zxing(img, binarizer, fx, fy))
        if self._pyzbar is not None:
            _merge(found, self._zbar(g))
        if self._zx is not None:
            _merge(found, self._flattened(g, found))
        return reading_order(found)

    def _flattened(self, g: np.ndarray, already: list[Found]) -> list[Found]:
        """Codes read after flattening each large light patch (a print on cloth or a
        bent card; see ``flatten``) that holds none of the codes ``already``
        found, placed back where they are in ``g``."""
        try:
            outlines = light_patches(g)
        except Exception:
            self.errors += 1
            return []
        found: list[Found] = []
        for outline in outlines:
            # A patch holding a code read already is a flat card or page: skip the
            # cost (about 10 ms a patch).
            if any(holds(outline, f.center) for f in already):
                continue
            # Bicubic first, bilinear if that reads nothing: a reading on the edge
            # tips on a few grey levels, and OpenCV 4 and 5 resample differently
            # (4 rounds map coordinates to 1/32 px).
            for smooth in (True, False):
                try:
                    patch = flatten(g, outline, smooth=smooth)
                except Exception:
                    self.errors += 1
                    break
                if patch is None:
                    break
                read = self._patch_codes(patch)
                if read:
                    _merge(found, read)
                    break
        return found

    def _patch_codes(self, patch: FlatPatch) -> list[Found]:
        out: list[Found] = []
        for binarizer in (self._zx.Binarizer.LocalAverage, self._zx.Binarizer.GlobalHistogram):
            on_patch = self._zxing(patch.image, binarizer, 1.0, 1.0)
            _merge(out, [Found(f.text, tuple(patch.to_original(*p) for p in f.corners))
                         for f in on_patch])
        return out

    def _scaled(self, g: np.ndarray, scale: float) -> np.ndarray | None:
        if scale == 1.0:
            return g
        import cv2

        h, w = g.shape
        if scale > 1 and max(h, w) * scale > self.MAX_SIDE:
            return None
        if scale < 1 and min(h, w) * scale < self.MIN_SIDE:
            return None
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        return cv2.resize(g, (round(w * scale), round(h * scale)), interpolation=interp)

    def _zxing(self, img: np.ndarray, binarizer: Any, fx: float, fy: float) -> list[Found]:
        zx = self._zx
        try:
            barcodes = zx.read_barcodes(
                img, formats=zx.BarcodeFormat.QRCode, try_rotate=True, try_invert=True,
                try_downscale=True, binarizer=binarizer, text_mode=zx.TextMode.Plain)
        except Exception:
            self.errors += 1
            return []
        out = []
        for b in barcodes:
            text = _zx_text(b)
            if text is None:
                self.errors += 1
                continue
            out.append(Found(text, _zx_corners(b, fx, fy)))
        return out

    def _zbar(self, g: np.ndarray) -> list[Found]:
        assert self._pyzbar is not None
        try:
            symbols = self._pyzbar._pyzbar.decode(g, symbols=self._pyzbar._symbols)
        except Exception:
            self.errors += 1
            return []
        out = []
        for s in symbols:
            corners = tuple((float(p.x), float(p.y)) for p in (s.polygon or []))
            if len(corners) < 3:
                r = s.rect
                corners = ((r.left, r.top), (r.left + r.width, r.top),
                           (r.left + r.width, r.top + r.height), (r.left, r.top + r.height))
            out.append(Found(bytes(s.data).decode("utf-8", "replace"), corners))
        return out
