"""A font that has Chinese, for what the gate prints (pass cards, daily reports).

ReportLab embeds TrueType outlines only (not the CFF/PostScript outlines of
Noto Sans CJK's .ttc), so the first choice is WenQuanYi Micro Hei, a TrueType
collection from Debian's ``fonts-wqy-microhei`` (installed by scripts/setup).
``GATE_CJK_FONT`` names another file; otherwise a few well-known Debian paths are
tried, then fontconfig (``fc-list :lang=zh``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

APT_PACKAGE = "fonts-wqy-microhei"

KNOWN = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
)


class FontMissing(RuntimeError):
    pass


def _truetype(path: Path) -> bool:
    """TrueType outlines (a 'glyf' table), which ReportLab can embed."""
    try:
        from reportlab.pdfbase.ttfonts import TTFont

        TTFont("probe", str(path), subfontIndex=0)
        return True
    except Exception:
        return False


def _fontconfig() -> list[Path]:
    if shutil.which("fc-list") is None:
        return []
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({Path(line.split(":")[0].strip()) for line in out.splitlines() if line.strip()})


@lru_cache(maxsize=1)
def cjk_font() -> Path:
    """A TrueType font file with CJK glyphs, or FontMissing saying what to install."""
    env = os.environ.get("GATE_CJK_FONT")
    if env:
        p = Path(env)
        if not p.is_file():
            raise FontMissing(f"GATE_CJK_FONT={env}: no such file")
        if not _truetype(p):
            raise FontMissing(f"GATE_CJK_FONT={env}: not a TrueType font that can be embedded in a PDF")
        return p
    for candidate in [Path(k) for k in KNOWN] + _fontconfig():
        if candidate.is_file() and candidate.suffix.lower() in (".ttf", ".ttc") and _truetype(candidate):
            return candidate
    raise FontMissing(
        f"no Chinese TrueType font found: install one with `sudo apt-get install {APT_PACKAGE}` "
        "(or set GATE_CJK_FONT to a .ttf/.ttc file)"
    )
