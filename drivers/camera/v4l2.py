"""``V4L2Camera``: a USB camera through OpenCV's V4L2 backend, read raw and turned
grey only when read (``v4l2_grey``)."""
from __future__ import annotations

import os
import threading

import cv2
import numpy as np

from drivers.base import Counters
from drivers.camera.latest import LatestFrame
from drivers.frames import CameraError, to_grey

def fourcc_name(code: float | int) -> str:
    """CAP_PROP_FOURCC's number -> its four letters ("MJPG", "YUYV"); "" if none."""
    n = int(code)
    return "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")


# Raw V4L2 buffers (CAP_PROP_CONVERT_RGB off) -> the luma plane: how OpenCV lays
# each pixel format out (modules/videoio/src/cap_v4l.cpp, v4l2_create_frame).
_PACKED_422 = {"YUYV": cv2.COLOR_YUV2GRAY_YUY2, "YUY2": cv2.COLOR_YUV2GRAY_YUY2,
               "UYVY": cv2.COLOR_YUV2GRAY_UYVY}
_PLANAR_420 = ("YU12", "I420", "YV12", "NV12", "NV21")


def v4l2_grey(raw: np.ndarray, fourcc: str, width: int, height: int) -> np.ndarray | None:
    """The greyscale frame in a raw V4L2 buffer, without colour conversion: the Y
    plane of YUV formats, an MJPEG frame decoded straight to grey (libjpeg skips the
    chroma). None if the buffer is not laid out as ``fourcc`` at width x height (an
    MJPEG frame may be any size), or is a broken JPEG."""
    if fourcc in ("MJPG", "JPEG"):
        if raw.ndim > 2 or (raw.ndim == 2 and raw.shape[0] != 1) or not raw.size:
            return None  # not a raw byte buffer
        # Whatever size the JPEG says: some drivers report one size and send another.
        return cv2.imdecode(raw.reshape(-1), cv2.IMREAD_GRAYSCALE)
    if fourcc in _PACKED_422 and raw.shape == (height, width, 2):
        return cv2.cvtColor(raw, _PACKED_422[fourcc])
    if fourcc in _PLANAR_420 and raw.shape == (height * 3 // 2, width):
        return raw[:height]  # the Y plane comes first; a view, made contiguous by to_grey
    if fourcc == "GREY" and raw.shape == (height, width):
        return raw
    return None


class V4L2Camera:
    """A USB camera through OpenCV's V4L2 backend.

    Open it by a stable path (``/dev/v4l/by-id/...``): ``/dev/videoN`` numbers move
    between boots and replugs. A grab thread reads continuously and keeps only the
    newest frame (with a driver buffer of 1), so a slow decode never works through
    a backlog of stale frames. If the camera stops delivering, ``read`` raises
    CameraError and the grab thread reopens the device once a second.

    Frames are taken raw (``CAP_PROP_CONVERT_RGB`` off) and turned into grey only
    when read: the Y plane of a YUV format costs nothing, and an MJPEG frame decoded
    straight to grey costs about two thirds of OpenCV's decode to BGR plus the
    conversion (``bench`` group ``scan``), and only for frames the scanner takes.
    ``pixel_format`` "mjpeg" is what most UVC cameras need for 720p at 30 fps over
    USB 2 (raw YUYV at that size usually tops out at 5-10 fps). A format this class
    cannot read raw falls back to OpenCV's conversion (``raw`` is then False).
    """

    _REOPEN_AFTER = 3  # consecutive failed reads before the device is reopened
    _REOPEN_EVERY_S = 1.0
    _FOURCC = {"mjpeg": "MJPG", "yuyv": "YUYV"}

    def __init__(self, device: str, width: int = 1280, height: int = 720,
                 fps: float = 30.0, pixel_format: str = "mjpeg") -> None:
        if pixel_format not in self._FOURCC:
            raise ValueError(f"pixel_format must be one of {sorted(self._FOURCC)}, "
                             f"not {pixel_format!r}")
        self.device = device
        self.width = width
        self.height = height
        self.fps = fps
        self.pixel_format = pixel_format
        self.fourcc = ""  # what the camera agreed to deliver
        self.raw = True  # False once fallen back to OpenCV's BGR conversion
        self.counters = Counters()  # corrupt_frames, raw_fallbacks
        if not os.path.exists(device):
            raise CameraError(f"camera {device!r} not found (is it plugged in?)")
        self._cap = self._open()
        self._frames = LatestFrame()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab, name=f"v4l2-{device}",
                                        daemon=True)
        self._thread.start()

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open camera {self.device!r} with V4L2 "
                              "(missing, busy, or not a capture device)")
        # Format before size: the sizes on offer depend on the format.
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self._FOURCC[self.pixel_format]))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self.raw:
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
        # The camera may have picked another size or format than asked for.
        self.fourcc = fourcc_name(cap.get(cv2.CAP_PROP_FOURCC))
        self._size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or self.width,
                      int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or self.height)
        return cap

    def _grab(self) -> None:
        failures = 0
        converting = not self.raw
        while not self._stop.is_set():
            if not self.raw and not converting:
                self._cap.set(cv2.CAP_PROP_CONVERT_RGB, 1)
                converting = True
            ok, frame = self._cap.read()
            if ok and frame is not None:
                failures = 0
                self._frames.put(frame)
                continue
            failures += 1
            self._frames.fail(f"camera {self.device!r} is not delivering frames")
            if failures >= self._REOPEN_AFTER:
                self._cap.release()
                while not self._stop.wait(self._REOPEN_EVERY_S):
                    try:
                        self._cap = self._open()
                        break
                    except CameraError:
                        continue
                failures = 0
            else:
                self._stop.wait(0.05)  # an unplugged device fails at once: don't spin
        self._cap.release()

    def _grey(self, frame: np.ndarray) -> np.ndarray | None:
        """A grabbed frame as grey; None (and raw capture off from now on) if it is
        not laid out as the raw format says."""
        if not self.raw:
            # Converted by OpenCV; a raw frame grabbed before the switch is dropped.
            return to_grey(frame) if frame.ndim == 3 and frame.shape[2] in (3, 4) else None
        grey = v4l2_grey(frame, self.fourcc, *self._size)
        if grey is not None:
            return to_grey(grey)
        if self.fourcc in ("MJPG", "JPEG") and frame.ndim <= 2 and frame.shape[0] == 1:
            # A raw buffer that is not a whole JPEG (a USB glitch): skip the frame.
            self.counters.inc("corrupt_frames")
            return None
        # An OpenCV build or a pixel format that hands out something else: OpenCV
        # converts from here on. The grab thread makes the switch (a VideoCapture is
        # not to be used from two threads); this frame is converted as it is.
        self.raw = False
        self.counters.inc("raw_fallbacks")
        return to_grey(frame) if frame.ndim == 3 and frame.shape[2] in (3, 4) else None

    def read(self, timeout: float) -> np.ndarray | None:
        frame = self._frames.take(timeout, f"camera {self.device!r}")
        # Conversion only for frames actually consumed.
        return self._grey(frame) if frame is not None else None

    def close(self) -> None:
        self._stop.set()
        self._frames.close()
        self._thread.join(timeout=5.0)  # a read may be inside its V4L2 select timeout
