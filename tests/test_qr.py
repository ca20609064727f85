"""QR decoders and the scanner thread, against rendered frames and real photos."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from drivers.camera import SimCamera, render, render_empty, render_scene
from drivers.qr import (Decoder, FastScanDecoder, Found, PyzbarDecoder, QrScanner,
                        ThoroughDecoder, ZxingDecoder, make_decoder, reading_order, to_grey)
from tests.conftest import SHARED

# The shared folder the drills come from (conftest: $GATE_SHARED or ../shared). Its
# absence fails these tests, as it fails the drills: a skipped test would pass for one.
PHOTOS = Path(os.environ.get("GATE_QR_PHOTOS", SHARED / "datasets" / "qr-photos"))

# What a resident's pass looks like: a prefix and 130 base64url characters.
TOKEN = "GP1." + ("Qm9va2luZy0xMjM0NTY3ODkw_-aZ" * 5)[:130]
TEXTS = ["hello gate", TOKEN, "访客通行证：张伟，3栋1202室"]


@pytest.fixture(params=["fast", "zxing", "pyzbar", "thorough"])
def decoder(request: pytest.FixtureRequest) -> Decoder:
    return make_decoder(request.param)


class FakeClock:
    """The drill's simulated clock: moves only when told to."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


class Recorder:
    def __init__(self) -> None:
        self.codes: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self._lock:
            self.codes.append(text)


# --- decoders -----------------------------------------------------------------

def test_token_is_the_length_of_a_real_pass() -> None:
    assert len(TOKEN) == 134


@pytest.mark.parametrize("text", TEXTS, ids=["short", "token", "chinese"])
def test_decoders_read_rendered_code_exactly(decoder: Decoder, text: str) -> None:
    assert decoder.decode(render(text)) == [text]


@pytest.mark.parametrize("size", [(320, 240), (1280, 720)])
def test_decoders_read_token_at_other_camera_sizes(decoder: Decoder,
                                                   size: tuple[int, int]) -> None:
    assert decoder.decode(render(TOKEN, *size)) == [TOKEN]


def test_decoders_find_every_code_in_a_frame(decoder: Decoder) -> None:
    frame = np.hstack([render("left pass", 320, 480), render("right pass", 320, 480)])
    assert sorted(decoder.decode(frame)) == ["left pass", "right pass"]


def test_no_codes_in_frames_without_one(decoder: Decoder) -> None:
    rng = np.random.default_rng(7)
    frames = [
        render_empty(),
        render_empty(1280, 720, seed=3),
        np.zeros((480, 640), np.uint8),
        np.full((480, 640), 255, np.uint8),
        rng.integers(0, 256, (480, 640), dtype=np.uint8),
        (rng.random((480, 640)) > 0.5).astype(np.uint8) * 255,  # salt and pepper
        render_scene(640, 480, seed=1),  # signs, railings, stripes: edges everywhere
        render_scene(1280, 720, seed=2),
    ]
    assert [decoder.decode(f) for f in frames] == [[]] * len(frames)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(img=arrays(np.uint8, st.tuples(st.integers(1, 97), st.integers(1, 97))))
def test_decoders_never_raise_on_random_images(decoder: Decoder, img: np.ndarray) -> None:
    out = decoder.decode(img)
    assert isinstance(out, list) and all(isinstance(t, str) for t in out)


@pytest.mark.parametrize(("bad", "is_error"), [
    (np.zeros((0, 5), np.uint8), False),  # an empty image just has no codes
    (np.zeros((5, 0), np.uint8), False),
    (np.zeros((4, 4, 2), np.uint8), True),
    (np.zeros((10, 10), np.float32), True),
    (np.zeros(10, np.uint8), True),
], ids=["no-rows", "no-cols", "two-channels", "float", "1-d"])
def test_decoders_return_nothing_for_non_images(decoder: Decoder, bad: np.ndarray,
                                                is_error: bool) -> None:
    assert decoder.decode(bad) == []
    assert decoder.errors == int(is_error)  # type: ignore[attr-defined]


