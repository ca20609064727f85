"""Printed passes: credit-card-sized cards (ISO/IEC 7810 ID-1, 85.6 x 54 mm) on A4,
for the residents who have no smartphone.

Ten cards a page (2 x 5), edge to edge so that one straight cut serves two cards,
with crop marks in the margin on every cut line and a hairline round each card for
scissors. Each card: the category's colour band and name (from the policy's
categories), the pass QR (a token signed for that pass, as `gate passes issue`
makes), the holder's name and unit, and the validity.

Made with ReportLab: exact physical sizes in millimetres, the QR drawn as vector
modules (sharp at any printer resolution), and the Chinese font embedded as a
subset with its Unicode map (the text stays searchable). The font is WenQuanYi
Micro Hei (Debian ``fonts-wqy-microhei``; see gate.desk.fonts).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterable

from gate.core.words import CARD, both
from gate.config import PolicyConfig

MM = 72.0 / 25.4  # points per millimetre
CARD_W_MM, CARD_H_MM = 85.6, 54.0
PAGE_W_MM, PAGE_H_MM = 210.0, 297.0
COLS, ROWS = 2, 5
PER_PAGE = COLS * ROWS
INSET_MM = 2.0  # nothing is printed closer than this to a cut line
BAND_MM = 10.0
QR_BORDER = 3  # modules of quiet zone drawn inside the QR square (plus the white around it)
FONT = "GateCJK"


@dataclass(frozen=True)
class CardPass:
    pass_id: str
    holder: str
    unit: str
    category: str
    valid_from: datetime | None
    valid_until: datetime | None
    observation_until: datetime | None
    token: str


def natural_key(text: str) -> list[Any]:
    """'3-2-501' before '3-2-1001', '10-1-101' after '9-1-101'."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text or "")]


def unit_matches(unit: str | None, prefixes: Iterable[str]) -> bool:
    """--unit 3-2 selects 3-2 and 3-2-501, not 3-20-101."""
    unit = unit or ""
    return any(unit == p or unit.startswith(p.rstrip("-") + "-") for p in prefixes)


def _register_font() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    from gate.desk.fonts import cjk_font

    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT, str(cjk_font()), subfontIndex=0))


def _text_colour(hex_colour: str) -> tuple[float, float, float]:
    """Black or white, whichever reads better on the band."""
    r, g, b = _rgb(hex_colour)
    lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return (0.0, 0.0, 0.0) if lum > 0.6 else (1.0, 1.0, 1.0)


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    try:
        return int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255
    except (ValueError, IndexError):
        return (0.6, 0.6, 0.6)


def _fit(text: str, max_w: float, size: float, min_size: float) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    while size > min_size and stringWidth(text, FONT, size) > max_w:
        size -= 0.5
    return size


def _clip(text: str, max_w: float, size: float) -> str:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    if stringWidth(text, FONT, size) <= max_w:
        return text
    while text and stringWidth(text + "…", FONT, size) > max_w:
        text = text[:-1]
    return text + "…"


def _day(v: datetime | None, tz: tzinfo) -> str:
    return v.astimezone(tz).strftime("%Y-%m-%d") if v else ""


def validity_text(p: CardPass, tz: tzinfo) -> str:
    if p.valid_from and p.valid_until:
        return CARD["valid_between"][0].format(start=_day(p.valid_from, tz), end=_day(p.valid_until, tz))
    if p.valid_until:
        return CARD["valid_until"][0].format(end=_day(p.valid_until, tz))
    if p.valid_from:
        return CARD["valid_since"][0].format(start=_day(p.valid_from, tz))
    return both(CARD, "no_end")


