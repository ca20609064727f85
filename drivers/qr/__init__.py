"""QR decoding: decoders over greyscale frames, and a scanner thread that turns a
frame source into ``on_code(text)`` calls.

Decoders, cheapest first:

* ``FastScanDecoder`` -- the live camera path (``decoder = "auto"`` with zxing-cpp).
  Most frames at a gate hold no code, so it looks at a half-size copy of each frame
  (codes of >= 3 px per module read there), decodes at full resolution only around
  what it found there, and every ``full_every``-th frame does a full-resolution pass
  so that far/small codes are read within that many frames.
* ``ZxingDecoder`` / ``PyzbarDecoder`` -- one library on the whole frame.
* ``ThoroughDecoder`` -- still images (`gate scan`, photos): several scales and
  binarisers, rotation, inversion, pyzbar last; every code on a page, in reading order.

A code held steady in front of the camera appears in every frame for seconds; the
scanner reports it once and stays quiet until it has been out of sight for
``hold_s``. A source that raises (``SupervisedCamera``: a stalled or unplugged
camera, by the age of its last frame) is reported through ``on_fault``, and its
recovery with the next frame. What a code *means* (pass, visitor, garbage) is not
decided here.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Protocol

import numpy as np

from drivers.base import Counters, FaultCallback, Progress, no_fault
from drivers.qr_flatten import FlatPatch, flatten, holds, light_patches
from drivers.qr_idle import ChangeGate
from drivers.qr_regions import code_like_regions, read_region

if TYPE_CHECKING:  # camera.py imports nothing from here at runtime; avoid a cycle
    from drivers.camera import FrameSource

DecoderName = Literal["auto", "fast", "zxing", "pyzbar", "thorough"]


def to_grey(frame: np.ndarray) -> np.ndarray:
    """BGR, BGRA or greyscale uint8 frame -> 2-D C-contiguous uint8 greyscale.

    A grey frame is returned as is (no copy), so a camera's Y plane costs nothing.
    Raises ValueError for anything that is not a uint8 image.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image, got {type(frame).__name__} "
                         f"{getattr(frame, 'dtype', '')}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        return np.ascontiguousarray(frame)
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        import cv2  # lazy: decoders and the scanner do not otherwise need OpenCV

        code = cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(frame), code)
    raise ValueError(f"expected a grey, BGR or BGRA image, got shape {frame.shape}")


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


class ZxingDecoder:
    """zxing-cpp: the fastest and most tolerant decoder measured here (see FIELD-NOTES).

    The live path turns off rotation and inversion searches: a pass on a phone is
    held roughly upright and dark-on-light, and the extra passes cost time per frame.
    """

    name = "zxing"

    def __init__(self, *, try_rotate: bool = False, try_invert: bool = False,
                 try_downscale: bool = True) -> None:
        import zxingcpp  # lazy: a box with only pyzbar still imports this module

        self._zx = zxingcpp
        self._kwargs = dict(
            formats=zxingcpp.BarcodeFormat.QRCode,
            try_rotate=try_rotate,
            try_invert=try_invert,
            try_downscale=try_downscale,
            # Plain keeps the payload as encoded; the default (HRI) rewrites control
            # characters as "<SOH>" and so changes what a token compares equal to.
            text_mode=zxingcpp.TextMode.Plain,
        )
        self.errors = 0  # library failures swallowed; QrScanner adds them to its counters

    def decode(self, grey: np.ndarray) -> list[str]:
        try:
            g = _as_decodable(grey)
            if g is None:
                return []
            found = self._zx.read_barcodes(g, **self._kwargs)
        except Exception:
            self.errors += 1
            return []
        return [t for t in (self._text(b) for b in found) if t is not None]

    def _text(self, barcode: object) -> str | None:
        text = _zx_text(barcode)
        if text is None:
            self.errors += 1
        return text


class PyzbarDecoder:
    """pyzbar (libzbar): slower and finds fewer codes, but packaged everywhere.

    Always fed greyscale: given a BGR array pyzbar silently uses only the blue channel.
    """

    name = "pyzbar"

    def __init__(self) -> None:
        from pyzbar import pyzbar  # lazy: needs libzbar0 at import time

        self._pyzbar = pyzbar
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]
        self.errors = 0

    def decode(self, grey: np.ndarray) -> list[str]:
        try:
            g = _as_decodable(grey)
            if g is None:
                return []
            found = self._pyzbar.decode(g, symbols=self._symbols)
            # zbar already converts the charsets it recognises to UTF-8; anything
            # else (binary, a wrong guess) is decoded lossily rather than dropped.
            return [bytes(s.data).decode("utf-8", "replace") for s in found]
        except Exception:
            self.errors += 1
            return []


# --- where a code is, and merging what several passes found -------------------------

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


# --- the live camera path ----------------------------------------------------------------


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
       and textured both ways; ``qr_regions``) holding no code read yet, that
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


# --- still images: every code, whatever it costs -------------------------------------------


