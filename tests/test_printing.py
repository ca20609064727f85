"""`gate passes print`: pass cards on A4 that cut cleanly and scan from paper. Pages
are rendered with poppler's pdftoppm and read back with the project's own decoder."""
from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from drivers.qr import make_decoder
from gate.core.tokens import KeyRing, load_public, new_keypair
from gate.desk.printing import CARD_H_MM, CARD_W_MM, unit_matches
from gate.store.database import Store
from tests.conftest import ROOT

SHANGHAI = ZoneInfo("Asia/Shanghai")
DPI = 300
UNTIL = datetime(2026, 12, 31, 23, 59, 59, tzinfo=SHANGHAI)


def gate(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "gate.cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env={**os.environ, **(env or {})})


@pytest.fixture
def desk(tmp_path: Path) -> dict:
    priv, pub = new_keypair(tmp_path / "keys", "central")
    conf = tmp_path / "gate.toml"
    conf.write_text(
        f'[gate]\nid = "east"\n[store]\npath = "{tmp_path / "gate.db"}"\n'
        f'[keys]\ntrusted = ["{pub}"]\nsigning = "{priv}"\n'
        '[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\n',
        encoding="utf-8",
    )
    names = ["王芳", "李雷", "韩梅梅", "欧阳娜娜", "张伟", "刘洋", "陈静", "杨磊", "赵敏", "黄丽", "周杰", "吴秀英"]
    cats = ["resident", "renter", "returnee", "visitor", "staff", "resident"]
    rows = [
        {"id": f"3-2-{501 + i}-{n}", "holder": n, "unit": f"3-2-{501 + i}", "category": cats[i % len(cats)],
         "valid_until": UNTIL if i % 3 else None,
         "valid_from": datetime(2026, 11, 1, tzinfo=SHANGHAI) if i % 4 == 1 else None,
         "observation_until": datetime(2026, 12, 5, 23, 59, 59, tzinfo=SHANGHAI) if cats[i % len(cats)] == "returnee" else None}
        for i, n in enumerate(names)
    ]
    rows += [
        {"id": "3-20-101-不打印", "holder": "不打印", "unit": "3-20-101", "category": "resident"},  # another building
        {"id": "3-2-901-注销", "holder": "注销", "unit": "3-2-901", "category": "resident", "revoked": True},
        {"id": "3-2-902-过期", "holder": "过期", "unit": "3-2-902", "category": "resident",
         "valid_until": datetime.now(timezone.utc) - timedelta(days=1)},
    ]
    s = Store(tmp_path / "gate.db", gate_id="east", tz=SHANGHAI)
    try:
        s.upsert_passes(rows)
    finally:
        s.close()
    printed = {r["id"]: r for r in rows[: len(names)]}
    return {"conf": conf, "pub": pub, "priv": priv, "printed": printed, "tmp": tmp_path}


def pages_png(pdf: Path, out_dir: Path, dpi: int = DPI) -> list[Path]:
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", str(pdf), str(out_dir / "page")], check=True, timeout=120)
    return sorted(out_dir.glob("page-*.png"))


def test_a_printed_page_decodes_back_to_every_pass_on_it(desk):
    out = desk["tmp"] / "passes.pdf"
    done = gate("passes", "print", "--unit", "3-2", "--out", str(out), "-c", str(desk["conf"]))
    assert done.returncode == 0, done.stderr
    assert "12 passes on 2 A4 page(s)" in done.stdout
    assert "skipped 3-2-901-注销: revoked" in done.stderr and "skipped 3-2-902-过期: expired" in done.stderr
    assert "warning" not in done.stderr  # the key is trusted by this gate
    pages = pages_png(out, desk["tmp"])
    assert len(pages) == 2
    keyring = KeyRing([load_public(desk["pub"])])
    decoder = make_decoder("thorough")  # what `gate scan` uses for still images
    seen: dict[str, object] = {}
    for page, expected in zip(pages, (10, 2)):
        texts = decoder.decode(cv2.imread(str(page), cv2.IMREAD_GRAYSCALE))
        assert len(texts) == expected == len(set(texts)), page.name
        for text in texts:
            token = keyring.verify(text)  # signed by the gate's key, intact
            assert token.pass_id not in seen
            seen[token.pass_id] = token
    assert set(seen) == set(desk["printed"])  # every pass of 3-2, and nothing else
    for pid, token in seen.items():
        row = desk["printed"][pid]
        assert (token.category, token.holder_ref) == (row["category"], row["unit"])
        if row["valid_until"]:
            assert token.valid_until == row["valid_until"].astimezone(timezone.utc)
        else:  # no end in the table: the printed pass ends keys.pass_valid_days (365) from now
            left = token.valid_until - datetime.now(timezone.utc)
            assert timedelta(days=364) < left <= timedelta(days=365)
        assert token.valid_from == (row["valid_from"] and row["valid_from"].astimezone(timezone.utc))


def test_the_cards_carry_their_text_in_an_embedded_chinese_font(desk):
    out = desk["tmp"] / "passes.pdf"
    assert gate("passes", "print", "--id", "3-2-501-王芳", "--id", "3-2-503-韩梅梅", "--out", str(out),
                "-c", str(desk["conf"])).returncode == 0
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
    for word in ("王芳", "3-2-501", "常住", "RESIDENT", "韩梅梅", "返京", "居家观察至 2026-12-05", "一人一证",
                 "有效期至 2026-12-31"):
        assert word in text, word
    # the row without an end date is printed with one (keys.pass_valid_days from today)
    ends = datetime.now(timezone.utc) + timedelta(days=365)
    assert any(f"有效期至 {d:%Y-%m-%d}" in text for d in (ends - timedelta(days=1), ends, ends + timedelta(days=1)))
    assert "长期有效" not in text
    fonts = subprocess.run(["pdffonts", str(out)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    assert fonts and all(re.search(r"\byes\s+yes\s+yes\b", line) for line in fonts), fonts  # embedded, subset, unicode map


def test_cut_marks_fall_on_the_card_grid(desk):
    out = desk["tmp"] / "passes.pdf"
    assert gate("passes", "print", "--unit", "3-2", "--out", str(out), "-c", str(desk["conf"])).returncode == 0
    page = cv2.imread(str(pages_png(out, desk["tmp"])[0]), cv2.IMREAD_GRAYSCALE)
    px = DPI / 25.4
    h, w = page.shape
    assert abs(w - 210 * px) < 2 and abs(h - 297 * px) < 2  # A4
    x0, y0 = (210 - 2 * CARD_W_MM) / 2, (297 - 5 * CARD_H_MM) / 2

    def clusters(profile: np.ndarray) -> list[float]:
        idx = np.flatnonzero(profile)
        groups = np.split(idx, np.flatnonzero(np.diff(idx) > 3) + 1) if idx.size else []
        return [float(g.mean()) / px for g in groups]

    # Vertical marks in the top margin (5 mm from the edge to 2 mm above the cards): one per cut line.
    top = page[round(6 * px): round((y0 - 3) * px), :] < 128
    xs = clusters(top.any(axis=0))
    assert len(xs) == 3
    for got, want in zip(xs, [x0, x0 + CARD_W_MM, x0 + 2 * CARD_W_MM]):
        assert abs(got - want) < 0.3, (xs, want)
    # Horizontal marks in the left margin.
    left = page[:, round(6 * px): round((x0 - 3) * px)] < 128
    ys = clusters(left.any(axis=1))
    assert len(ys) == 6
    for got, want in zip(ys, [y0 + k * CARD_H_MM for k in range(6)]):
        assert abs(got - want) < 0.3, (ys, want)


def test_a_poor_copy_of_the_page_still_scans(desk):
    """150 dpi, blurred, saved as a rough JPEG: a phone photo or a photocopy of the sheet."""
    out = desk["tmp"] / "passes.pdf"
    assert gate("passes", "print", "--unit", "3-2", "--out", str(out), "-c", str(desk["conf"])).returncode == 0
    page = cv2.imread(str(pages_png(out, desk["tmp"], dpi=150)[0]), cv2.IMREAD_GRAYSCALE)
    page = cv2.GaussianBlur(page, (3, 3), 0.9)
    ok, jpeg = cv2.imencode(".jpg", page, [cv2.IMWRITE_JPEG_QUALITY, 35])
    assert ok
    rough = cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)
    texts = make_decoder("thorough").decode(rough)
    keyring = KeyRing([load_public(desk["pub"])])
    assert len({keyring.verify(t).pass_id for t in texts}) == 10


def test_gate_scan_reads_a_printed_page(desk):
    out = desk["tmp"] / "passes.pdf"
    assert gate("passes", "print", "--unit", "3-2", "--out", str(out), "-c", str(desk["conf"])).returncode == 0
    page = pages_png(out, desk["tmp"])[1]
    done = gate("scan", str(page))
    assert done.returncode == 0, done.stderr
    keyring = KeyRing([load_public(desk["pub"])])
    ids = {keyring.verify(line.split("\t")[1]).pass_id for line in done.stdout.splitlines()}
    assert len(ids) == 2 and ids <= set(desk["printed"])


def test_refusals_are_plain_messages(desk):
    conf, tmp = str(desk["conf"]), desk["tmp"]
    nothing = gate("passes", "print", "--out", str(tmp / "x.pdf"), "-c", conf)
    assert nothing.returncode == 2 and "--unit" in nothing.stderr
    none = gate("passes", "print", "--unit", "9-9", "--out", str(tmp / "x.pdf"), "-c", conf)
    assert none.returncode == 1 and "none match" in none.stderr and not (tmp / "x.pdf").exists()
    other_priv, _ = new_keypair(tmp / "other", "stranger")
    stranger = gate("passes", "print", "--id", "3-2-501-王芳", "--key", str(other_priv), "--out", str(tmp / "s.pdf"), "-c", conf)
    assert stranger.returncode == 0 and "does not trust key" in stranger.stderr
    nofont = gate("passes", "print", "--id", "3-2-501-王芳", "--out", str(tmp / "f.pdf"), "-c", conf,
                  env={"GATE_CJK_FONT": str(tmp / "missing.ttc")})
    assert nofont.returncode == 2 and "GATE_CJK_FONT" in nofont.stderr and "Traceback" not in nofont.stderr
    # A key central has withdrawn (the gate's store holds the list): no cards that every gate refuses.
    from gate.store import withdrawn
    from gate.core.tokens import key_id, load_public

    kid = key_id(load_public(desk["pub"]))
    s = Store(tmp / "gate.db", gate_id="east", tz=SHANGHAI)
    try:
        withdrawn.save(s, 4, frozenset({kid}), "{}")
    finally:
        s.close()
    gone = gate("passes", "print", "--id", "3-2-501-王芳", "--out", str(tmp / "w.pdf"), "-c", conf)
    assert gone.returncode == 2 and f"key {kid}" in gone.stderr and "withdrawn by central (key list version 4)" in gone.stderr
    assert not (tmp / "w.pdf").exists()


@pytest.mark.parametrize("unit, prefixes, selected", [
    ("3-2-501", ("3-2",), True),
    ("3-2", ("3-2",), True),
    ("3-20-101", ("3-2",), False),
    ("3-2-501", ("3-2-",), True),
    ("13-2-501", ("3-2",), False),
    ("3-2-501", ("3-2-501",), True),
    ("3-2-5011", ("3-2-501",), False),
    ("5-1-302", ("3-2", "5-1"), True),
])
def test_unit_prefixes_follow_building_entrance_room(unit, prefixes, selected):
    assert unit_matches(unit, prefixes) is selected