def test_decoders_accept_strided_views(decoder: Decoder) -> None:
    # A crop of a bigger frame is not contiguous; decoders must not trip over it.
    big = render("cropped", 1280, 720)
    crop = big[:, 200:1080]
    assert not crop.flags["C_CONTIGUOUS"]
    assert decoder.decode(crop) == ["cropped"]


def test_control_characters_survive_exactly(decoder: Decoder) -> None:
    # A token compares byte for byte: no "<GS>" escapes, no newline rewriting.
    text = "GP1.\x1dgroup\r\nline\x01"
    assert decoder.decode(render(text)) == [text]


def test_binary_payload_comes_back_as_text(decoder: Decoder) -> None:
    out = decoder.decode(render(b"\xff\xfe\x80\x00abc"))  # not UTF-8
    assert len(out) == 1 and isinstance(out[0], str) and out[0].endswith("abc")


def test_shift_jis_payload_is_transcoded(decoder: Decoder) -> None:
    assert decoder.decode(render("テスト".encode("shift_jis"))) == ["テスト"]


def test_shift_jis_photos_do_not_raise(decoder: Decoder) -> None:
    photos = [PHOTOS / "qrcode-2" / f"{n}.png" for n in (17, 18, 24, 26, 33)]
    if not all(p.exists() for p in photos):
        pytest.fail(f"photo dataset not at {PHOTOS}; set GATE_SHARED or GATE_QR_PHOTOS")
    outs = [decoder.decode(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) for p in photos]
    assert all(isinstance(t, str) for out in outs for t in out)
    assert sum(1 for out in outs if out) >= 4  # they are decodable, not just survivable
    if decoder.name != "pyzbar":  # zxing-cpp gets Shift-JIS right character for character
        assert outs[0] == [_read_exact(photos[0].with_suffix(".txt"))]


def _read_exact(path: Path) -> str:
    # newline="" keeps the \r\n the codes really contain; text mode would turn
    # them into \n and make correct decodes look wrong.
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def test_zxing_decodes_real_photo_dataset(record_property) -> None:  # type: ignore[no-untyped-def]
    pairs = sorted((p, p.with_suffix(".txt")) for p in PHOTOS.glob("qrcode-*/*.png"))
    pairs = [(img, txt) for img, txt in pairs if txt.exists()]
    if not pairs:
        pytest.fail(f"photo dataset not at {PHOTOS}; set GATE_SHARED or GATE_QR_PHOTOS")
    assert len(pairs) == 179
    dec = ZxingDecoder(try_rotate=True, try_invert=True)
    ok = [img for img, txt in pairs
          if _read_exact(txt) in dec.decode(cv2.imread(str(img), cv2.IMREAD_GRAYSCALE))]
    record_property("zxing_decoded", len(ok))
    print(f"\nzxing-cpp decoded {len(ok)}/{len(pairs)} real photos exactly")
    assert len(ok) >= 150, f"only {len(ok)}/{len(pairs)} photos decoded (165 measured)"


def _photo_pairs() -> list[tuple[Path, Path]]:
    pairs = sorted((p, p.with_suffix(".txt")) for p in PHOTOS.glob("qrcode-*/*.png"))
    return [(img, txt) for img, txt in pairs if txt.exists()]


