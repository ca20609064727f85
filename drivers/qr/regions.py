"""Code-like regions of a live frame, and the harder look the live decoder gives them
(issue 19: a pass on a phone screen).

A phone held out at arm's length shows its code at 2-3 camera pixels per module:
too small for the half-size copy, and its backlit screen clips and blooms, so
zxing-cpp's default binariser on the whole frame often does not even locate it.
What it does show, in the half-size copy, is a patch that is *bright* (the screen
clips: some pixels at ``BRIGHT`` or above, and a quarter of them in the region's
median block) and *textured both ways* (mean neighbour differences across and
down of ``TEXTURE`` or more, per 8 x 8 block): stripes, edges, a bright line or
sign and plain light fail one test or another. That costs about
0.01 ms on a frame with nothing bright in it, 0.1 ms with bright bits but no
screen, 0.3-0.7 ms with a screen.

In each such region (at most ``MAX_REGIONS``, largest first) the live decoder reads
a full-resolution crop enlarged 2x (cubic: small modules get pixels to sample)
with a local threshold (OpenCV's adaptive mean over ~6 modules, which flattens
bloom, glare and the moire beat; inverted too, for dark-mode apps), and in turn
per frame one more look: zxing-cpp's own local average on the crop as it is,
then the crop enlarged 3x with a finer local threshold (a phone tilted away has
modules narrower one way). A region is enlarged to ``MAX_ENLARGED`` px at most (a
near phone has large modules). Measured on the phone set (``drivers.phone``)
these read what the thorough still decoder reads there and more, at 0.05-2.5 ms
a region (the most for a near phone, on every other frame).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 8  # half-size pixels per block side
BRIGHT = 245  # grey level a backlit screen's white clips to (or above)
TEXTURE = 10  # mean |difference| of neighbours, each way, inside a block
MIN_BLOCKS = 9  # a region smaller than 3 x 3 blocks cannot hold a readable code
MAX_REGIONS = 2
LIT_SHARE = 25  # of 255: a tenth of a block's pixels at BRIGHT or above
LIT_MEDIAN = 64  # of 255: the median block of a region has a quarter of it clipped
ENLARGE = 2.0
ENLARGE_TILTED = 3.0
MAX_ENLARGED = 1000  # px: the enlarged crop's longer side at most
ADAPTIVE_BLOCK = 31  # px of the enlarged crop: about 6 modules at 2.5 px a module
ADAPTIVE_C = 5


@dataclass(frozen=True)
class Region:
    """A box in full-frame pixels: x0, y0 inclusive, x1, y1 exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    def holds(self, pt: tuple[float, float]) -> bool:
        return self.x0 <= pt[0] < self.x1 and self.y0 <= pt[1] < self.y1


def code_like_regions(small: np.ndarray, scale: float) -> list[Region]:
    """Bright, two-way textured patches of a shrunk grey frame, as boxes of the full
    frame (``scale``: full pixels per shrunk pixel), largest first."""
    import cv2

    if cv2.minMaxLoc(small)[1] < BRIGHT:
        return []  # nothing clips: no backlit screen (the common, cheap case)
    h, w = small.shape
    bh, bw = h // BLOCK, w // BLOCK
    if bh < 3 or bw < 3:
        return []
    core = small[:bh * BLOCK, :bw * BLOCK]
    area = cv2.INTER_AREA
    # Every image shrunk here is a whole number of blocks: OpenCV's area average
    # is fast for whole factors only (0.5 ms against 0.01 for a 639 px row).
    clipped = cv2.threshold(core, BRIGHT - 1, 255, cv2.THRESH_BINARY)[1]
    lit = cv2.resize(clipped, (bw, bh), interpolation=area)
    if np.count_nonzero(lit >= LIT_MEDIAN) < MIN_BLOCKS // 2:
        return []  # bright lines or letters, no screen: skip the texture measure
    edge = cv2.BORDER_REPLICATE
    dx = cv2.copyMakeBorder(cv2.absdiff(core[:, 1:], core[:, :-1]), 0, 0, 0, 1, edge)
    dy = cv2.copyMakeBorder(cv2.absdiff(core[1:], core[:-1]), 0, 1, 0, 0, edge)
    ex = cv2.resize(dx, (bw, bh), interpolation=area)
    ey = cv2.resize(dy, (bw, bh), interpolation=area)
    flag = ((ex >= TEXTURE) & (ey >= TEXTURE) & (lit >= LIT_SHARE)).astype(np.uint8)
    if not flag.any():
        return []
    # Grow by a block: a code's quiet zone and bloomed edge are not textured.
    flag = cv2.dilate(flag, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(flag, connectivity=8)
    # A screen clips over much of its area; a bright line or letters in the scene
    # only in a few blocks of theirs.
    found = sorted((stats[i] for i in range(1, n) if stats[i][4] >= MIN_BLOCKS
                    and np.median(lit[labels == i]) >= LIT_MEDIAN),
                   key=lambda s: -int(s[4]))[:MAX_REGIONS]
    k = BLOCK * scale
    return [Region(int(x * k), int(y * k), int((x + bw_) * k), int((y + bh_) * k))
            for x, y, bw_, bh_, _ in found]


def read_region(zx: Any, grey: np.ndarray, region: Region, step: int,
                opts: dict[str, Any]) -> list[tuple[Any, float, float, float]]:
    """zxing-cpp results for ``region`` of the full frame: each with the factor and
    offset that map its corners back into the frame. ``step`` (the how-many-th
    frame this region has been looked at) picks the second binarisation."""
    import cv2

    h, w = grey.shape
    x0, y0 = max(0, region.x0), max(0, region.y0)
    x1, y1 = min(w, region.x1), min(h, region.y1)
    if x1 - x0 < 16 or y1 - y0 < 16:
        return []
    crop = np.ascontiguousarray(grey[y0:y1, x0:x1])
    # A large region is a near phone with large modules: enlarge it less (cost).
    fit = MAX_ENLARGED / max(x1 - x0, y1 - y0)
    k = max(1.0, min(ENLARGE, fit))
    big = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    f = 1.0 / k
    binary = cv2.adaptiveThreshold(big, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY,
                                   ADAPTIVE_BLOCK, ADAPTIVE_C)
    found = zx.read_barcodes(binary, **{**opts, "binarizer": zx.Binarizer.BoolCast,
                                        "try_invert": True})
    if found:
        return [(b, f, x0, y0) for b in found]
    if step % 2 == 0:
        found = zx.read_barcodes(crop, **{**opts, "try_invert": True})
        return [(b, 1.0, x0, y0) for b in found]
    # A code tilted away has narrower modules one way: enlarge more, threshold finer.
    k = max(1.0, min(ENLARGE_TILTED, fit))
    bigger = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    binary = cv2.adaptiveThreshold(bigger, 255, cv2.ADAPTIVE_THRESH_MEAN_C,
                                   cv2.THRESH_BINARY, 21, 2)
    found = zx.read_barcodes(binary, **{**opts, "binarizer": zx.Binarizer.BoolCast,
                                        "try_invert": True})
    return [(b, 1.0 / k, x0, y0) for b in found]
