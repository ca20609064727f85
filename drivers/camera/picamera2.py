"""``Picamera2Camera``: a Raspberry Pi camera module (CSI) through picamera2 /
libcamera, whose Y plane is the greyscale frame."""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from drivers.camera.latest import LatestFrame
from drivers.frames import CameraError

def _parameters(fn: Any) -> tuple[str, ...]:
    """The parameter names of a callable; () if it has none to show."""
    import inspect

    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()


class Picamera2Camera:
    """A Raspberry Pi camera module (CSI) through picamera2 / libcamera, which
    OpenCV cannot open.

    The main stream is YUV420: its first ``height`` rows are the Y (luma) plane,
    which is the greyscale frame the decoders want, with no colour conversion at
    all. A grab thread keeps only the newest frame, as for V4L2. picamera2 comes
    with Raspberry Pi OS (``python3-picamera2``; a venv needs
    ``--system-site-packages``) or the ``pi`` extra; it is imported only here.
    """

    _WAIT_S = 2.0  # longest a capture may block before the grab loop looks up

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 30.0,
                 camera_num: int = 0) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(
                "picamera2 is not installed: on Raspberry Pi OS run `scripts/setup --pi` "
                "(apt's python3-picamera2, seen through a venv made with "
                "--system-site-packages)") from exc
        except Exception as exc:
            # Installed but broken, typically apt's picamera2 (simplejpeg, built for
            # Debian's numpy 1.x) under a numpy 2 installed into the venv by pip.
            raise CameraError(
                f"picamera2 is installed but does not import ({exc!r}); run "
                "`scripts/setup --pi` again, which keeps the venv on Debian's numpy") from exc
        self.width, self.height, self.fps, self.camera_num = width, height, fps, camera_num
        self._cam: Any = None
        try:
            cam = Picamera2(camera_num)
            self._cam = cam
            config = cam.create_video_configuration(
                main={"size": (width, height), "format": "YUV420"},
                controls={"FrameRate": float(fps)}, buffer_count=2)
            cam.configure(config)
            # libcamera may have adjusted the size to what the sensor and ISP can do.
            configured = getattr(cam, "camera_config", None) or config
            self.width, self.height = (int(v) for v in configured["main"]["size"])
            cam.start()
        except Exception as exc:
            self._release()
            raise CameraError(f"cannot open Pi camera {camera_num} with picamera2: {exc}") from exc
        # A capture that can time out (the job API) lets close() and a stalled
        # camera be noticed; a picamera2 without it blocks until the next frame, and
        # only SupervisedCamera's frame-age watchdog sees a stall.
        self._timed = "timeout" in _parameters(getattr(cam, "wait", None))
        self._frames = LatestFrame()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab, name=f"picamera2-{camera_num}",
                                        daemon=True)
        self._thread.start()

    def _capture(self) -> np.ndarray:
        if self._timed:
            job = self._cam.capture_array("main", wait=False)
            return self._cam.wait(job, timeout=self._WAIT_S)  # TimeoutError if stalled
        return self._cam.capture_array("main")

    def _grab(self) -> None:
        while not self._stop.is_set():
            try:
                arr = self._capture()
                # YUV420 comes as (height * 3/2, stride): Y rows first, maybe padded.
                y = np.ascontiguousarray(np.asarray(arr)[:self.height, :self.width])
                if y.dtype != np.uint8 or y.shape != (self.height, self.width):
                    raise CameraError(f"unexpected frame {y.shape} {y.dtype} from picamera2")
            except Exception as exc:
                if self._stop.is_set():
                    break
                self._frames.fail(f"Pi camera {self.camera_num} is not delivering frames: {exc}")
                self._stop.wait(0.1)
                continue
            self._frames.put(y)

    def read(self, timeout: float) -> np.ndarray | None:
        return self._frames.take(timeout, f"Pi camera {self.camera_num}")

    def close(self) -> None:
        self._stop.set()
        self._frames.close()
        self._thread.join(timeout=self._WAIT_S + 1.0)
        self._release()

    def _release(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        for step in ("stop", "close"):
            try:
                getattr(cam, step)()
            except Exception:
                pass