def test_thorough_decoder_reads_over_95_percent_of_real_photos(record_property) -> None:  # type: ignore[no-untyped-def]
    pairs = _photo_pairs()
    if not pairs:
        pytest.fail(f"photo dataset not at {PHOTOS}; set GATE_SHARED or GATE_QR_PHOTOS")
    dec = ThoroughDecoder()
    ok, other = [], {}
    for img, txt in pairs:
        truth = _read_exact(txt)
        out = dec.decode(cv2.imread(str(img), cv2.IMREAD_GRAYSCALE))
        if truth in out:
            ok.append(img)
        wrong = [t for t in out if t != truth]
        if wrong:
            other[f"{img.parent.name}/{img.stem}"] = wrong
    record_property("thorough_decoded", len(ok))
    print(f"\nthorough decoder: {len(ok)}/{len(pairs)} real photos exactly")
    # The target is 95% (171/179); 174 measured, 170 before flattening.
    assert len(ok) >= 171, f"only {len(ok)}/{len(pairs)} photos decoded (174 measured)"
    # The flattening pass is what reads these four T-shirt prints.
    tshirts = {PHOTOS / "qrcode-4" / f"{n}.png" for n in ("05", "06", "08", "13")}
    assert tshirts <= set(ok)
    # No false positives. The one text that differs from its truth file is
    # qrcode-2/13, an image with the same module pattern as qrcode-2/12: it reads as
    # 12's text, which its truth file has without the 'y' of "photography".
    assert other == {"qrcode-2/13": [_read_exact(PHOTOS / "qrcode-2" / "12.txt")]}



def _printed_on_a_shirt(text: str, angle: float) -> np.ndarray:
    """A code on a light patch of dark cloth that ripples (3 px, 2.5 waves across),
    turned by ``angle`` degrees: like qrcode-4's T-shirt photos."""
    size, side = 640, 300
    img = np.full((size, size), 30, np.uint8)
    o = (size - side) // 2
    img[o:o + side, o:o + side] = render(text, side, side, noise_sigma=0, blur_sigma=0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    wave = lambda t: 3.0 * np.sin(2 * np.pi * 2.5 * (t - o) / side)  # noqa: E731
    rippled = cv2.remap(img, xx + wave(yy), yy + wave(xx), cv2.INTER_LINEAR, borderValue=30)
    turn = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    return cv2.warpAffine(rippled, turn, (size, size), borderValue=30)


@pytest.mark.parametrize("angle", [*range(0, 180, 15), 20])
def test_thorough_decoder_flattens_a_rippled_print(angle: float) -> None:
    shirt = _printed_on_a_shirt(TOKEN, angle)
    # Neither library reads it as it is, however hard it tries.
    assert ZxingDecoder(try_rotate=True, try_invert=True).decode(shirt) == []
    assert PyzbarDecoder().decode(shirt) == []
    found = ThoroughDecoder().find(shirt)
    assert [f.text for f in found] == [TOKEN]
    # Its corners are placed back in the photo: the code sits in the middle, as
    # large as the same code printed flat.
    flat = ThoroughDecoder().find(render(TOKEN, 300, 300, noise_sigma=0, blur_sigma=0))
    cx, cy = found[0].center
    assert abs(cx - 320) < 15 and abs(cy - 320) < 15
    assert abs(found[0].size / flat[0].size - 1) < 0.25 * (1 + abs(np.sin(np.radians(2 * angle))))


def test_flattening_finds_nothing_where_there_is_no_patch() -> None:
    from drivers.qr.flatten import light_patches

    assert light_patches(np.zeros((480, 640), np.uint8)) == []
    assert light_patches(np.full((20, 20), 255, np.uint8)) == []
    assert ThoroughDecoder().decode(render_scene(640, 480)) == []

# --- the live decoder ---------------------------------------------------------------

@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (1920, 1080)],
                         ids=["480p", "720p", "1080p"])
def test_fast_decoder_loses_no_code(size: tuple[int, int]) -> None:
    # Near codes read in every frame; far ones (2 px/module, too small for the
    # shrunk copy) within one full-resolution cycle, whatever frame they appear on.
    w, h = size
    blank = render_empty(w, h)
    for module_px in (2, 3, 4, 6, 10):
        for center in ((0.25, 0.3), (0.7, 0.6)):
            try:
                frame = render(TOKEN, w, h, module_px=module_px, center=center)
            except ValueError:
                continue  # too big for this frame
            for phase in range(4):
                dec = FastScanDecoder()
                for _ in range(phase):
                    assert dec.decode(blank) == []
                reads = [dec.decode(frame) == [TOKEN] for _ in range(dec.full_every)]
                assert any(reads), (size, module_px, center, phase)
                if module_px >= 3:
                    assert all(reads), (size, module_px, center, phase)


