"""One library on the whole frame: ``ZxingDecoder`` (zxing-cpp) and ``PyzbarDecoder``
(libzbar), each imported lazily so a box with only one of them still works."""
from __future__ import annotations

import numpy as np

from drivers.qr.base import _as_decodable, _zx_text

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
