"""Frame sources: the simulated camera, image folders, video files, V4L2 errors."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.camera import (CameraError, ImageFolderSource, SimCamera, SupervisedCamera,
                            V4L2Camera, VideoFileSource, render, render_empty)
from drivers.qr import QrScanner, ZxingDecoder

DARK = 100  # rendered dark modules sit near 40, the background near 165


def decode(frame: np.ndarray | None) -> list[str]:
    assert frame is not None
    return ZxingDecoder().decode(frame)


# --- render -------------------------------------------------------------------

def test_render_looks_like_a_camera_frame() -> None:
    frame = render("pass-1", 800, 600)
    assert frame.shape == (600, 800) and frame.dtype == np.uint8
    # Noise: not a clean synthetic image with a handful of grey levels.
    assert len(np.unique(frame)) > 50
    # Default size: the code (dark modules) spans roughly 40% of the frame height.
    rows = np.flatnonzero((frame < DARK).any(axis=1))
    span = (rows[-1] - rows[0] + 1) / 600
    assert 0.3 < span < 0.5


def test_render_is_deterministic_per_seed() -> None:
    assert np.array_equal(render("x"), render("x"))
    assert not np.array_equal(render("x", seed=1), render("x", seed=2))
    assert decode(render("x", seed=1)) == decode(render("x", seed=2)) == ["x"]


def test_render_places_the_code() -> None:
    frame = render("left side", center=(0.25, 0.5))
    assert (frame[:, :320] < DARK).any() and not (frame[:, 320:] < DARK).any()
    assert decode(frame) == ["left side"]


def test_render_small_modules_still_decode() -> None:
    # 2 px per module: a far-away phone; the decoder still has to manage it.
    assert decode(render("GP1.far-away", module_px=2)) == ["GP1.far-away"]


def test_render_refuses_a_code_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        render("too big", 640, 480, module_px=40)


def test_render_empty_has_no_dark_modules() -> None:
    frame = render_empty()
    assert frame.shape == (480, 640) and not (frame < DARK).any()


# --- SimCamera ----------------------------------------------------------------

def test_sim_camera_hands_out_queued_frames_in_order() -> None:
    cam = SimCamera()
    cam.show("pass-A", frames=2)
    cam.show_empty(2)
    cam.show("pass-B", frames=1)
    assert cam.frames_shown == 3 + 2 + 2
    got = [decode(cam.read(timeout=1.0)) for _ in range(7)]
    assert got == [["pass-A"], ["pass-A"], [], [], [], ["pass-B"], []]
    assert cam.read(timeout=0.05) is None  # nothing queued, not streaming


def test_sim_camera_caches_and_shares_rendered_frames() -> None:
    cam = SimCamera()
    a = cam.frame("pass-A")
    assert cam.frame("pass-A") is a  # rendered once per text
    assert not a.flags.writeable  # shared: nobody may draw on it
    cam.show("pass-A", frames=2)
    assert cam.read(timeout=1.0) is a


def test_sim_camera_streams_empty_frames_when_asked() -> None:
    cam = SimCamera(320, 240, stream_fps=1000.0)
    frames = [cam.read(timeout=2.0) for _ in range(5)]
    assert all(f is not None and f.shape == (240, 320) for f in frames)
    assert all(decode(f) == [] for f in frames)
    assert cam.frames_shown == 5  # streamed frames count, so settle waits for them
    cam.show("pass-A", frames=1)
    assert decode(cam.read(timeout=2.0)) == ["pass-A"]  # queued frames come first


def test_sim_camera_close_wakes_a_blocked_reader() -> None:
    cam = SimCamera()
    result: list[object] = ["not returned"]
    t = threading.Thread(target=lambda: result.__setitem__(0, cam.read(timeout=30.0)))
    t.start()
    cam.close()
    t.join(timeout=10.0)
    assert not t.is_alive() and result == [None]
    with pytest.raises(CameraError):
        cam.show("after close")


def test_sim_camera_with_scanner_from_two_producer_threads() -> None:
    cam = SimCamera(320, 240)
    seen: list[str] = []
    scanner = QrScanner(cam, ZxingDecoder(), seen.append).start()
    try:
        def produce(prefix: str) -> None:
            for i in range(15):
                cam.show(f"{prefix}-{i}", frames=2)

        producers = [threading.Thread(target=produce, args=(p,)) for p in ("east", "west")]
        for t in producers:
            t.start()
        for t in producers:
            t.join()
        assert cam.settle(scanner, timeout=20.0)
    finally:
        scanner.close()
        cam.close()
    assert sorted(seen) == sorted(f"{p}-{i}" for p in ("east", "west") for i in range(15))
    assert scanner.counters.get("frames") == cam.frames_shown == 90


# --- ImageFolderSource ----------------------------------------------------------

def test_image_folder_source_reads_sorted_images_then_nothing(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "b.png"), render("second"))
    cv2.imwrite(str(tmp_path / "a.jpg"), cv2.cvtColor(render("first"), cv2.COLOR_GRAY2BGR))
    cv2.imwrite(str(tmp_path / "c.png"), render_empty())
    (tmp_path / "bb.png").write_bytes(b"not a png")  # skipped and counted
    (tmp_path / "notes.txt").write_text("not an image")  # ignored
    src = ImageFolderSource(tmp_path)
    assert [f.name for f in src.files] == ["a.jpg", "b.png", "bb.png", "c.png"]
    frames = [src.read(timeout=0.01) for _ in range(3)]
    assert all(f is not None and f.ndim == 2 and f.dtype == np.uint8 for f in frames)
    assert [decode(f) for f in frames] == [["first"], ["second"], []]
    assert src.unreadable == 1 and src.exhausted
    assert src.read(timeout=0.01) is None


def test_image_folder_source_drives_a_scanner(tmp_path: Path) -> None:
    for i, text in enumerate(["pass-A", "pass-A", "pass-B"]):
        cv2.imwrite(str(tmp_path / f"{i:03}.png"), render(text))
    seen: list[str] = []
    src = ImageFolderSource(tmp_path)
    scanner = QrScanner(src, ZxingDecoder(), seen.append).start()
    try:
        assert scanner.progress.wait_for(3, timeout=10.0)
    finally:
        scanner.close()
        src.close()
    assert seen == ["pass-A", "pass-B"]


def test_image_folder_source_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="nowhere"):
        ImageFolderSource(tmp_path / "nowhere")


# --- VideoFileSource ------------------------------------------------------------

def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert out.isOpened(), "OpenCV cannot write MJPG here"
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    out.release()


def test_video_file_source_reads_grey_frames_and_loops(tmp_path: Path) -> None:
    video = tmp_path / "lane.avi"
    _write_video(video, [render_empty(), render("pass-A"), render("pass-A")])
    src = VideoFileSource(video)
    got = [decode(src.read(timeout=0.01)) for _ in range(3)]
    assert got == [[], ["pass-A"], ["pass-A"]]
    assert src.read(timeout=0.01) is None and src.exhausted
    src.close()

    looping = VideoFileSource(video, loop=True)
    frames = [looping.read(timeout=0.01) for _ in range(7)]
    looping.close()
    assert all(f is not None and f.ndim == 2 for f in frames)
    assert [decode(f) for f in frames[3:5]] == [[], ["pass-A"]]  # started over


def test_video_file_source_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="missing.avi"):
        VideoFileSource(tmp_path / "missing.avi")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CameraError, match="junk.avi"):
        VideoFileSource(junk)


# --- V4L2Camera -----------------------------------------------------------------

def test_v4l2_select_timeout_is_shortened() -> None:
    # Without it a dead camera blocks each read for 10 s.
    assert os.environ.get("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT")


def test_v4l2_camera_missing_device_names_it() -> None:
    dev = "/dev/v4l/by-id/usb-Gate_Cam_0000-video-index0"
    with pytest.raises(CameraError, match="usb-Gate_Cam_0000"):
        V4L2Camera(dev, 1280, 720, 30)


def test_v4l2_camera_on_a_non_camera_names_it(tmp_path: Path) -> None:
    not_a_camera = tmp_path / "video9"
    not_a_camera.write_bytes(b"")
    with pytest.raises(CameraError, match="video9"):
        V4L2Camera(str(not_a_camera), 640, 480, 30)


# --- SupervisedCamera: frame-age watchdog and reopen -------------------------------------

class LiveRig:
    """A camera that can stall (delivers nothing, reports nothing) or be unplugged
    (cannot be opened; an open handle fails), and is opened through ``open``."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        self.state = "live"  # live | stalled | unplugged
        self.opened: list[RigCamera] = []
        self.empty = render_empty(width, height)
        self.codes: list[np.ndarray] = []
        self.lock = threading.Lock()
        self.size = (width, height)

    def open(self) -> RigCamera:
        if self.state == "unplugged":
            raise CameraError("/dev/v4l/by-id/usb-rig: No such device")
        cam = RigCamera(self)
        self.opened.append(cam)
        return cam

    def show(self, text: str, frames: int = 3) -> None:
        with self.lock:
            self.codes += [render(text, *self.size)] * frames