def test_fast_decoder_does_full_resolution_work_only_every_few_frames() -> None:
    dec = FastScanDecoder(full_every=4)
    for _ in range(12):
        assert dec.decode(render_empty(1280, 720)) == []
    assert dec.counters.get("frames") == 12
    assert dec.counters.get("full_passes") == 3  # frames 0, 4 and 8
    assert dec.counters.get("crops") == 0  # nothing seen: nothing looked at closer


def test_fast_decoder_reads_a_borderline_code_in_a_crop() -> None:
    # 2.5 px per module: zxing-cpp locates the symbol in the half-size copy but
    # cannot sample it there; the full-resolution crop around it reads it on
    # every frame instead of every fourth.
    big = render(TOKEN, 2560, 1440, module_px=5, center=(0.4, 0.5), blur_sigma=1.0)
    frame = cv2.resize(big, (1280, 720), interpolation=cv2.INTER_AREA)
    dec = FastScanDecoder()
    assert dec.decode(frame) == [TOKEN]  # frame 0: the full pass
    for _ in range(3):
        assert dec.decode(frame) == [TOKEN]
    assert dec.counters.get("full_passes") == 1 and dec.counters.get("crops") == 3


def test_fast_decoder_reports_positions_in_frame_pixels() -> None:
    frame = render("where am I", 1280, 720, module_px=8, center=(0.25, 0.5))
    dec = FastScanDecoder()
    dec.decode(render_empty(1280, 720))  # past the full pass: found in the half-size copy
    (found,) = dec.find(frame)
    assert found.text == "where am I"
    cx, cy = found.center
    assert abs(cx - 320) < 12 and abs(cy - 360) < 12
    assert found.contains((320, 360)) and not found.contains((900, 360))


def test_fast_decoder_reads_bgr_frames_like_grey_ones() -> None:
    grey = render(TOKEN, 1280, 720)
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    dec = FastScanDecoder()
    assert [dec.decode(f) for f in (bgr, bgr, grey, bgr)] == [[TOKEN]] * 4


def test_fast_decoder_settings() -> None:
    with pytest.raises(ValueError):
        FastScanDecoder(full_every=0)
    with pytest.raises(ValueError):
        FastScanDecoder(scale=0)
    tiny = render("tiny frame", 200, 150, module_px=2)  # too small to shrink: full pass
    dec = FastScanDecoder()
    assert [dec.decode(tiny) for _ in range(3)] == [["tiny frame"]] * 3


def test_scanner_with_the_live_decoder_reports_a_held_code_once() -> None:
    cam = SimCamera(1280, 720)
    rec = Recorder()
    scanner = QrScanner(cam, make_decoder("auto"), rec).start()
    try:
        cam.show(TOKEN, frames=30)  # a second of a pass held up
        cam.show("visitor-7", frames=3)
        assert cam.settle(scanner)
    finally:
        scanner.close()
        cam.close()
    assert rec.codes == [TOKEN, "visitor-7"]


# --- still images: a sheet of printed passes ---------------------------------------------

