"""V4L2Camera against a stand-in for OpenCV's V4L2 VideoCapture.

No USB camera here, so ``FakeV4L2Capture`` does what OpenCV's V4L2 backend does
with one (modules/videoio/src/cap_v4l.cpp): it offers some pixel formats, keeps the
one it was asked for only if the camera has it, delivers frames at the camera's
rate, and with ``CAP_PROP_CONVERT_RGB`` off hands out the raw buffer in OpenCV's
layout for that format: MJPEG as one row of JPEG bytes, YUYV as height x width x 2.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.camera import CameraError, V4L2Camera, fourcc_name, render, v4l2_grey
from drivers.qr import ZxingDecoder

PASS = "GP1.v4l2-test-pass"


def _fourcc(name: str) -> float:
    return float(cv2.VideoWriter_fourcc(*name))


class FakeV4L2Capture:
    """One camera on a USB port: ``formats`` it offers, a scene it sees, plugged in
    or not. ``honours_raw`` False is an OpenCV build that ignores CONVERT_RGB."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.props = {cv2.CAP_PROP_FOURCC: _fourcc(rig.formats[0]), cv2.CAP_PROP_CONVERT_RGB: 1.0,
                      cv2.CAP_PROP_FRAME_WIDTH: 640.0, cv2.CAP_PROP_FRAME_HEIGHT: 480.0,
                      cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_BUFFERSIZE: 4.0}
        self.sets: list[tuple[int, float]] = []
        self.released = False
        self.dead = False  # unplugged under it: this handle never works again
        self._next = time.monotonic()

    def isOpened(self) -> bool:  # noqa: N802  (OpenCV's name)
        return self.rig.plugged

    def set(self, prop: int, value: float) -> bool:
        self.sets.append((prop, float(value)))
        if prop == cv2.CAP_PROP_FOURCC and fourcc_name(value) not in self.rig.formats:
            return False  # the driver keeps the format it has
        if prop == cv2.CAP_PROP_CONVERT_RGB and not self.rig.honours_raw:
            return False
        self.props[prop] = float(value)
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.dead or self.released:
            return False, None
        # Frames come at the camera's rate: a read waits for the next one.
        self._next = max(self._next + 1 / self.props[cv2.CAP_PROP_FPS], time.monotonic())
        time.sleep(max(0.0, self._next - time.monotonic()))
        w, h = int(self.props[cv2.CAP_PROP_FRAME_WIDTH]), int(self.props[cv2.CAP_PROP_FRAME_HEIGHT])
        bgr = cv2.cvtColor(render(PASS, w, h, seed=self.rig.frames), cv2.COLOR_GRAY2BGR)
        bgr[:, :, 2] = cv2.add(bgr[:, :, 2], 30)  # a warm cast: colour, not grey
        self.rig.frames += 1
        if self.props[cv2.CAP_PROP_CONVERT_RGB]:
            return True, bgr
        fmt = fourcc_name(self.props[cv2.CAP_PROP_FOURCC])
        if fmt == "MJPG":
            jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].reshape(1, -1)
            if self.rig.corrupt_next:
                self.rig.corrupt_next = False
                jpeg = jpeg[:, : jpeg.shape[1] // 3]  # a truncated transfer
            return True, jpeg
        return True, cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUY2)

    def release(self) -> None:
        self.released = True


class Rig:
    def __init__(self, formats: tuple[str, ...] = ("MJPG", "YUYV"), honours_raw: bool = True) -> None:
        self.formats = formats
        self.honours_raw = honours_raw
        self.plugged = True
        self.corrupt_next = False
        self.frames = 0
        self.opened: list[FakeV4L2Capture] = []
        self.lock = threading.Lock()

    def unplug(self) -> None:
        with self.lock:
            self.plugged = False
            for cap in self.opened:
                cap.dead = True

    def capture(self, device: str, api: int) -> FakeV4L2Capture:
        assert api == cv2.CAP_V4L2
        cap = FakeV4L2Capture(self)
        with self.lock:
            self.opened.append(cap)
        return cap


@pytest.fixture
def device(tmp_path: Path) -> str:
    dev = tmp_path / "usb-Gate_Cam-video-index0"
    dev.write_bytes(b"")
    return str(dev)


def _camera(monkeypatch: pytest.MonkeyPatch, device: str, rig: Rig, **kw) -> V4L2Camera:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cv2, "VideoCapture", rig.capture)
    return V4L2Camera(device, 640, 480, 30, **kw)


def _next(cam: V4L2Camera, tries: int = 20) -> np.ndarray:
    for _ in range(tries):
        frame = cam.read(1.0)
        if frame is not None:
            return frame
    raise AssertionError("no frame")


@pytest.mark.parametrize("pixel_format,fourcc", [("mjpeg", "MJPG"), ("yuyv", "YUYV")])
def test_v4l2_camera_hands_out_grey_from_raw_frames(monkeypatch: pytest.MonkeyPatch, device: str,
                                                    pixel_format: str, fourcc: str) -> None:
    rig = Rig()
    cam = _camera(monkeypatch, device, rig, pixel_format=pixel_format)
    try:
        frame = _next(cam)
        assert cam.fourcc == fourcc and cam.raw
        assert frame.shape == (480, 640) and frame.dtype == np.uint8 and frame.flags.c_contiguous
        assert ZxingDecoder().decode(frame) == [PASS]
        # Raw capture asked for, one driver buffer, and the format before the size.
        props = [p for p, _ in rig.opened[0].sets]
        assert (cv2.CAP_PROP_CONVERT_RGB, 0.0) in rig.opened[0].sets
        assert (cv2.CAP_PROP_BUFFERSIZE, 1.0) in rig.opened[0].sets
        assert props.index(cv2.CAP_PROP_FOURCC) < props.index(cv2.CAP_PROP_FRAME_WIDTH)
    finally:
        cam.close()


