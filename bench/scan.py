"""Scan path: what a frame costs the live decoder, against a naive pyzbar loop.

Baseline ("naive"): ``pyzbar.decode(frame, symbols=[QRCODE])`` on the full BGR frame,
what a home-made camera loop does (restricted to QR, which makes it faster, not
slower, than the default all-symbologies call). Ours: the live default
(``make_decoder("auto")``: ``FastScanDecoder``) given the same BGR frame, colour
conversion included; ``.yplane`` figures give it the grey frame a camera's Y plane
(picamera2 YUV420) hands over for free.

Timings are per frame, A B A B interleaved in the same run, ours over whole
cycles of its full-resolution pass (so the figure is its average frame). Frames:

* ``empty``: the simulated camera's empty frame (light gradient and sensor
  noise), the worst case for zxing-cpp's binariser;
* ``scene``: a cluttered scene without a code (signs, railings, stripes);
* ``near``: a pass held close (code about half the frame height);
* ``far``: a pass held far (2 px per module), which only the full-resolution pass reads.

Photos: the decode rate on ``datasets/qr-photos`` of the still-image decoder
(``gate scan``) and of the live one, against naive pyzbar on the BGR photo.

Phones, a code appearing, idle cost: ``bench/scan_phone.py``.
"""
from __future__ import annotations

import statistics
import time

import cv2
import numpy as np

from bench.core import PI4_FACTOR, Context, Figure, interleaved

TITLE = "scan path"

SIZES = ((640, 480), (1280, 720), (1920, 1080))
# What a resident's pass looks like: a prefix and 130 base64url characters (QR version 8-M).
TOKEN = "GP1." + ("Qm9va2luZy0xMjM0NTY3ODkw_-aZ" * 5)[:130]


def run(ctx: Context) -> list[Figure]:
    from pyzbar import pyzbar

    from drivers.camera import render, render_empty, render_scene
    from drivers.qr import FastScanDecoder, make_decoder

    probe = make_decoder("auto")
    if not isinstance(probe, FastScanDecoder):
        ctx.log("scan: zxing-cpp is not installed; the live path is plain pyzbar")
    cycle = getattr(probe, "full_every", 1) * 2  # frames per timed call of ours
    symbols = [pyzbar.ZBarSymbol.QRCODE]

    def naive(bgr: np.ndarray) -> list[str]:
        return [bytes(s.data).decode("utf-8", "replace") for s in pyzbar.decode(bgr, symbols=symbols)]

    figures: list[Figure] = []
    false_ours = false_naive = 0
    worst_frames = 0
    reps = ctx.reps(3, 15)
    for w, h in SIZES:
        size = f"{w}x{h}"
        frames = {
            "empty": render_empty(w, h, seed=1),
            "scene": render_scene(w, h, seed=1),
            "near": render(TOKEN, w, h, module_px=max(3, round(0.5 * h / 57)), center=(0.45, 0.5)),
            "far": render(TOKEN, w, h, module_px=2, center=(0.6, 0.4)),
        }
        for kind, grey in frames.items():
            bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
            ours = make_decoder("auto")
            seen: list[list[str]] = []

            def a(frame: np.ndarray = bgr, dec=ours) -> None:  # type: ignore[no-untyped-def]
                for _ in range(cycle):
                    seen.append(dec.decode(frame))

            naive_seen: list[list[str]] = []
            pair = interleaved(a, lambda frame=bgr: naive_seen.append(naive(frame)),
                               reps=reps, a_items=cycle)
            has_code = kind in ("near", "far")
            reads = ""
            if has_code:
                first = _frames_to_read(make_decoder("auto"), bgr, cycle)
                worst_frames = max(worst_frames, first)
                reads = (f"; ours reads it within {first} frame(s), naive "
                         f"{'reads it' if any(TOKEN in s for s in naive_seen) else 'does NOT read it'}")
            else:
                false_ours += sum(len(s) for s in seen)
                false_naive += sum(len(s) for s in naive_seen)
            what = {"empty": "empty frame (flat, noisy)", "scene": "cluttered scene, no code",
                    "near": "pass held near", "far": "pass held far (2 px/module)"}[kind]
            figures.append(Figure(f"scan.{kind}.{size}", pair.a_median * 1e3, "ms",
                                  pair.b_median * 1e3, pair.ratio,
                                  f"{what}, BGR in; per frame vs naive pyzbar{reads}", pi4=True))
            if kind == "empty" and size == "1280x720":
                ours_y = make_decoder("auto")
                py = interleaved(lambda dec=ours_y, g=grey: [dec.decode(g) for _ in range(cycle)],
                                 lambda frame=bgr: naive(frame), reps=reps, a_items=cycle)
                figures.append(Figure(f"scan.empty.{size}.yplane", py.a_median * 1e3, "ms",
                                      py.b_median * 1e3, py.ratio,
                                      "empty frame as a camera's Y plane (no colour conversion)",
                                      pi4=True))
        ctx.log(f"scan: {size} done")
    figures.append(Figure("scan.far.frames_to_read", worst_frames, "frames", 1.0,
                          worst_frames / 1.0,
                          "worst case over start phases and sizes before a far code is read"))
    figures.append(Figure("scan.false_positives", false_ours, "count", false_naive,
                          None, "codes reported on frames with no code (all timed runs)"))
    figures += _camera_formats(ctx)
    figures += _photos(ctx, naive)
    from bench.scan_phone import appear_figures, idle_figures, phone_figures

    figures += phone_figures(ctx) + appear_figures(ctx) + idle_figures(ctx)
    ctx.implications += _implications(figures)
    return figures


