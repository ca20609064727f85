"""Scan path, continued (issues 17 and 19): passes on phone screens, a code appearing
in front of an idle camera, and what two idle cameras cost.

* ``scan.phone.*``: the phone set (``drivers.phone``: backlit screens that clip and
  bloom, moire, glare, tilt and motion blur, a fifth of them lock screens). The
  live decoder (``FastScanDecoder``) gets 4 consecutive frames of each scene,
  ``gate scan``'s thorough decoder the first one, and the baseline is raw
  zxing-cpp (``read_barcodes`` with its defaults, QR only) on the first one.
* ``scan.appear.frames_to_read``: a pass shown after empty frames to a
  ``QrScanner`` with its change gate (the live setup): frames from its first
  appearance to its report, worst over near and far codes and over how many
  empty frames came before (the decoder's phase).
* ``cpu.idle_30fps_720p``: a real ``gate run`` with two simulated lanes streaming
  empty 1280x720 frames at 30 fps (as the footprint group measured it before);
  ``scan.idle.cpu_ratio``: in this process, two scanners on such cameras with
  the change gate against the same two decoding every frame (A B A B).
"""
from __future__ import annotations

import collections
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.core import Context, Figure

N_FRAMES = 4  # consecutive frames of a scene the live decoder gets


def phone_figures(ctx: Context) -> list[Figure]:
    import zxingcpp

    from drivers.phone import phone_frames, phone_set
    from drivers.qr import FastScanDecoder, ThoroughDecoder

    shots = phone_set(ctx.reps(30, 80), seed=19)
    thorough = ThoroughDecoder()
    fmt = zxingcpp.BarcodeFormat.QRCode
    ok = collections.Counter()
    first: collections.Counter[int | None] = collections.Counter()
    slower = 0  # scenes the live decoder reads later than it did without regions (> 2)
    false = 0
    codes = 0
    for shot in shots:
        frames = phone_frames(shot, N_FRAMES)
        live = FastScanDecoder()
        seen = [live.decode(f) for f in frames]
        plain = FastScanDecoder(regions=False)  # the live decoder before issue 19
        plain_seen = [plain.decode(f) for f in frames]
        still = thorough.decode(frames[0])
        raw = [b.text for b in zxingcpp.read_barcodes(frames[0], formats=fmt)]
        if shot.text is None:
            false += sum(map(len, seen)) + len(still) + len(raw)
            continue
        codes += 1
        false += sum(1 for s in seen for t in s if t != shot.text)
        false += sum(1 for t in still if t != shot.text) + sum(1 for t in raw if t != shot.text)
        at = next((k + 1 for k, s in enumerate(seen) if shot.text in s), None)
        was = next((k + 1 for k, s in enumerate(plain_seen) if shot.text in s), None)
        first[at] += 1
        ok["live"] += at is not None
        ok["plain"] += was is not None
        ok["thorough"] += shot.text in still
        ok["raw"] += shot.text in raw
        if was is not None and (at is None or at > max(2, was)):
            slower += 1
    rate = {k: ok[k] / codes for k in ("live", "plain", "thorough", "raw")}
    read = [k for k in first.elements() if k is not None]
    dist = ", ".join(f"{k}: {first[k]}" for k in range(1, N_FRAMES + 1)) + f", never: {first[None]}"
    ctx.log(f"scan: phone set done ({len(shots)} scenes)")
    raw_rate = rate["raw"] or None
    return [
        Figure("scan.phone.decode_rate.live", rate["live"], "fraction", rate["raw"],
               rate["live"] / raw_rate if raw_rate else None,
               f"live decoder, {N_FRAMES} frames of each of {codes} phone scenes: "
               f"{ok['live']}/{codes} (before issue 19's regions: {ok['plain']}); "
               "baseline raw zxing-cpp on the first frame"),
        Figure("scan.phone.decode_rate", rate["thorough"], "fraction", rate["raw"],
               rate["thorough"] / raw_rate if raw_rate else None,
               f"`gate scan` decoder on the first frame: {ok['thorough']}/{codes}; "
               f"raw zxing-cpp {ok['raw']}/{codes}"),
        Figure("scan.phone.frames_to_read", float(np.mean(read)) if read else 0.0, "frames",
               note=f"live decoder, frames until read (mean of those read); {dist}"),
        Figure("scan.phone.slower", slower, "count",
               note="scenes the live decoder read before (regions off) that it now "
                    "reads later than frame 2 or not at all (target 0)"),
        Figure("scan.phone.false_positives", false, "count",
               note=f"codes reported that are not the scene's, all decoders, "
                    f"{len(shots) - codes} lock screens included"),
    ]


