"""QR decoding: decoders over greyscale frames, and a scanner thread that turns a
frame source into ``on_code(text)`` calls.

Decoders, cheapest first (one module each; ``factory`` picks one by name):

* ``FastScanDecoder`` (``fast``) -- the live camera path (``decoder = "auto"`` with zxing-cpp).
  Most frames at a gate hold no code, so it looks at a half-size copy of each frame
  (codes of >= 3 px per module read there), decodes at full resolution only around
  what it found there, and every ``full_every``-th frame does a full-resolution pass
  so that far/small codes are read within that many frames.
* ``ZxingDecoder`` / ``PyzbarDecoder`` (``whole_frame``) -- one library on the whole frame.
* ``ThoroughDecoder`` (``thorough``) -- still images (`gate scan`, photos): several scales and
  binarisers, rotation, inversion, pyzbar last; every code on a page, in reading order.

``QrScanner`` (``scanner``): a code held steady in front of the camera appears in every frame for seconds; the
scanner reports it once and stays quiet until it has been out of sight for
``hold_s``. A source that raises (``SupervisedCamera``: a stalled or unplugged
camera, by the age of its last frame) is reported through ``on_fault``, and its
recovery with the next frame. What a code *means* (pass, visitor, garbage) is not
decided here.
"""
from __future__ import annotations

from drivers.frames import FrameSource, to_grey
from drivers.qr.base import Decoder, Found, Point, reading_order
from drivers.qr.factory import DecoderName, make_decoder
from drivers.qr.fast import FastScanDecoder
from drivers.qr.scanner import QrScanner
from drivers.qr.thorough import ThoroughDecoder
from drivers.qr.whole_frame import PyzbarDecoder, ZxingDecoder

__all__ = ["Decoder", "DecoderName", "FastScanDecoder", "Found", "FrameSource", "Point",
           "PyzbarDecoder", "QrScanner", "ThoroughDecoder", "ZxingDecoder", "make_decoder",
           "reading_order", "to_grey"]
