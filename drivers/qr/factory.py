"""Choosing a QR decoder by name: "auto" (the live camera's), "fast", "zxing",
"pyzbar" or "thorough" (still images)."""
from __future__ import annotations

from typing import Literal

from drivers.qr.base import Decoder
from drivers.qr.fast import FastScanDecoder
from drivers.qr.thorough import ThoroughDecoder
from drivers.qr.whole_frame import PyzbarDecoder, ZxingDecoder

DecoderName = Literal["auto", "fast", "zxing", "pyzbar", "thorough"]


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