def test_v4l2_camera_takes_the_format_the_camera_has(monkeypatch: pytest.MonkeyPatch,
                                                     device: str) -> None:
    cam = _camera(monkeypatch, device, Rig(formats=("YUYV",)), pixel_format="mjpeg")
    try:
        assert ZxingDecoder().decode(_next(cam)) == [PASS]
        assert cam.fourcc == "YUYV" and cam.raw
    finally:
        cam.close()


def test_v4l2_camera_falls_back_when_opencv_ignores_raw_mode(monkeypatch: pytest.MonkeyPatch,
                                                             device: str) -> None:
    rig = Rig(honours_raw=False)
    cam = _camera(monkeypatch, device, rig)
    try:
        frames = [_next(cam) for _ in range(3)]  # none lost to the switch
        assert all(ZxingDecoder().decode(f) == [PASS] for f in frames)
        assert not cam.raw and cam.counters.get("raw_fallbacks") == 1
        # The grab thread (the capture's only user) turned conversion back on.
        deadline = time.monotonic() + 2
        while (cv2.CAP_PROP_CONVERT_RGB, 1.0) not in rig.opened[0].sets:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        cam.close()


def test_v4l2_camera_skips_a_corrupt_jpeg_and_counts_it(monkeypatch: pytest.MonkeyPatch,
                                                        device: str) -> None:
    rig = Rig()
    cam = _camera(monkeypatch, device, rig)
    try:
        _next(cam)
        rig.corrupt_next = True
        deadline = time.monotonic() + 3
        while cam.counters.get("corrupt_frames") == 0:
            assert time.monotonic() < deadline
            cam.read(0.2)
        assert cam.raw  # one bad transfer does not give up on raw frames
        assert ZxingDecoder().decode(_next(cam)) == [PASS]
    finally:
        cam.close()


def test_v4l2_camera_unplugged_raises_then_reopens(monkeypatch: pytest.MonkeyPatch,
                                                   device: str) -> None:
    rig = Rig()
    cam = _camera(monkeypatch, device, rig)
    try:
        _next(cam)
        rig.unplug()
        with pytest.raises(CameraError, match="not delivering frames"):
            for _ in range(20):
                cam.read(1.0)
        rig.plugged = True
        deadline = time.monotonic() + 5  # reopened within a second or two
        frame = None
        while frame is None:
            assert time.monotonic() < deadline, "not reopened"
            try:
                frame = cam.read(0.5)
            except CameraError:
                time.sleep(0.05)
        assert ZxingDecoder().decode(frame) == [PASS]
        assert len(rig.opened) >= 2 and rig.opened[0].released
    finally:
        cam.close()
    assert rig.opened[-1].released


def test_v4l2_camera_rejects_an_unknown_pixel_format(device: str) -> None:
    with pytest.raises(ValueError, match="pixel_format"):
        V4L2Camera(device, 640, 480, 30, pixel_format="h264")


# --- v4l2_grey: OpenCV's raw layouts -> the luma plane ------------------------------------

def test_raw_layouts_give_the_luma_plane() -> None:
    grey = render(PASS, 320, 240)
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    yuyv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUY2)
    uyvy = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    # Each format's own luma bytes, untouched (video range, so not equal to `grey`).
    for fmt, raw, luma in (("YUYV", yuyv, yuyv[:, :, 0]), ("UYVY", uyvy, uyvy[:, :, 1]),
                           ("NV12", i420, i420[:240]), ("YU12", i420, i420[:240])):
        out = v4l2_grey(raw, fmt, 320, 240)
        assert out is not None and np.array_equal(out, luma), fmt
        assert ZxingDecoder().decode(out) == [PASS]
    assert v4l2_grey(grey, "GREY", 320, 240) is grey
    jpeg = cv2.imencode(".jpg", bgr)[1].reshape(1, -1)
    assert ZxingDecoder().decode(v4l2_grey(jpeg, "MJPG", 320, 240)) == [PASS]


def test_raw_layouts_that_do_not_match_give_none() -> None:
    yuyv = np.zeros((240, 320, 2), np.uint8)
    assert v4l2_grey(yuyv, "YUYV", 640, 480) is None  # another size than agreed
    assert v4l2_grey(np.zeros((240, 320, 3), np.uint8), "YUYV", 320, 240) is None  # BGR
    assert v4l2_grey(np.zeros((1, 100), np.uint8), "MJPG", 320, 240) is None  # not a JPEG
    # A JPEG of another size than the driver reported is still a frame.
    small = cv2.imencode(".jpg", render(PASS, 320, 240))[1].reshape(1, -1)
    assert v4l2_grey(small, "MJPG", 640, 480).shape == (240, 320)
    assert v4l2_grey(np.zeros((1, 0), np.uint8), "MJPG", 320, 240) is None
    assert v4l2_grey(yuyv, "H264", 320, 240) is None


def test_fourcc_names() -> None:
    assert fourcc_name(cv2.VideoWriter_fourcc(*"MJPG")) == "MJPG"
    assert fourcc_name(_fourcc("YUYV")) == "YUYV"
    assert fourcc_name(0) == ""