class _Frames:
    """A frame source handing out a list, then nothing (like an idle camera)."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self._frames = collections.deque(frames)
        self._done = threading.Event()

    def read(self, timeout: float) -> np.ndarray | None:
        if self._frames:
            return self._frames.popleft()
        self._done.wait(timeout)
        return None

    def close(self) -> None:
        self._done.set()


def appear_figures(ctx: Context) -> list[Figure]:
    from drivers.camera import render, render_empty
    from drivers.qr import QrScanner, make_decoder

    from bench.scan import TOKEN

    worst = 0
    cases = {"near": render(TOKEN, 1280, 720, module_px=6, center=(0.4, 0.5), seed=5),
             "far": render(TOKEN, 1280, 720, module_px=2, center=(0.6, 0.4), seed=6)}
    empties = [render_empty(1280, 720, seed=10 + i) for i in range(12)]
    for name, frame in cases.items():
        for before in range(4, 12):
            frames = empties[:before] + [frame] * 4 + empties[:2]
            at: list[int] = []
            src = _Frames(frames)
            scanner: QrScanner

            def seen(text: str) -> None:
                at.append(scanner.counters.get("frames"))

            scanner = QrScanner(src, make_decoder("auto"), seen)
            scanner.start()
            try:
                scanner.progress.wait_for(len(frames), 30.0)
            finally:
                scanner.close()
                src.close()
            worst = max(worst, (at[0] - before) if at else 5)
    return [Figure("scan.appear.frames_to_read", worst, "frames", 1.0, worst / 1.0,
                   "a pass shown to an idle scanner (change gate on): frames from its "
                   "appearance to its report, worst over near/far and 4-11 empty frames "
                   "before; target <= 2")]


def idle_figures(ctx: Context) -> list[Figure]:
    from bench import footprint

    hold = ctx.reps(6.0, 15.0)
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        d = Path(tmp)
        proc, _ = footprint._start(footprint._config(d, traffic=False, fps=30.0,
                                                     size=(1280, 720)), d / "idle.sock")
        try:
            time.sleep(2.0)
            c0, t0 = footprint._cpu_s(proc.pid), time.monotonic()
            time.sleep(hold)
            share = (footprint._cpu_s(proc.pid) - c0) / (time.monotonic() - t0)
        finally:
            footprint._stop(proc)
    gated, every = [], []
    for _ in range(ctx.reps(2, 3)):
        gated.append(_scanners_cpu(True, hold / 3))
        every.append(_scanners_cpu(False, hold / 3))
    g, e = float(np.median(gated)), float(np.median(every))
    ctx.implications.append(
        f"idle: two 720p/30 fps lanes cost {share * 100:.1f}% of a core here in `gate run` "
        f"(x5-8 on a Pi 4: {share * 500:.0f}-{share * 800:.0f}% of one of its four cores); "
        f"the scanners alone {g * 100:.2f}% against {e * 100:.2f}% decoding every frame")
    return [
        Figure("cpu.idle_30fps_720p", share * 100, "% of a core",
               note="`gate run`, two lanes watching 30 fps of empty 1280x720 frames "
                    "(noisy, 4 variants); target <= 2 %", pi4=True),
        Figure("scan.idle.cpu_ratio", g * 100, "% of a core", e * 100, g / e if e else None,
               "two scanners on empty 720p at 30 fps in this process: change gate on, "
               "vs decoding every frame (A B A B)"),
    ]


def _scanners_cpu(gate: bool, seconds: float) -> float:
    """Share of a core this process spends while two scanners watch empty 720p."""
    from drivers.camera import SimCamera
    from drivers.qr import QrScanner, make_decoder

    cams = [SimCamera(1280, 720, stream_fps=30.0) for _ in range(2)]
    scanners = [QrScanner(c, make_decoder("auto"), lambda t: None,
                          **({} if gate else {"idle": None})).start() for c in cams]
    try:
        time.sleep(0.5)
        c0, t0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        return (time.process_time() - c0) / (time.monotonic() - t0)
    finally:
        for s, c in zip(scanners, cams):
            c.close()
            s.close()