def _camera_formats(ctx: Context) -> list[Figure]:
    """A USB camera's 720p frame to the grey frame the decoder takes: ours
    (``V4L2Camera`` on raw buffers: MJPEG decoded straight to grey, YUYV's Y plane)
    against OpenCV's default (converted to BGR by the backend, then to grey)."""
    from drivers.camera import render_scene, v4l2_grey
    from drivers.qr import to_grey

    bgr = cv2.cvtColor(render_scene(1280, 720, seed=2), cv2.COLOR_GRAY2BGR)
    bgr[:, :, 2] = cv2.add(bgr[:, :, 2], 30)  # a colour cast, as cameras have
    jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].reshape(1, -1)
    yuyv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUY2)
    reps = ctx.reps(5, 30)
    mj = interleaved(lambda: v4l2_grey(jpeg, "MJPG", 1280, 720),
                     lambda: to_grey(cv2.imdecode(jpeg.reshape(-1), cv2.IMREAD_COLOR)), reps=reps)
    yu = interleaved(lambda: to_grey(v4l2_grey(yuyv, "YUYV", 1280, 720)),
                     lambda: to_grey(cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUY2)), reps=reps)
    return [
        Figure("scan.camera.mjpeg_to_grey.1280x720", mj.a_median * 1e3, "ms", mj.b_median * 1e3,
               mj.ratio, "USB camera MJPEG frame -> grey: decoded straight to grey vs "
               "OpenCV's BGR decode then grey", pi4=True),
        Figure("scan.camera.yuyv_to_grey.1280x720", yu.a_median * 1e3, "ms", yu.b_median * 1e3,
               yu.ratio, "USB camera YUYV frame -> grey: its Y plane vs OpenCV's BGR "
               "conversion then grey", pi4=True),
    ]


def _frames_to_read(dec, frame: np.ndarray, cycle: int) -> int:  # type: ignore[no-untyped-def]
    """Frames until the code in ``frame`` is read, worst case over the decoder's
    phase (how many frames it has seen before the code appears)."""
    from drivers.camera import render_empty

    h, w = frame.shape[:2]
    blank = render_empty(w, h)
    worst = 0
    for phase in range(cycle):
        d = type(dec)() if hasattr(dec, "full_every") else dec
        for _ in range(phase):
            d.decode(blank)
        for n in range(1, cycle + 1):
            if TOKEN in d.decode(frame):
                worst = max(worst, n)
                break
        else:
            return cycle + 1  # never read: worse than any real figure
    return worst


