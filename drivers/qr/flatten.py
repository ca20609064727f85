"""Flattening a code printed on something that is not flat (a T-shirt, a bent card)
before decoding a still image.

Decoders sample a code's modules through a perspective transform fitted to its finder
patterns, which assumes a flat code. A print on cloth ripples, so the module grid
bends and sampling drifts off it half-way across. The light patch the code is printed
on bends the same way, and its outline is easy to find: this module finds the large
light patches in an image, takes each one's outline as four curved sides, and maps
the patch onto a square with a Coons patch (the surface that blends the four sides
linearly). Inside the square the rows and columns of modules are straight again.

Only for still images (``ThoroughDecoder``): a few milliseconds per patch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_PATCH_SIDE = 48  # px: smaller light patches cannot hold a readable code
MAX_PATCHES = 4  # the largest few light patches; a sheet of passes is one page
OUT_SIDE = 400  # px: the flattened patch's side (a version-10 code at ~7 px/module)
BORDER = 32  # px of white around the flattened patch: the decoder wants a quiet zone


@dataclass(frozen=True)
class FlatPatch:
    """A light patch of the image mapped onto a square.

    ``image``: the flattened patch (``OUT_SIDE`` square plus a white ``BORDER``);
    ``map_x``/``map_y``: for each pixel of ``image`` inside the border, where it came
    from in the original image, so that what is found there can be placed back.
    """

    image: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """A point of ``image`` -> the same point in the original image."""
        n = self.map_x.shape[0]
        i = min(max(int(round(y)) - BORDER, 0), n - 1)
        j = min(max(int(round(x)) - BORDER, 0), n - 1)
        return float(self.map_x[i, j]), float(self.map_y[i, j])


def light_patches(grey: np.ndarray) -> list[np.ndarray]:
    """The outlines (N x 2 float arrays, image pixels) of the largest light patches
    of a grey image, largest first; [] if there are none big enough to hold a code."""
    import cv2

    h, w = grey.shape
    if min(h, w) < MIN_PATCH_SIDE:
        return []
    _, light = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Close the code's dark modules into its light patch: a kernel wider than a
    # module but far narrower than the patch.
    k = max(3, min(h, w) // 20) | 1
    light = cv2.morphologyEx(light, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    contours, _ = cv2.findContours(light, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contours = sorted(contours, key=cv2.contourArea, reverse=True)[:MAX_PATCHES]
    return [c[:, 0, :].astype(np.float64) for c in contours
            if cv2.contourArea(c) >= MIN_PATCH_SIDE ** 2]


def holds(outline: np.ndarray, pt: tuple[float, float]) -> bool:
    """Whether a point lies inside (or on) a patch's outline."""
    import cv2

    return cv2.pointPolygonTest(outline.astype(np.float32), pt, False) >= 0


def flatten(grey: np.ndarray, outline: np.ndarray, *, smooth: bool = True) -> FlatPatch | None:
    """The patch inside ``outline`` mapped onto a square; None if the outline has
    no four corners to map from. ``smooth``: bicubic resampling, else bilinear."""
    sides = _four_sides(outline)
    return None if sides is None else _coons(grey, *sides, smooth=smooth)


def _four_sides(outline: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Split a closed outline into top, right, bottom and left curves (each running
    left to right or top to bottom), at the points nearest the corners of its
    smallest enclosing rotated rectangle. None if the outline has no four corners."""
    import cv2

    box = cv2.boxPoints(cv2.minAreaRect(outline.astype(np.float32)))
    corners = sorted(int(np.argmin(np.linalg.norm(outline - p, axis=1))) for p in box)
    if len(set(corners)) < 4:
        return None
    sides = []
    for a, b in zip(corners, corners[1:] + corners[:1]):
        side = outline[a:b + 1] if b > a else np.concatenate([outline[a:], outline[:b + 1]])
        if len(side) < 4:
            return None
        sides.append(_resample(side, OUT_SIDE))
    # Start from the corner nearest the image's top left.
    first = int(np.argmin([s[0].sum() for s in sides]))
    a, b, c, d = sides[first:] + sides[:first]
    run = a[-1] - a[0]
    if abs(run[0]) >= abs(run[1]):
        # Clockwise on screen: a runs along the top to the right, then b down the
        # right side, c back along the bottom, d up the left side.
        return a, b, c[::-1], d[::-1]
    # Anticlockwise: a runs down the left side, b along the bottom to the right,
    # c up the right side, d back along the top.
    return d[::-1], c[::-1], b, a


def _resample(curve: np.ndarray, n: int) -> np.ndarray:
    """n points evenly spaced along a polyline, by arc length."""
    steps = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    t = np.linspace(0.0, along[-1], n)
    return np.stack([np.interp(t, along, curve[:, 0]), np.interp(t, along, curve[:, 1])],
                    axis=1)


def _coons(grey: np.ndarray, top: np.ndarray, right: np.ndarray, bottom: np.ndarray,
           left: np.ndarray, *, smooth: bool = True) -> FlatPatch:
    """Map the patch bounded by four curves onto a square (a bilinearly blended
    Coons patch): each side lands on the square's side, the inside is blended."""
    import cv2

    n = OUT_SIDE
    u = np.linspace(0.0, 1.0, n)[None, :, None]
    v = np.linspace(0.0, 1.0, n)[:, None, None]
    p00, p10, p01, p11 = top[0], top[-1], bottom[0], bottom[-1]
    surface = ((1 - v) * top[None, :, :] + v * bottom[None, :, :]
               + (1 - u) * left[:, None, :] + u * right[:, None, :]
               - ((1 - u) * (1 - v) * p00 + u * (1 - v) * p10
                  + (1 - u) * v * p01 + u * v * p11))
    map_x = np.ascontiguousarray(surface[:, :, 0], dtype=np.float32)
    map_y = np.ascontiguousarray(surface[:, :, 1], dtype=np.float32)
    flat = cv2.remap(grey, map_x, map_y, cv2.INTER_CUBIC if smooth else cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=255)
    image = cv2.copyMakeBorder(flat, BORDER, BORDER, BORDER, BORDER, cv2.BORDER_CONSTANT,
                               value=255)
    return FlatPatch(image, map_x, map_y)
