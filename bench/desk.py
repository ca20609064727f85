"""The desk: printing pass cards (a QR each). Baseline: the same cards with segno's
encoder, the pure-Python one the printer used before, in the same run."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from unittest import mock
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.core import Context, Figure
from gate.desk import printing
from gate.config import PolicyConfig
from gate.core.tokens import PassToken, sign

TITLE = "desk: printing pass cards"


def _cards(n: int) -> list[printing.CardPass]:
    key = Ed25519PrivateKey.generate()
    return [
        printing.CardPass(f"p{i:05d}", f"住户{i}", f"{1 + i // 300}-{1 + i % 3}-{100 + i % 100}", "resident", None, None, None,
                          sign(PassToken(f"p{i:05d}", "resident", f"{1 + i // 300}-{1 + i % 3}"), key))
        for i in range(n)
    ]


def _segno_matrix(token: str) -> list[list[bool]]:
    import segno

    return [[bool(v) for v in row] for row in segno.make(token, error="m").matrix]


def run(ctx: Context) -> list[Figure]:
    n = 200 if ctx.quick else 1000
    cards = _cards(n)
    tz = ZoneInfo("Asia/Shanghai")
    with tempfile.TemporaryDirectory(prefix="bench-desk-") as tmp:
        ctx.log(f"  desk: printing {n:,} cards (zxing-cpp), then the same with segno")
        t0 = time.perf_counter()
        printing.render(cards, Path(tmp) / "a.pdf", PolicyConfig(), tz)
        fast = time.perf_counter() - t0
        with mock.patch.object(printing, "qr_matrix", _segno_matrix):
            t0 = time.perf_counter()
            printing.render(cards, Path(tmp) / "b.pdf", PolicyConfig(), tz)
            slow = time.perf_counter() - t0
    scale = 1000 / n
    return [Figure("print.1000_cards_s", fast * scale, "s", slow * scale, fast / slow,
                   note=f"{n:,} pass cards to PDF (scaled to 1,000); baseline: segno's encoder (target <= 3 s)", pi4=True)]