def qr_matrix(token: str) -> list[list[bool]]:
    """The QR's modules (True = dark), error correction M. zxing-cpp encodes a token in
    ~0.4 ms here; segno, the fallback for a zxing-cpp without an encoder (< 2.3),
    spends ~9 ms choosing the mask in pure Python: 1,000 cards took 24 s."""
    try:
        import numpy as np
        import zxingcpp

        barcode = zxingcpp.create_barcode(token, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
        return (np.asarray(barcode.to_image(scale=1, add_quiet_zones=False)) < 128).tolist()
    except (ImportError, AttributeError):
        import segno

        return [[bool(v) for v in row] for row in segno.make(token, error="m").matrix]


def _draw_qr(c: Any, token: str, x: float, y: float, size: float) -> None:
    matrix = qr_matrix(token)
    n = len(matrix) + 2 * QR_BORDER
    m = size / n
    c.setFillColorRGB(1, 1, 1)
    c.rect(x, y, size, size, fill=1, stroke=0)
    # Vector modules, one rectangle per run of dark modules in a row, written as PDF
    # operators in one literal: reportlab's path.rect formats each number in Python
    # (~60 % of printing time for 1,000 cards).
    ops = []
    for r, row in enumerate(matrix):
        top = y + size - (r + QR_BORDER) * m
        col = 0
        while col < len(row):
            if row[col]:
                start = col
                while col < len(row) and row[col]:
                    col += 1
                ops.append(f"{x + (start + QR_BORDER) * m:.3f} {top - m:.3f} {(col - start) * m:.3f} {m:.3f} re")
            else:
                col += 1
    c.setFillColorRGB(0, 0, 0)
    if ops:
        c.addLiteral("\n".join(ops) + "\nf")


def _draw_card(c: Any, p: CardPass, x: float, y: float, policy: PolicyConfig, tz: tzinfo) -> None:
    w, h, inset = CARD_W_MM * MM, CARD_H_MM * MM, INSET_MM * MM
    cat = policy.category(p.category)
    colour = cat.colour
    # Hairline outline on the cut line (for scissors), light grey.
    c.setStrokeColorRGB(0.75, 0.75, 0.75)
    c.setLineWidth(0.25)
    c.rect(x, y, w, h, fill=0, stroke=1)
    # Colour band with the category's name.
    band_h = BAND_MM * MM
    bx, by, bw = x + inset, y + h - inset - band_h, w - 2 * inset
    c.setFillColorRGB(*_rgb(colour))
    c.roundRect(bx, by, bw, band_h, 1.2 * MM, fill=1, stroke=0)
    c.setFillColorRGB(*_text_colour(colour))
    zh = cat.label_zh or p.category
    c.setFont(FONT, 17)
    c.drawString(bx + 2.5 * MM, by + 3.0 * MM, zh)
    from reportlab.pdfbase.pdfmetrics import stringWidth

    en_x = bx + 2.5 * MM + stringWidth(zh, FONT, 17) + 2 * MM
    c.setFont(FONT, 8)
    c.drawString(en_x, by + 3.3 * MM, (cat.label_en or p.category).upper())
    c.setFont(FONT, 9)
    c.drawRightString(bx + bw - 2.5 * MM, by + 3.3 * MM, f"{CARD['pass'][0]}  {CARD['pass'][1]}")
    # QR, bottom left.
    qr = h - 2 * inset - band_h - 1.5 * MM
    _draw_qr(c, p.token, x + inset, y + inset, qr)
    # Holder, unit, validity, right of the QR.
    tx = x + inset + qr + 2.0 * MM
    tw = x + w - inset - tx
    top = by - 1.5 * MM
    c.setFillColorRGB(0, 0, 0)
    name = p.holder or ""
    size = _fit(name, tw, 18, 9)
    name = _clip(name, tw, size)
    c.setFont(FONT, size)
    # A little stroke makes the name bold (the font has no bold face).
    c.setStrokeColorRGB(0, 0, 0)
    c.setLineWidth(0.35)
    t = c.beginText(tx, top - 7.5 * MM)
    t.setFont(FONT, size)
    t.setTextRenderMode(2)
    t.textLine(name)
    t.setTextRenderMode(0)
    c.drawText(t)
    unit = p.unit or ""
    usize = _fit(unit, tw, 14, 8)
    c.setFont(FONT, usize)
    c.drawString(tx, top - 14.5 * MM, _clip(unit, tw, usize))
    vt = validity_text(p, tz)
    vsize = _fit(vt, tw, 8.5, 5.5)
    c.setFont(FONT, vsize)
    c.drawString(tx, top - 20.5 * MM, vt)
    if p.observation_until:
        c.setFillColorRGB(0.75, 0.1, 0.1)
        ot = CARD["observation_until"][0].format(end=_day(p.observation_until, tz))
        c.setFont(FONT, _fit(ot, tw, 7.5, 5.5))
        c.drawString(tx, top - 24.5 * MM, ot)
        c.setFillColorRGB(0, 0, 0)
    c.setFillColorRGB(0.35, 0.35, 0.35)
    c.setFont(FONT, 6.5)
    c.drawString(tx, y + inset + 4.2 * MM, CARD["one_person"][0])
    c.setFont(FONT, 5.5)
    c.drawString(tx, y + inset + 1.0 * MM, _clip(f"No. {p.pass_id}", tw, 5.5))


def _crop_marks(c: Any, x0: float, y0: float) -> None:
    """Marks in the margin, on the extension of every cut line, stopping short of the cards."""
    gap, edge = 2 * MM, 5 * MM
    pw, ph = PAGE_W_MM * MM, PAGE_H_MM * MM
    gw, gh = COLS * CARD_W_MM * MM, ROWS * CARD_H_MM * MM
    c.setStrokeColorRGB(0, 0, 0)
    c.setLineWidth(0.3)
    for i in range(COLS + 1):
        x = x0 + i * CARD_W_MM * MM
        c.line(x, ph - edge, x, y0 + gh + gap)
        c.line(x, edge, x, y0 - gap)
    for j in range(ROWS + 1):
        y = y0 + j * CARD_H_MM * MM
        c.line(edge, y, x0 - gap, y)
        c.line(x0 + gw + gap, y, pw - edge, y)


def render(cards: list[CardPass], out: Path, policy: PolicyConfig, tz: tzinfo, *, title: str = "",
           progress: Callable[[int], None] | None = None) -> int:
    """Write the cards to a PDF, ten to an A4 page. Returns the number of pages.
    `progress(n)` is told of every page's cards as they are drawn."""
    from reportlab.pdfgen import canvas

    _register_font()
    out = Path(out)
    pw, ph = PAGE_W_MM * MM, PAGE_H_MM * MM
    c = canvas.Canvas(str(out), pagesize=(pw, ph), pageCompression=1, initialFontName=FONT, initialFontSize=8)
    c.setTitle(title or "gate passes")
    c.setAuthor("gate")
    c.setCreator("gate passes print")
    x0 = (pw - COLS * CARD_W_MM * MM) / 2
    y0 = (ph - ROWS * CARD_H_MM * MM) / 2
    pages = max(1, -(-len(cards) // PER_PAGE))
    for page in range(pages):
        chunk = cards[page * PER_PAGE : (page + 1) * PER_PAGE]
        _crop_marks(c, x0, y0)
        for i, p in enumerate(chunk):
            col, row = i % COLS, i // COLS
            _draw_card(c, p, x0 + col * CARD_W_MM * MM, y0 + (ROWS - 1 - row) * CARD_H_MM * MM, policy, tz)
        # In the bottom margin, between the crop marks (never across one).
        c.setFillColorRGB(0.4, 0.4, 0.4)
        c.setFont(FONT, 6.5)
        room = CARD_W_MM * MM - 4 * MM
        c.drawString(x0 + 2 * MM, 7 * MM, _clip(f"{title}  {CARD['page'][0].format(n=page + 1, of=pages)} {CARD['page'][1]}", room, 6.5))
        c.drawString(x0 + CARD_W_MM * MM + 2 * MM, 7 * MM,
                     _clip(" · ".join(CARD["print_hint"]), room, 6.5))
        c.showPage()
        if progress is not None:
            progress(len(chunk))
    c.save()
    return pages


# ---------------------------------------------------------------- from the store


@dataclass(frozen=True)
class Selection:
    cards: list[CardPass]
    skipped: list[tuple[str, str]]  # (pass id, why)


def select(
    store: Any,
    *,
    units: tuple[str, ...] = (),
    ids: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    everything: bool = False,
    signer: Any,
    now: datetime,
    include_expired: bool = False,
    valid_days: int = 0,
) -> Selection:
    """The passes to print (by unit prefix, id or category), each with a freshly signed
    token. Revoked passes are never printed; expired ones only when asked. A row with
    no end date gets a token that ends valid_days from now (0: a token without end)."""
    from gate.core.tokens import PassToken, sign

    rows = store.conn.execute(
        "SELECT id, holder, unit, category, valid_from, valid_until, observation_until, revoked FROM passes"
    ).fetchall()

    def want(r: tuple[Any, ...]) -> bool:
        if r[0] in ids:
            return True
        if categories and r[3] not in categories:
            return False
        if everything:
            return True
        if units:
            return unit_matches(r[2], units)
        return bool(categories)

    wanted = [r for r in rows if want(r)]
    missing = [i for i in ids if i not in {r[0] for r in rows}]
    wanted.sort(key=lambda r: (natural_key(r[2] or ""), r[1] or "", r[0]))
    from gate.store.database import from_ts

    cards: list[CardPass] = []
    skipped: list[tuple[str, str]] = [(i, "not in the pass table") for i in missing]
    for pid, holder, unit, cat, vfrom, vuntil, obs, revoked in wanted:
        if revoked:
            skipped.append((pid, "revoked"))
            continue
        if vuntil is not None and vuntil < now.timestamp() and not include_expired:
            skipped.append((pid, "expired"))
            continue
        vf, vu = from_ts(vfrom), from_ts(vuntil)
        if vu is None and valid_days:
            vu = now + timedelta(days=valid_days)
        try:
            token = sign(PassToken(pid, cat, unit or "", vf, vu), signer)
        except ValueError as exc:
            skipped.append((pid, str(exc)))
            continue
        cards.append(CardPass(pid, holder or "", unit or "", cat, vf, vu, from_ts(obs), token))
    return Selection(cards, skipped)
