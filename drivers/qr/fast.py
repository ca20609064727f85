"""``FastScanDecoder``, the live camera's decoder: a half-size pass, full-resolution
crops around candidates, a full pass every few frames, code-like regions read harder."""
from __future__ import annotations

import numpy as np

from drivers.base import Counters
from drivers.qr.base import Found, Point, _as_decodable, _merge, _zx_corners, _zx_text
from drivers.qr.regions import code_like_regions, read_region

class FastScanDecoder:
    """The live decoder: cheap on the frames without a code, which are most frames.

    Per frame:

    1. Shrink the (grey) frame by ``scale`` with an area average, which also halves
       the sensor noise, and run zxing-cpp on it: QR only, no rotation, inversion
       or pyramid. Codes with >= 3 px per module at full size (1.5 when shrunk)
       read here; what reads is final (Reed-Solomon checked). A colour frame is
       turned grey first (measured cheaper than shrinking three channels); a
       camera's Y plane needs nothing.
    2. A symbol zxing-cpp located there but could not decode is decoded again at
       full resolution in a crop around it.
    3. Every ``full_every``-th frame (the first one included) also gets a
       full-resolution pass, for codes too small to be seen shrunk (a pass held far
       from the camera): such a code is read within ``full_every`` frames, 0.13 s
       at 30 fps. This pass is most of the cost of an empty frame, hence the
       interval. Frames too small to shrink always get it. ``restart()`` makes
       the next frame a full-pass one (the scanner calls it when a frame comes
       after skipped ones: something just appeared).
    4. If the half-size copy shows a code-like region (a backlit screen: bright
       and textured both ways; ``regions``) holding no code read yet, that
       region is read again at full resolution, enlarged and locally thresholded,
       plus one more binarisation that changes from frame to frame: a pass on a
       phone at arm's length, with bloom, glare and moire, reads within a few
       frames. Nothing is done there on frames without such a region.

    Stateful (counts frames): one instance per camera. ``counters``: frames,
    full_passes, crops, regions. ``busy``: the last frame held a code, or
    something code-like (a located symbol or region): worth the next frame too.
    """

    name = "fast"
    MIN_SMALL_SIDE = 120  # a shrunk frame smaller than this is not worth shrinking to

    def __init__(self, *, scale: int = 2, full_every: int = 4, max_crops: int = 4,
                 regions: bool = True) -> None:
        if scale < 1 or full_every < 1 or max_crops < 0:
            raise ValueError("need scale >= 1, full_every >= 1, max_crops >= 0")
        import cv2  # noqa: F401  (lazy like the libraries; fail here, not per frame)
        import zxingcpp

        self._zx = zxingcpp
        self.scale = scale
        self.full_every = full_every
        self.max_crops = max_crops
        self.regions = regions
        self.busy = False
        self._region_steps = 0  # consecutive frames with a code-like region looked at
        self._full_opts = dict(
            formats=zxingcpp.BarcodeFormat.QRCode, try_rotate=False, try_invert=False,
            try_downscale=False, text_mode=zxingcpp.TextMode.Plain)
        # return_errors: a symbol that was found but failed to decode still comes
        # back, with its position: that is the candidate for a full-resolution look.
        self._small_opts = {**self._full_opts, "return_errors": True}
        self._frames = 0
        self.errors = 0
        self.counters = Counters()

    def decode(self, grey: np.ndarray) -> list[str]:
        return [f.text for f in self.find(grey)]

    def restart(self) -> None:
        """Give the next frame the full-resolution pass (a new scene)."""
        self._frames = 0

    def find(self, frame: np.ndarray) -> list[Found]:
        self.busy = False
        try:
            grey = _as_decodable(frame)
            if grey is None:
                return []
            return self._find(grey)
        except Exception:
            self.errors += 1
            return []

    def _find(self, grey: np.ndarray) -> list[Found]:
        import cv2

        n = self._frames
        self._frames += 1
        self.counters.inc("frames")
        h, w = grey.shape
        found: list[Found] = []
        sw, sh = w // self.scale, h // self.scale
        full_pass = n % self.full_every == 0
        small: np.ndarray | None = None
        candidates: list[Found] = []  # located, not decoded (text unknown)
        fx = 1.0
        if self.scale > 1 and min(sw, sh) >= self.MIN_SMALL_SIDE:
            small = cv2.resize(grey, (sw, sh), interpolation=cv2.INTER_AREA)
            fx, fy = w / sw, h / sh
            for b in self._zx.read_barcodes(small, **self._small_opts):
                corners = _zx_corners(b, fx, fy)
                text = _zx_text(b) if b.valid else None
                if text is not None:
                    _merge(found, [Found(text, corners)])
                else:
                    _merge(candidates, [Found("", corners)])  # one symbol may come twice
            for cand in candidates[:self.max_crops]:
                if full_pass:
                    break  # the full pass below looks there anyway
                if any(cand.overlaps(f) for f in found):
                    continue  # read already (in the copy, or by an earlier crop)
                self.counters.inc("crops")
                _merge(found, self._crop(grey, cand.corners))
        else:
            full_pass = True
        if full_pass:
            self.counters.inc("full_passes")
            _merge(found, self._read(grey))
        looked = self._regions(grey, small, fx, found) if small is not None else False
        self._region_steps = self._region_steps + 1 if looked else 0
        self.busy = bool(found or candidates or looked)
        return found

    def _regions(self, grey: np.ndarray, small: np.ndarray, scale: float,
                 found: list[Found]) -> bool:
        """Read the code-like regions of ``small`` that hold no code read yet, into
        ``found``; whether there were any."""
        if not self.regions:
            return False
        looked = False
        for region in code_like_regions(small, scale):
            if any(region.holds(f.center) for f in found):
                continue
            looked = True
            self.counters.inc("regions")
            for b, f, dx, dy in read_region(self._zx, grey, region, self._region_steps,
                                            self._full_opts):
                text = _zx_text(b)
                if text is None:
                    self.errors += 1
                    continue
                _merge(found, [Found(text, _zx_corners(b, f, f, dx, dy))])
        return looked

    def _read(self, grey: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> list[Found]:
        out = []
        for b in self._zx.read_barcodes(grey, **self._full_opts):
            text = _zx_text(b)
            if text is None:
                self.errors += 1
                continue
            out.append(Found(text, _zx_corners(b, dx=dx, dy=dy)))
        return out

    def _crop(self, grey: np.ndarray, corners: tuple[Point, ...]) -> list[Found]:
        """Decode around a candidate: its bounding box plus a margin of a third of its
        size each way (quiet zone, and corners found on a blurred copy)."""
        h, w = grey.shape
        xs = [p[0] for p in corners]
        ys = [p[1] for p in corners]
        pad = max(max(xs) - min(xs), max(ys) - min(ys)) / 3 + 8
        x0, x1 = max(0, int(min(xs) - pad)), min(w, int(max(xs) + pad) + 1)
        y0, y1 = max(0, int(min(ys) - pad)), min(h, int(max(ys) + pad) + 1)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        return self._read(np.ascontiguousarray(grey[y0:y1, x0:x1]), x0, y0)