def _photos(ctx: Context, naive) -> list[Figure]:  # type: ignore[no-untyped-def]
    from drivers.qr import FastScanDecoder, ThoroughDecoder

    root = ctx.shared / "datasets" / "qr-photos"
    pairs = sorted((p, p.with_suffix(".txt")) for p in root.glob("qrcode-*/*.png"))
    pairs = [(img, txt) for img, txt in pairs if txt.exists()]
    if not pairs:
        ctx.log(f"scan: no photos at {root}; photo figures skipped")
        return []
    thorough = ThoroughDecoder()
    ok = {"thorough": 0, "live": 0, "naive": 0}
    wrong = {"thorough": 0, "naive": 0}
    t_thorough: list[float] = []
    t_naive: list[float] = []
    for img, txt in pairs:
        with open(txt, encoding="utf-8", newline="") as f:  # keep the \r\n codes contain
            truth = f.read()
        bgr = cv2.imread(str(img), cv2.IMREAD_COLOR)
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        t0 = time.perf_counter()
        found = thorough.decode(grey)
        t1 = time.perf_counter()
        base = naive(bgr)
        t2 = time.perf_counter()
        t_thorough.append(t1 - t0)
        t_naive.append(t2 - t1)
        # A fresh live decoder fed the photo for one cycle: a code held for ~0.13 s.
        live = FastScanDecoder()
        live_found = {t for _ in range(live.full_every) for t in live.decode(grey)}
        ok["thorough"] += truth in found
        ok["live"] += truth in live_found
        ok["naive"] += truth in base
        wrong["thorough"] += sum(1 for t in found if t != truth)
        wrong["naive"] += sum(1 for t in base if t != truth)
    n = len(pairs)
    rate = {k: v / n for k, v in ok.items()}
    tt, tn = statistics.median(t_thorough) * 1e3, statistics.median(t_naive) * 1e3
    return [
        Figure("scan.photos.decode_rate", rate["thorough"], "fraction", rate["naive"],
               rate["thorough"] / rate["naive"] if rate["naive"] else None,
               f"`gate scan` decoder: {ok['thorough']}/{n} photos exactly, naive pyzbar "
               f"on BGR {ok['naive']}/{n}"),
        Figure("scan.photos.decode_rate.live", rate["live"], "fraction", rate["naive"],
               rate["live"] / rate["naive"] if rate["naive"] else None,
               f"live decoder, photo held for one full-pass cycle: {ok['live']}/{n}"),
        Figure("scan.photos.mismatches", wrong["thorough"], "count", wrong["naive"], None,
               "decoded texts differing from the dataset's truth file (qrcode-2/13: the "
               "image carries the same modules as qrcode-2/12, whose text it decodes to; "
               "its truth file lacks a 'y')"),
        Figure("scan.photos.ms_per_photo", tt, "ms", tn, tt / tn if tn else None,
               "`gate scan` decoder per photo (median) vs naive pyzbar", pi4=True),
    ]


def _implications(figures: list[Figure]) -> list[str]:
    by = {f.name: f for f in figures}
    lo, hi = PI4_FACTOR
    out = []
    frame_ms = 1000 / 30
    for size in ("1280x720", "1920x1080"):
        f = by.get(f"scan.empty.{size}")
        if f is None or f.baseline is None:
            continue
        ours = (f.value * lo, f.value * hi)
        base = (f.baseline * lo, f.baseline * hi)
        out.append(
            f"Pi 4, {size} empty frames: the scan path ~{ours[0]:.1f}-{ours[1]:.1f} ms a frame "
            f"({100 * ours[0] / frame_ms:.0f}-{100 * ours[1] / frame_ms:.0f}% of one core at "
            f"30 fps); naive pyzbar ~{base[0]:.0f}-{base[1]:.0f} ms, at most "
            f"{1000 / base[1]:.0f}-{1000 / base[0]:.0f} fps.")
    return out