def render_sheet(texts: list[str], width: int = 2480, height: int = 3508,
                 cols: int = 2) -> np.ndarray:
    """An A4 page at 300 dpi with a grid of pass QR codes, each with a caption
    and a cut line, as `gate passes issue` output would be printed."""
    import segno

    page = np.full((height, width), 250, np.uint8)
    rows = -(-len(texts) // cols)
    cw, ch = width // cols, (height - 300) // rows
    for i, text in enumerate(texts):
        matrix = np.asarray(segno.make(text, error="m", micro=False).matrix, dtype=bool)
        px = int(min(cw, ch) * 0.55) // (matrix.shape[0] + 8)
        code = np.pad(np.where(matrix, 20, 250).astype(np.uint8), 4, constant_values=250)
        code = np.repeat(np.repeat(code, px, 0), px, 1)
        r, c = divmod(i, cols)
        y = 150 + r * ch + (ch - code.shape[0]) // 2
        x = c * cw + (cw - code.shape[1]) // 2
        page[y:y + code.shape[0], x:x + code.shape[1]] = code
        cv2.putText(page, f"pass {i + 1}  3-2-50{i}", (x, y + code.shape[0] + 50),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 3)
        cv2.rectangle(page, (c * cw + 20, 150 + r * ch + 10),
                      ((c + 1) * cw - 20, 150 + (r + 1) * ch - 10), 120, 2)
    return page


def photograph(page: np.ndarray, width: int = 1200) -> np.ndarray:
    """The page as a phone photographs it: at an angle, smaller, blurred, noisy."""
    h, w = page.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[80, 40], [w - 200, 120], [w - 60, h - 30], [30, h - 150]])
    shot = cv2.warpPerspective(page, cv2.getPerspectiveTransform(src, dst), (w, h),
                               borderValue=90)
    shot = cv2.resize(shot, (width, round(width * h / w)), interpolation=cv2.INTER_AREA)
    shot = cv2.GaussianBlur(shot.astype(np.float32), (0, 0), 0.8)
    shot += np.random.default_rng(0).normal(0, 4, shot.shape).astype(np.float32)
    return np.clip(shot, 0, 255).astype(np.uint8)


SHEET = [f"GP1.{i:02d}" + TOKEN[6:] for i in range(10)]


def test_thorough_decoder_finds_every_pass_on_a_sheet_in_reading_order() -> None:
    page = render_sheet(SHEET)
    dec = ThoroughDecoder()
    assert dec.decode(page) == SHEET
    assert dec.decode(photograph(page)) == SHEET