class RigCamera:
    def __init__(self, rig: LiveRig) -> None:
        self.rig = rig
        self.closed = threading.Event()

    def read(self, timeout: float) -> np.ndarray | None:
        if self.rig.state == "unplugged" and not self.closed.is_set():
            raise CameraError("device reports readiness to read but returned no data")
        if self.rig.state != "live" or self.closed.is_set():
            self.closed.wait(timeout)
            return None
        self.closed.wait(0.01)  # ~100 fps
        with self.rig.lock:
            return self.rig.codes.pop(0) if self.rig.codes else self.rig.empty

    def close(self) -> None:
        self.closed.set()


def _wait(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def supervised():
    rig = LiveRig()
    faults: list[tuple[str, bool, str]] = []
    seen: list[str] = []
    cam = SupervisedCamera(rig.open, stall_s=0.3, reopen_s=(0.05, 0.2))
    scanner = QrScanner(cam, ZxingDecoder(), seen.append, hold_s=0.2, name="camera",
                        on_fault=lambda *a: faults.append(a)).start()
    yield rig, cam, scanner, faults, seen
    scanner.close()
    cam.close()


def test_stalled_camera_is_reported_and_reopened_when_it_returns(supervised) -> None:
    rig, cam, scanner, faults, seen = supervised
    assert _wait(lambda: scanner.counters.get("frames") > 5)
    assert [ok for _, ok, _ in faults] == [True] and len(rig.opened) == 1  # frames arriving
    rig.state = "stalled"  # frames stop; the driver raises no error
    assert _wait(lambda: faults and faults[-1][1] is False)
    assert faults[-1][0] == "camera" and "no frame for" in faults[-1][2]
    assert rig.opened[0].closed.is_set()  # the hung handle was closed ...
    assert cam.counters.get("stalls") >= 1
    rig.state = "live"
    assert _wait(lambda: faults[-1][1] is True)  # ... and a reopened one delivers again
    assert len(rig.opened) >= 2 and not rig.opened[-1].closed.is_set()
    assert [ok for _, ok, _ in faults] == [True, False, True]  # changes only, not every retry
    rig.show("after the stall")
    assert _wait(lambda: "after the stall" in seen)


def test_unplugged_camera_is_a_fault_until_plugged_back(supervised) -> None:
    rig, cam, scanner, faults, seen = supervised
    assert _wait(lambda: scanner.counters.get("frames") > 5)
    rig.state = "unplugged"  # the open handle fails, and reopening fails too
    assert _wait(lambda: faults and faults[-1][1] is False)
    assert "returned no data" in faults[-1][2] or "No such device" in faults[-1][2]
    assert _wait(lambda: cam.counters.get("open_failures") >= 2)  # it keeps trying
    assert faults[-1][1] is False and cam.frame_age is not None
    rig.state = "live"
    assert _wait(lambda: faults[-1][1] is True)
    rig.show("plugged back")
    assert _wait(lambda: "plugged back" in seen)
    assert cam.counters.get("opens") == len(rig.opened) >= 2


def test_camera_missing_at_boot_does_not_stop_the_lane() -> None:
    rig = LiveRig()
    rig.state = "unplugged"
    faults: list[tuple[str, bool, str]] = []
    seen: list[str] = []
    cam = SupervisedCamera(rig.open, stall_s=0.3, reopen_s=(0.05, 0.1))  # opens lazily: no raise
    scanner = QrScanner(cam, ZxingDecoder(), seen.append, on_fault=lambda *a: faults.append(a)).start()
    try:
        assert _wait(lambda: faults and faults[-1][1] is False)
        assert "cannot open camera" in faults[-1][2] and "No such device" in faults[-1][2]
        rig.state = "live"
        rig.show("first pass of the day")
        assert _wait(lambda: seen == ["first pass of the day"])
        assert faults[-1][1] is True
    finally:
        scanner.close()
        cam.close()


def test_closing_a_supervised_camera_is_not_a_fault(supervised) -> None:
    rig, cam, scanner, faults, seen = supervised
    assert _wait(lambda: scanner.counters.get("frames") > 2)
    cam.close()  # what the app does at shutdown, before stopping the scanner
    time.sleep(0.5)
    assert [ok for _, ok, _ in faults] == [True] and rig.opened[0].closed.is_set()
    assert cam.read(0.01) is None


def test_supervised_camera_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        SupervisedCamera(LiveRig().open, stall_s=0)
    with pytest.raises(ValueError):
        SupervisedCamera(LiveRig().open, reopen_s=(2.0, 1.0))


# --- Picamera2Camera, against a stand-in picamera2 module ------------------------------------

class FakeJob:
    def __init__(self, cam: FakePicamera2) -> None:
        self.cam = cam


class FakePicamera2:
    """What the gate uses of picamera2.Picamera2, as picamera2 does it: YUV420
    arrays (Y rows first, rows padded to a stride) at the size the camera settled on
    (``align`` rounds the width up, as libcamera may), ~100 frames a second; with
    ``wait=False`` a capture returns a job and ``wait(job, timeout)`` raises
    TimeoutError when no frame comes (``stalled``)."""

    instances: list[FakePicamera2] = []
    fail_open = False
    align = 1

    def __init__(self, camera_num: int = 0) -> None:
        if FakePicamera2.fail_open:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.camera_num = camera_num
        self.started = self.closed = False
        self.stalled = False
        self.config: dict | None = None
        self.camera_config: dict | None = None
        self.y: np.ndarray | None = None
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict, controls: dict, buffer_count: int) -> dict:
        return {"main": main, "controls": controls, "buffer_count": buffer_count}

    def configure(self, config: dict) -> None:
        self.config = config
        w, h = config["main"]["size"]
        w = (w + self.align - 1) // self.align * self.align
        self.camera_config = {**config, "main": {**config["main"], "size": (w, h)}}

    def start(self) -> None:
        self.started = True

    def _frame(self, timeout: float | None) -> np.ndarray:
        assert self.camera_config is not None and self.started
        if self.stalled:
            time.sleep(timeout if timeout is not None else 3600)
            raise TimeoutError("timed out")
        w, h = self.camera_config["main"]["size"]
        time.sleep(0.01)
        stride = (w + 63) // 64 * 64
        out = np.full((h * 3 // 2, stride), 128, np.uint8)  # chroma rows: neutral grey
        out[:h, :w] = self.y if self.y is not None else render_empty(w, h)
        return out

    def capture_array(self, name: str = "main", wait: bool | float | None = None,
                      signal_function: object = None) -> np.ndarray | FakeJob:
        assert name == "main"
        if wait is False:
            return FakeJob(self)
        return self._frame(None if wait in (None, True) else float(wait))

    def wait(self, job: FakeJob, timeout: float | None = None) -> np.ndarray:
        return self._frame(timeout)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


class OldFakePicamera2(FakePicamera2):
    """A picamera2 whose wait() takes no timeout: captures block."""

    def wait(self, job: FakeJob) -> np.ndarray:  # type: ignore[override]
        return self._frame(None)


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch):
    import sys
    import types

    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    FakePicamera2.instances = []
    FakePicamera2.fail_open = False
    FakePicamera2.align = 1
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return FakePicamera2


def test_picamera2_hands_out_the_y_plane(fake_picamera2) -> None:
    from drivers.camera import Picamera2Camera

    cam = Picamera2Camera(300, 200, fps=25)
    try:
        fake = fake_picamera2.instances[0]
        assert fake.config["main"] == {"size": (300, 200), "format": "YUV420"}
        assert fake.config["controls"] == {"FrameRate": 25.0}
        fake.y = render("pi camera pass", 300, 200)
        deadline = time.monotonic() + 5
        frame = None
        while time.monotonic() < deadline:
            frame = cam.read(timeout=1.0)
            if frame is not None and decode(frame):
                break
        assert frame is not None and frame.shape == (200, 300) and frame.flags["C_CONTIGUOUS"]
        assert decode(frame) == ["pi camera pass"]  # luma only: chroma rows and padding gone
    finally:
        cam.close()
    assert fake.closed and not fake.started


def test_picamera2_takes_the_size_the_camera_settled_on(fake_picamera2) -> None:
    from drivers.camera import Picamera2Camera

    fake_picamera2.align = 32  # 300 wide comes back as 320
    cam = Picamera2Camera(300, 200)
    try:
        fake_picamera2.instances[0].y = render("pi camera pass", 320, 200)
        frame = None
        deadline = time.monotonic() + 5
        while frame is None and time.monotonic() < deadline:
            frame = cam.read(timeout=1.0)
        assert cam.width == 320 and frame is not None and frame.shape == (200, 320)
        assert decode(frame) == ["pi camera pass"]
    finally:
        cam.close()


def test_picamera2_stall_times_out_and_recovers(fake_picamera2, monkeypatch) -> None:
    from drivers.camera import Picamera2Camera

    monkeypatch.setattr(Picamera2Camera, "_WAIT_S", 0.2)
    cam = Picamera2Camera(160, 120)
    fake = fake_picamera2.instances[0]
    try:
        assert cam.read(timeout=2.0) is not None
        fake.stalled = True
        with pytest.raises(CameraError, match="not delivering frames.*timed out"):
            for _ in range(10):
                cam.read(timeout=1.0)
        fake.stalled = False
        deadline = time.monotonic() + 3
        frame = None
        while frame is None and time.monotonic() < deadline:
            try:
                frame = cam.read(timeout=0.5)
            except CameraError:
                pass
        assert frame is not None
    finally:
        t0 = time.monotonic()
        cam.close()
    assert time.monotonic() - t0 < 1.0  # close does not wait out a blocked capture


def test_picamera2_without_timeouts_still_delivers(fake_picamera2, monkeypatch) -> None:
    import sys
    import types

    from drivers.camera import Picamera2Camera

    module = types.ModuleType("picamera2")
    module.Picamera2 = OldFakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    cam = Picamera2Camera(160, 120)
    try:
        assert not cam._timed and cam.read(timeout=2.0) is not None
    finally:
        cam.close()


def test_picamera2_that_does_not_import_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from drivers.camera import Picamera2Camera

    class Broken(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            raise ValueError("numpy.dtype size changed, may indicate binary incompatibility")

    monkeypatch.setitem(sys.modules, "picamera2", Broken("picamera2"))
    with pytest.raises(CameraError, match="does not import.*numpy.dtype size changed.*setup --pi"):
        Picamera2Camera()


def test_picamera2_open_failure_is_a_camera_error(fake_picamera2) -> None:
    from drivers.camera import Picamera2Camera

    fake_picamera2.fail_open = True
    with pytest.raises(CameraError, match="Pi camera 0"):
        Picamera2Camera()


def test_picamera2_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from drivers.camera import Picamera2Camera

    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as if not installed
    with pytest.raises(CameraError, match="setup --pi.*python3-picamera2"):
        Picamera2Camera()


def test_gate_with_its_usb_camera_missing_starts_and_raises_a_sensor_fault(tmp_path: Path) -> None:
    # The wiring in gate/app/drivers.py: a live camera is supervised, so a missing one
    # degrades its lane (alarm, guard mode) instead of keeping the gate from starting.
    from gate.app.gate_app import GateApp
    from gate.config import Config

    conf = Config.model_validate({
        "store": {"path": str(tmp_path / "gate.db")},
        "voice": {"cache_dir": str(tmp_path / "voice")},
        "lanes": [{"name": "in", "direction": "in",
                   "camera": {"driver": "v4l2", "device": "/dev/v4l/by-id/usb-Gate_Cam_gone-video-index0"}}]})
    records: list = []
    app = GateApp(conf, sinks=[records.append], prerender=False)
    app.start()
    try:
        assert _wait(lambda: any(getattr(r, "kind", None) == "sensor_fault" for r in records))
        assert isinstance(app.devices["in"].camera, SupervisedCamera)
        alarm = next(r for r in records if getattr(r, "kind", None) == "sensor_fault")
        assert alarm.lane == "in" and "usb-Gate_Cam_gone" in alarm.detail
        assert app.lanes["in"].health["camera"][0] is False
    finally:
        app.stop()


def test_latest_frame_hands_out_each_newest_frame_once_and_reports_failure() -> None:
    import numpy as np

    from drivers.camera import CameraError, LatestFrame

    lf = LatestFrame()
    assert lf.take(0.01, "cam") is None  # nothing yet
    a, b = np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)
    lf.put(a)
    lf.put(b)  # a was never read: only the newest counts
    assert lf.take(0.01, "cam") is b
    assert lf.take(0.01, "cam") is None  # not handed out twice
    lf.fail("cam is not delivering frames")
    with pytest.raises(CameraError, match="not delivering"):
        lf.take(1.0, "cam")
    lf.put(a)
    assert lf.take(0.01, "cam") is a  # a new frame clears the failure
    lf.close()
    assert lf.take(1.0, "cam") is None
