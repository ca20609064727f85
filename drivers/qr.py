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
``hold_s``. A frame-age watchdog reports a camera that stops delivering frames as a
fault (and recovery when frames come back). What a code *means* (pass, visitor,
garbage) is not decided here.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Protocol

import numpy as np

from drivers.base import Counters, FaultCallback, Progress, no_fault

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
        try:
            return barcode.text  # type: ignore[attr-defined]
        except Exception:
            # The binding builds str from the library's UTF-8; if that ever fails,
            # fall back to the raw bytes rather than losing the code.
            try:
                return bytes(barcode.bytes).decode("utf-8", "replace")  # type: ignore[attr-defined]
            except Exception:
                self.errors += 1
                return None


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


def make_decoder(name: DecoderName = "auto") -> Decoder:
    """A decoder by name; "auto" prefers zxing-cpp and falls back to pyzbar."""
    if name == "zxing":
        return ZxingDecoder()
    if name == "pyzbar":
        return PyzbarDecoder()
    if name == "auto":
        try:
            return ZxingDecoder()
        except ImportError:
            return PyzbarDecoder()
    raise ValueError(f"unknown QR decoder {name!r} (expected auto, zxing or pyzbar)")


class QrScanner:
    """Reads frames on a daemon thread, decodes them and calls ``on_code(text)``.

    A text is suppressed while it was last seen (in any frame) less than ``hold_s``
    ago by ``now()``; every sighting refreshes that time, so a code held in front of
    the camera is reported once, and again only after it has been away for hold_s.
    ``now`` is injectable so drills can run on a simulated clock.

    ``progress`` advances once per frame after its decode and callbacks return.
    ``counters``: frames, codes (reported), repeats (suppressed sightings),
    decode_errors, read_errors, callback_errors.
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
    ) -> None:
        self.source = source
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

        errors_before = getattr(self.decoder, "errors", 0)
        try:
            texts = self.decoder.decode(frame)
        except Exception:  # a third-party decoder that breaks the contract
            self.counters.inc("decode_errors")
            texts = []
        swallowed = getattr(self.decoder, "errors", 0) - errors_before
        if swallowed > 0:
            self.counters.inc("decode_errors", swallowed)

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