class ThoroughDecoder:
    """For still images (``gate scan``, photos of passes): finds every code it can.

    Runs zxing-cpp with rotation and inversion at several scales (0.5 to 2: a
    shrunk copy averages away print texture and JPEG noise, an enlarged one gives
    tiny codes more pixels) with both of its binarisers, then pyzbar, then zxing-cpp
    again on each large light patch flattened (a code printed on a T-shirt ripples;
    ``qr_flatten``), and keeps each symbol once (by position). Results come in reading order. A few to a few tens
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
        bent card; see ``qr_flatten``) that holds none of the codes ``already``
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


def make_decoder(name: DecoderName = "auto") -> Decoder:
    """A decoder by name. "auto" is the live camera's choice: ``FastScanDecoder``
    with zxing-cpp, else pyzbar on the whole frame. "thorough" is for still images."""
    if name == "fast":
        return FastScanDecoder()
    if name == "zxing":
        return ZxingDecoder()
    if name == "pyzbar":
        return PyzbarDecoder()
    if name == "thorough":
        return ThoroughDecoder()
    if name == "auto":
        try:
            return FastScanDecoder()
        except ImportError:
            return PyzbarDecoder()
    raise ValueError(f"unknown QR decoder {name!r} "
                     "(expected auto, fast, zxing, pyzbar or thorough)")


class QrScanner:
    """Reads frames on a daemon thread, decodes them and calls ``on_code(text)``.

    A text is suppressed while it was last seen (in any frame) less than ``hold_s``
    ago by ``now()``; every sighting refreshes that time, so a code held in front of
    the camera is reported once, and again only after it has been away for hold_s.
    ``now`` is injectable so drills can run on a simulated clock.

    Frames nothing changed in are not decoded (``idle``, a ``ChangeGate``; None
    decodes every frame): the lane's PIR says when someone is there
    (``presence``), and a slow full check finds a code held perfectly still.

    ``progress`` advances once per frame after its decode and callbacks return.
    ``counters``: frames, skipped (not decoded: unchanged), codes (reported),
    repeats (suppressed sightings), decode_errors, read_errors, callback_errors.
    """

    _FPS_WINDOW_S = 2.0  # real seconds of frame times behind the rolling fps

    def __init__(
        self,
        source: FrameSource,
        decoder: Decoder,
        on_code: Callable[[str], None],
        *,
        hold_s: float = 1.5,
        now: Callable[[], float] = time.monotonic,
        name: str = "camera",
        on_fault: FaultCallback = no_fault,
        idle: ChangeGate | None | Literal["default"] = "default",
    ) -> None:
        self.source = source
        self.idle = ChangeGate() if idle == "default" else idle
        self.decoder = decoder
        self.on_code = on_code
        self.hold_s = hold_s
        self.now = now
        self.name = name
        self.on_fault = on_fault
        self.progress = Progress()
        self.counters = Counters()
        self.last_frame_at: float | None = None  # time.monotonic() of the last frame
        self._last_seen: dict[str, float] = {}  # only touched by the scanner thread
        self._frame_times: collections.deque[float] = collections.deque(maxlen=120)
        self._times_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy: bool | None = None

    def start(self) -> QrScanner:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"qr-{self.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread. The source belongs to the caller and is not closed."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def presence(self, present: bool) -> None:
        """The lane's presence sensor: someone is in front of the camera (True:
        decode every frame) or has gone (False: only frames that changed, and the
        slow full check). Safe to call from any thread."""
        if self.idle is not None:
            self.idle.presence(present)

    @property
    def frame_age(self) -> float | None:
        """Real seconds since the last frame was processed (None before the first)."""
        last = self.last_frame_at
        return None if last is None else time.monotonic() - last

    @property
    def fps(self) -> float:
        """Frames per real second over the last couple of seconds (0 if stalled)."""
        cutoff = time.monotonic() - self._FPS_WINDOW_S
        with self._times_lock:
            recent = [t for t in self._frame_times if t >= cutoff]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read(timeout=0.5)
            except Exception as e:
                self.counters.inc("read_errors")
                self._set_health(False, f"frame read failed: {e!r}")
                self._stop.wait(0.5)  # a failing source must not spin the CPU
                continue
            if frame is None:
                continue
            try:
                self._process(frame)
            finally:
                self.progress.advance()

    def _process(self, frame: np.ndarray) -> None:
        """Decode one frame and report its new codes (the caller advances progress)."""
        t = time.monotonic()
        self.last_frame_at = t
        with self._times_lock:
            self._frame_times.append(t)
        self.counters.inc("frames")
        self._set_health(True, "frames arriving")

        gate = self.idle
        if gate is not None:
            try:
                verdict = gate.check(frame)
            except Exception:  # not an image: let the decoder count it
                verdict = None
            if verdict is not None and not verdict.decode:
                self.counters.inc("skipped")
                return
            if verdict is not None and verdict.fresh:
                restart = getattr(self.decoder, "restart", None)
                if restart is not None:
                    restart()  # something appeared: look at this frame fully
        errors_before = getattr(self.decoder, "errors", 0)
        failed = False
        try:
            texts = self.decoder.decode(frame)
        except Exception:  # a third-party decoder that breaks the contract
            self.counters.inc("decode_errors")
            texts = []
            failed = True
        swallowed = getattr(self.decoder, "errors", 0) - errors_before
        if swallowed > 0:
            self.counters.inc("decode_errors", swallowed)
        if gate is not None:
            gate.decoded(ok=not failed and swallowed <= 0, codes=bool(texts),
                         code_like=bool(getattr(self.decoder, "busy", False)))

        now = self.now()
        # Forget codes out of sight for hold_s; keeps the table small on a busy gate.
        for old in [k for k, seen in self._last_seen.items() if now - seen >= self.hold_s]:
            del self._last_seen[old]
        for text in dict.fromkeys(texts):  # the same code twice in one frame is one sighting
            seen = self._last_seen.get(text)
            self._last_seen[text] = now
            if seen is not None and now - seen < self.hold_s:
                self.counters.inc("repeats")
                continue
            self.counters.inc("codes")
            try:
                self.on_code(text)
            except Exception:
                # The lane's handler failing must not stop the camera.
                self.counters.inc("callback_errors")

    def _set_health(self, ok: bool, detail: str) -> None:
        if self._healthy is not ok:  # report changes only, not every frame
            self._healthy = ok
            self.on_fault(self.name, ok, detail)