def test_gate_scan_prints_every_pass_on_a_sheet(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gate.cli.main import main

    page = render_sheet(SHEET[:8], cols=2)
    scanned = tmp_path / "sheet.png"
    shot = tmp_path / "sheet-photo.jpg"
    cv2.imwrite(str(scanned), page)
    cv2.imwrite(str(shot), photograph(page), [cv2.IMWRITE_JPEG_QUALITY, 85])
    res = CliRunner().invoke(main, ["scan", str(scanned), str(shot)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines == [f"{scanned}\t{t}" for t in SHEET[:8]] + [f"{shot}\t{t}" for t in SHEET[:8]]


def test_gate_scan_reads_a_photo_only_the_thorough_search_reads() -> None:
    from click.testing import CliRunner

    from gate.cli.main import main

    photo = PHOTOS / "qrcode-2" / "28.png"  # zxing-cpp reads it only shrunk or enlarged
    if not photo.exists():
        pytest.fail(f"photo dataset not at {PHOTOS}; set GATE_SHARED or GATE_QR_PHOTOS")
    assert ZxingDecoder(try_rotate=True, try_invert=True).decode(
        cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)) == []
    res = CliRunner().invoke(main, ["scan", str(photo)])
    assert res.exit_code == 0, res.output
    assert res.output == f"{photo}\t{_read_exact(photo.with_suffix('.txt'))}\n"


def test_thorough_decoder_keeps_two_copies_of_one_pass() -> None:
    # Two prints of the same pass on one sheet are two codes; one code read by
    # several passes of the decoder is one.
    frame = np.hstack([render("same pass", 400, 400), render("same pass", 400, 400)])
    assert ThoroughDecoder().decode(frame) == ["same pass", "same pass"]


def test_reading_order() -> None:
    def at(text: str, x: float, y: float, size: float = 100) -> Found:
        s = size / 2
        return Found(text, ((x - s, y - s), (x + s, y - s), (x + s, y + s), (x - s, y + s)))

    grid = [at("a", 100, 100), at("b", 400, 110), at("c", 700, 95),
            at("d", 110, 400), at("e", 395, 390), at("f", 690, 410)]
    shuffled = [grid[i] for i in (4, 2, 0, 5, 3, 1)]
    assert [f.text for f in reading_order(shuffled)] == list("abcdef")


def test_pyzbar_needs_grey_and_gets_it() -> None:
    # A code whose contrast is only in green and red: raw pyzbar on the BGR array
    # reads the flat blue channel and finds nothing; the decoder converts first.
    grey = render("colour pass")
    bgr = np.dstack([np.full_like(grey, 200), grey, grey])
    from pyzbar import pyzbar
    assert pyzbar.decode(bgr) == []
    assert PyzbarDecoder().decode(bgr) == ["colour pass"]


def test_to_grey() -> None:
    grey = render("x", 64 * 4, 64 * 3, module_px=2)
    assert to_grey(grey) is grey  # grey frames cost nothing
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    assert np.array_equal(to_grey(bgr), grey)
    assert np.array_equal(to_grey(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)), grey)
    assert np.array_equal(to_grey(grey[:, :, None]), grey)
    with pytest.raises(ValueError):
        to_grey(np.zeros((4, 4), np.float64))
    with pytest.raises(ValueError):
        to_grey(np.zeros((4, 4, 2), np.uint8))


def test_make_decoder() -> None:
    assert make_decoder("auto").name == "fast"  # the live path when zxing-cpp is installed
    assert isinstance(make_decoder("fast"), FastScanDecoder)
    assert isinstance(make_decoder("zxing"), ZxingDecoder)
    assert isinstance(make_decoder("pyzbar"), PyzbarDecoder)
    assert isinstance(make_decoder("thorough"), ThoroughDecoder)
    with pytest.raises(ValueError, match="quirc"):
        make_decoder("quirc")  # type: ignore[arg-type]


def test_zxing_live_settings_are_configurable() -> None:
    # The live path skips inverted codes for speed; a slow path can turn it on.
    inverted = 255 - render("inverted pass")
    assert ZxingDecoder().decode(inverted) == []
    assert ZxingDecoder(try_invert=True).decode(inverted) == ["inverted pass"]


# --- scanner ------------------------------------------------------------------

@pytest.fixture
def rig():
    cam = SimCamera()
    clock = FakeClock()
    rec = Recorder()
    faults: list[tuple[str, bool, str]] = []
    scanner = QrScanner(cam, ZxingDecoder(), rec, hold_s=1.5, now=clock,
                        name="lane1-cam", on_fault=lambda *a: faults.append(a))
    scanner.start()
    yield cam, clock, rec, scanner, faults
    scanner.close()
    cam.close()


def test_code_held_in_front_of_camera_is_reported_once(rig) -> None:
    cam, clock, rec, scanner, _ = rig
    cam.show(TOKEN, frames=5)
    assert cam.settle(scanner)
    assert rec.codes == [TOKEN]
    assert scanner.counters.get("frames") == 6  # 5 with the code + 1 empty
    assert scanner.counters.get("codes") == 1
    assert scanner.counters.get("repeats") == 4


def test_same_code_again_after_hold_is_reported_again(rig) -> None:
    cam, clock, rec, scanner, _ = rig
    cam.show("pass-1")
    assert cam.settle(scanner)
    clock.advance(1.0)  # still within hold of the last sighting
    cam.show("pass-1")
    assert cam.settle(scanner)
    assert rec.codes == ["pass-1"]
    clock.advance(1.6)  # gone longer than hold_s: a new presentation
    cam.show("pass-1")
    assert cam.settle(scanner)
    assert rec.codes == ["pass-1", "pass-1"]


def test_every_sighting_extends_the_hold(rig) -> None:
    # Waved for 4 s in total with gaps under hold_s: one person, one report.
    cam, clock, rec, scanner, _ = rig
    for _ in range(5):
        cam.show("pass-1", frames=1)
        assert cam.settle(scanner)
        clock.advance(1.0)
    assert rec.codes == ["pass-1"]


def test_two_different_codes_both_reported(rig) -> None:
    cam, clock, rec, scanner, _ = rig
    cam.show("pass-A")
    cam.show("pass-B")
    assert cam.settle(scanner)
    assert rec.codes == ["pass-A", "pass-B"]


def test_settle_waits_for_every_frame_shown(rig) -> None:
    cam, clock, rec, scanner, _ = rig
    for i in range(20):
        cam.show(f"visitor-{i}", frames=2)
    assert cam.settle(scanner)
    assert scanner.progress.value == cam.frames_shown == 60
    assert rec.codes == [f"visitor-{i}" for i in range(20)]


def test_settle_reports_a_scanner_that_is_not_reading() -> None:
    cam = SimCamera()
    scanner = QrScanner(cam, ZxingDecoder(), Recorder())  # never started
    cam.show("pass-1")
    assert cam.settle(scanner, timeout=0.2) is False


def test_failing_callback_does_not_stop_scanning(rig) -> None:
    cam, clock, rec, scanner, _ = rig
    calls: list[str] = []

    def explode(text: str) -> None:
        calls.append(text)
        raise RuntimeError("lane queue full")

    scanner.on_code = explode
    cam.show("pass-A")
    cam.show("pass-B")
    assert cam.settle(scanner)
    assert calls == ["pass-A", "pass-B"]
    assert scanner.counters.get("callback_errors") == 2


class BrokenDecoder:
    name = "broken"

    def decode(self, grey: np.ndarray) -> list[str]:
        raise RuntimeError("segfault-adjacent")


def test_decoder_that_raises_is_counted_not_fatal() -> None:
    cam = SimCamera()
    rec = Recorder()
    scanner = QrScanner(cam, BrokenDecoder(), rec).start()
    try:
        cam.show("pass-A", frames=3)
        assert cam.settle(scanner)
        assert scanner.counters.get("decode_errors") == 4
        assert scanner.counters.get("frames") == 4
        assert rec.codes == []
    finally:
        scanner.close()


class FlakySource:
    """Fails its first reads like a camera that was unplugged, then delivers."""

    def __init__(self, frames: list[np.ndarray], failures: int) -> None:
        self.frames = frames
        self.failures = failures

    def read(self, timeout: float) -> np.ndarray | None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("No such device")
        if self.frames:
            return self.frames.pop(0)
        threading.Event().wait(timeout)
        return None

    def close(self) -> None:
        pass


def test_read_errors_are_reported_as_faults_and_recovered() -> None:
    faults: list[tuple[str, bool, str]] = []
    rec = Recorder()
    src = FlakySource([render("pass-A")], failures=1)
    scanner = QrScanner(src, ZxingDecoder(), rec, name="gate-cam",
                        on_fault=lambda *a: faults.append(a)).start()
    try:
        assert scanner.progress.wait_for(1, timeout=5.0)
    finally:
        scanner.close()
    assert rec.codes == ["pass-A"]
    assert scanner.counters.get("read_errors") == 1
    assert [(d, ok) for d, ok, _ in faults] == [("gate-cam", False), ("gate-cam", True)]
    assert "No such device" in faults[0][2]


def test_frame_timing_figures(rig) -> None:
    cam, clock, rec, scanner, _ = rig
    assert scanner.last_frame_at is None and scanner.fps == 0.0
    cam.show_empty(3)
    assert cam.settle(scanner)
    first = scanner.last_frame_at
    assert first is not None
    cam.show_empty(1)
    assert cam.settle(scanner)
    assert scanner.last_frame_at is not None and scanner.last_frame_at >= first
    assert scanner.fps >= 0.0


def test_close_stops_the_thread(rig) -> None:
    cam, clock, rec, scanner, _ = rig
    scanner.close()
    assert scanner._thread is not None and not scanner._thread.is_alive()
    cam.show("after close")
    assert not cam.settle(scanner, timeout=0.2)
    assert rec.codes == []
