"""Frame sources for the QR scanner: a simulated camera for drills and tests, image
folders and video files for replaying captures, a V4L2 (USB) camera, a Raspberry Pi
camera module through picamera2, and ``SupervisedCamera``, the watchdog that
reopens a live camera that stalled or was unplugged.

Every source returns 2-D uint8 greyscale frames from ``read(timeout)``, or None when
no frame arrived in time. Raspberry Pi CSI modules are not reachable through OpenCV
(libcamera): ``Picamera2Camera`` reads them.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Protocol

# A stalled V4L2 camera makes each OpenCV read wait 10 s by default (value in
# seconds). OpenCV reads the variable once per process, at the first V4L2 frame
# wait -- not at import -- so setting it here works even if cv2 is already imported,
# unless some V4L2 capture has already waited for a frame in this process. An
# operator's own setting wins (setdefault).
os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", "2")

import cv2  # noqa: E402  (after the variable, in case this is the first import)
import numpy as np  # noqa: E402

from drivers.base import Counters  # noqa: E402
from drivers.qr import to_grey  # noqa: E402

if TYPE_CHECKING:
    from drivers.qr import QrScanner

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pbm", ".tif",
                  ".tiff", ".webp")

# Grey levels of a phone screen or paper pass as a camera sees them: never pure
# black or white, and a background a little darker than the pass itself.
_DARK, _LIGHT, _BACKGROUND = 40, 215, 165
_QUIET_ZONE = 4  # modules of light margin the QR standard asks for


class CameraError(RuntimeError):
    """A frame source could not be opened, or stopped delivering frames."""


class FrameSource(Protocol):
    def read(self, timeout: float) -> np.ndarray | None:
        """The next greyscale frame, or None if none came within ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


def render(
    text: str | bytes,
    width: int = 640,
    height: int = 480,
    *,
    module_px: int | None = None,
    center: tuple[float, float] = (0.5, 0.5),
    noise_sigma: float = 4.0,
    blur_sigma: float = 0.6,
    seed: int = 0,
) -> np.ndarray:
    """A greyscale camera frame showing ``text`` as a QR code (error correction M;
    bytes are encoded as they are, for payloads that are not UTF-8).

    ``module_px`` defaults so the code spans about 40% of the frame height (at least
    2 px per module); ``center`` places the code's centre as fractions of the frame.
    Gaussian blur and noise make the decoder binarise a real-looking image. Same
    arguments, same pixels (``seed``). Raises ValueError if the code does not fit.
    """
    import segno  # lazy: only simulations render codes

    # micro=False: segno would pick a Micro QR for short texts, which phones and
    # the gate's decoder settings do not use. boost_error=False keeps level M.
    qr = segno.make(text, error="m", micro=False, boost_error=False)
    modules = np.asarray(qr.matrix, dtype=bool)
    n = modules.shape[0]
    if module_px is None:
        module_px = max(2, round(0.4 * height / n))
    code = np.where(modules, _DARK, _LIGHT).astype(np.uint8)
    code = np.pad(code, _QUIET_ZONE, constant_values=_LIGHT)
    code = np.repeat(np.repeat(code, module_px, axis=0), module_px, axis=1)

    ch, cw = code.shape
    top = round(center[1] * height - ch / 2)
    left = round(center[0] * width - cw / 2)
    if top < 0 or left < 0 or top + ch > height or left + cw > width:
        raise ValueError(f"a {ch}x{cw} px code ({n} modules x {module_px} px) does not "
                         f"fit a {width}x{height} frame at centre {center}")

    # A gentle left-to-right light gradient: uneven lighting is what makes
    # binarisers work, and a flat frame would be an easy special case.
    frame = np.empty((height, width), np.float32)
    frame[:] = _BACKGROUND + np.linspace(-12.0, 12.0, width, dtype=np.float32)
    frame[top:top + ch, left:left + cw] = code
    if blur_sigma > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), blur_sigma)
    if noise_sigma > 0:
        rng = np.random.default_rng(seed)
        frame += rng.standard_normal(frame.shape, dtype=np.float32) * noise_sigma
    return np.clip(frame, 0, 255).astype(np.uint8)


def render_empty(width: int = 640, height: int = 480, *, noise_sigma: float = 4.0,
                 seed: int = 0) -> np.ndarray:
    """A frame with nothing in it but the background, lighting gradient and noise."""
    frame = np.empty((height, width), np.float32)
    frame[:] = _BACKGROUND + np.linspace(-12.0, 12.0, width, dtype=np.float32)
    if noise_sigma > 0:
        rng = np.random.default_rng(seed)
        frame += rng.standard_normal(frame.shape, dtype=np.float32) * noise_sigma
    return np.clip(frame, 0, 255).astype(np.uint8)


def render_scene(width: int = 1280, height: int = 720, *, seed: int = 0,
                 noise_sigma: float = 4.0, blur_sigma: float = 0.8) -> np.ndarray:
    """A cluttered greyscale frame with no QR code in it: what a gate camera sees
    between people (walls and doors, signs with text, railings, striped clothes,
    cables), blurred and noisy like a sensor. The hard case for "no false
    positives" and a realistic one for the cost of an empty frame. Same seed, same
    pixels.
    """
    rng = np.random.default_rng(seed)
    s = max(width, height) / 1280  # clutter scales with the frame

    def ri(lo: float, hi: float) -> int:
        return int(rng.integers(int(lo), max(int(lo) + 1, int(hi))))

    # A daylight gradient across and down the frame.
    img = (np.linspace(90, 170, width, dtype=np.float32)[None, :]
           * np.linspace(0.85, 1.1, height, dtype=np.float32)[:, None]).astype(np.uint8)
    for _ in range(12):  # walls, doors, boxes
        x, y = ri(0, width), ri(0, height)
        cv2.rectangle(img, (x, y), (x + ri(40 * s, 400 * s), y + ri(40 * s, 400 * s)),
                      ri(20, 236), -1)
    for _ in range(6):  # heads, bags, lamps
        cv2.ellipse(img, (ri(0, width), ri(0, height)), (ri(20 * s, 200 * s), ri(20 * s, 200 * s)),
                    float(ri(0, 180)), 0, 360, ri(20, 236), -1)
    for _ in range(25):  # cables, railings, edges
        cv2.line(img, (ri(0, width), ri(0, height)), (ri(0, width), ri(0, height)),
                 ri(0, 256), ri(1, 6))
    for _ in range(4):  # striped cloth, barrier grilles: the edge-dense part
        x, y = ri(0, width - 100), ri(0, height - 100)
        patch = img[y:y + ri(60 * s, 300 * s), x:x + ri(60 * s, 300 * s)]
        period = ri(4, 16)
        patch[:, (np.arange(patch.shape[1]) // period) % 2 == 0] = ri(10, 80)
    words = ["GATE", "3-2-501", "EXIT", "PUSH", "NO ENTRY", "12:30", "TEMP 36.5", "ABCDEFG"]
    for _ in range(15):  # signs and printed text
        cv2.putText(img, words[ri(0, len(words))], (ri(0, width), ri(0, height)), ri(0, 8),
                    float(rng.uniform(0.5, 3.0)) * s, ri(0, 256), ri(1, 4))
    frame = img.astype(np.float32)
    if blur_sigma > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), blur_sigma)
    if noise_sigma > 0:
        frame += rng.standard_normal(frame.shape, dtype=np.float32) * noise_sigma
    return np.clip(frame, 0, 255).astype(np.uint8)


class SimCamera:
    """A camera that shows what a drill or test tells it to.

    ``show(text)`` queues frames of a held-up code followed by one empty frame;
    ``read()`` hands queued frames out first. With ``stream_fps`` > 0 it otherwise
    produces empty frames at that rate in real time (live demo), cycling through
    ``STREAM_VARIANTS`` renderings with different sensor noise, as a real sensor's
    frames differ (what a scanner skipping unchanged frames must cope with); with
    0 it waits up to the timeout and returns None. Frames are read-only and shared (rendered once
    per text and cached). Thread-safe.
    """

    _CACHE_SIZE = 256  # distinct texts kept rendered; a drill reuses a few hundred passes
    STREAM_VARIANTS = 4

    def __init__(self, width: int = 640, height: int = 480, *, stream_fps: float = 0.0,
                 module_px: int | None = None, noise_sigma: float = 4.0,
                 blur_sigma: float = 0.6, seed: int = 0) -> None:
        self.width = width
        self.height = height
        self.stream_fps = stream_fps
        self._render_args = dict(module_px=module_px, noise_sigma=noise_sigma,
                                 blur_sigma=blur_sigma, seed=seed)
        self._empty = _frozen(render_empty(width, height, noise_sigma=noise_sigma, seed=seed))
        self._stream: list[np.ndarray] = [self._empty]
        if stream_fps > 0:
            self._stream += [_frozen(render_empty(width, height, noise_sigma=noise_sigma,
                                                  seed=seed + 1 + i))
                             for i in range(self.STREAM_VARIANTS - 1)]
        self._cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._cond = threading.Condition()
        self._shown = 0
        self._next_stream_at: float | None = None
        self._closed = False

    def frame(self, text: str) -> np.ndarray:
        """The (cached, read-only) frame showing ``text``."""
        with self._cond:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        # Render outside the lock so a reader is not held up behind it.
        img = _frozen(render(text, self.width, self.height, **self._render_args))
        with self._cond:
            self._cache[text] = img
            while len(self._cache) > self._CACHE_SIZE:
                self._cache.popitem(last=False)
        return img

    def show(self, text: str, frames: int = 3) -> None:
        """Queue ``frames`` frames of the code held up, then one empty frame."""
        img = self.frame(text)
        self._enqueue([img] * frames + [self._empty])

    def show_empty(self, frames: int = 1) -> None:
        self._enqueue([self._empty] * frames)

    @property
    def frames_shown(self) -> int:
        """Frames queued plus empty frames streamed: what a scanner will have
        processed once it has caught up."""
        with self._cond:
            return self._shown

    def settle(self, scanner: QrScanner, timeout: float = 5.0) -> bool:
        """Wait until ``scanner`` has processed every frame shown so far."""
        return scanner.progress.wait_for(self.frames_shown, timeout)

    def read(self, timeout: float) -> np.ndarray | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                if self._queue:
                    return self._queue.popleft()
                now = time.monotonic()
                wake = deadline
                if self.stream_fps > 0:
                    period = 1.0 / self.stream_fps
                    # After an idle spell restart the schedule instead of bursting
                    # out every frame "missed".
                    if self._next_stream_at is None or self._next_stream_at < now - period:
                        self._next_stream_at = now
                    if now >= self._next_stream_at:
                        self._next_stream_at += period
                        self._shown += 1
                        return self._stream[self._shown % len(self._stream)]
                    wake = min(deadline, self._next_stream_at)
                if now >= deadline:
                    return None
                self._cond.wait(wake - now)
        return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()

    def _enqueue(self, frames: list[np.ndarray]) -> None:
        with self._cond:
            if self._closed:
                raise CameraError("SimCamera is closed")
            self._queue.extend(frames)
            self._shown += len(frames)
            self._cond.notify_all()


def _frozen(img: np.ndarray) -> np.ndarray:
    img.setflags(write=False)  # shared between reads: nobody may draw on it
    return img


class ImageFolderSource:
    """Each image file of a folder (sorted by name) as a frame, then nothing.

    Files OpenCV cannot read are skipped and counted in ``unreadable``. Once the
    folder is used up ``read`` waits out its timeout and returns None, like a camera
    with nothing in view, so a reading loop does not spin.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        folder = Path(path)
        if not folder.is_dir():
            raise CameraError(f"image folder {str(folder)!r} does not exist")
        self.files: list[Path] = sorted(
            f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        self.unreadable = 0
        self._next = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self.files)

    def read(self, timeout: float) -> np.ndarray | None:
        with self._lock:
            while not self._closed.is_set() and self._next < len(self.files):
                f = self.files[self._next]
                self._next += 1
                img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                if img is not None:
                    return img
                self.unreadable += 1
        self._closed.wait(timeout)
        return None

    def close(self) -> None:
        self._closed.set()


class VideoFileSource:
    """Frames of a video file, in greyscale; with ``loop`` it starts over at the end."""

    def __init__(self, path: str | os.PathLike[str], loop: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CameraError(f"video file {str(self.path)!r} does not exist")
        self.loop = loop
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"cannot open video file {str(self.path)!r}")
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.exhausted = False

    def read(self, timeout: float) -> np.ndarray | None:
        with self._lock:
            if not self._closed.is_set() and not self.exhausted:
                ok, frame = self._cap.read()
                if not ok and self.loop:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, frame = self._cap.read()
                if ok and frame is not None:
                    return to_grey(frame)
                self.exhausted = True
        self._closed.wait(timeout)  # end of file: behave like an idle camera
        return None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._cap.release()


class LatestFrame:
    """The hand-off between a camera's grab thread and its reader: only the newest
    frame is kept, each is handed out once, and a failing camera wakes the reader
    with the reason instead of leaving it to wait out its timeout."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._seq = 0  # frames put so far
        self._taken = 0  # seq of the last frame handed out
        self._failing: str | None = None
        self._closed = False

    def put(self, frame: np.ndarray) -> None:
        with self._cond:
            self._latest = frame
            self._seq += 1
            self._failing = None
            self._cond.notify_all()

    def fail(self, why: str) -> None:
        with self._cond:
            self._failing = why
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float, what: str) -> np.ndarray | None:
        """The next new frame; None on timeout or once closed; CameraError while failing."""
        with self._cond:
            fresh = self._cond.wait_for(
                lambda: self._seq > self._taken or self._failing is not None or self._closed, timeout)
            if not fresh or self._closed:
                return None
            if self._seq <= self._taken:
                raise CameraError(self._failing or f"{what} failed")
            self._taken = self._seq
            return self._latest


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


class SupervisedCamera:
    """A live camera that heals itself: the frame-age watchdog and reopen loop.

    ``opener`` makes the real source (a V4L2Camera, a Picamera2Camera). It is
    called lazily, so a gate whose camera is unplugged at boot still starts (its
    lane runs degraded) instead of failing. ``read`` raises CameraError when the
    camera cannot be opened, when a read fails, or when no frame has come for
    ``stall_s`` seconds (a hung USB camera delivers nothing and reports nothing);
    the QrScanner reports that as the camera's fault (``on_fault``: the lane's
    ``sensor_fault`` alarm). The broken source is closed and reopened after a
    backoff (``reopen_s``: first and longest wait, doubling between); the first
    frame after that reports the camera healthy again.

    ``frame_age`` (seconds since the last frame) and ``counters`` (opens,
    open_failures, stalls, read_failures) are for `gate doctor` and status.
    """

    def __init__(self, opener: Callable[[], FrameSource], *, stall_s: float = 3.0,
                 reopen_s: tuple[float, float] = (0.5, 10.0), name: str = "camera") -> None:
        if stall_s <= 0 or not 0 < reopen_s[0] <= reopen_s[1]:
            raise ValueError("need stall_s > 0 and reopen_s = (first, longest), 0 < first <= longest")
        self.opener = opener
        self.stall_s = stall_s
        self.reopen_s = reopen_s
        self.name = name
        self.counters = Counters()
        self.last_error: str | None = None
        self._source: FrameSource | None = None
        self._since: float | None = None  # last frame, or when the source was opened
        self._last_frame: float | None = None
        self._next_open = 0.0
        self._delay = reopen_s[0]
        self._lock = threading.Lock()  # one reader; close() may come from another thread
        self._closed = threading.Event()

    @property
    def is_open(self) -> bool:
        return self._source is not None

    @property
    def frame_age(self) -> float | None:
        """Seconds since the last frame (None before the first)."""
        last = self._last_frame
        return None if last is None else time.monotonic() - last

    def read(self, timeout: float) -> np.ndarray | None:
        if self._closed.is_set():
            self._closed.wait(timeout)
            return None
        with self._lock:
            if self._source is None:
                wait = self._next_open - time.monotonic()
                if wait > 0:  # backing off: the fault is already reported
                    self._closed.wait(min(wait, timeout))
                    return None
                self._open()
            source = self._source
            assert source is not None
            try:
                frame = source.read(timeout)
            except Exception as exc:
                if self._closed.is_set():
                    return None  # closed under the read: shutting down, not a fault
                self.counters.inc("read_failures")
                self._drop(f"camera {self.name!r} read failed: {exc}")
            if self._closed.is_set():
                return None
            now = time.monotonic()
            if frame is not None:
                self._since = self._last_frame = now
                self._delay = self.reopen_s[0]  # it works: the next outage starts afresh
                self.last_error = None
                return frame
            if self._since is not None and now - self._since >= self.stall_s:
                self.counters.inc("stalls")
                self._drop(f"camera {self.name!r}: no frame for {now - self._since:.1f} s "
                           "(stalled or unplugged); reopening")
            return None

    def _open(self) -> None:
        try:
            self._source = self.opener()
        except Exception as exc:
            self.counters.inc("open_failures")
            self._schedule_reopen()
            self.last_error = f"cannot open camera {self.name!r}: {exc}"
            raise CameraError(self.last_error) from exc
        self.counters.inc("opens")
        self._since = time.monotonic()

    def _drop(self, detail: str) -> NoReturn:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except Exception:
                pass
        self._schedule_reopen()
        self.last_error = detail
        raise CameraError(detail)

    def _schedule_reopen(self) -> None:
        self._next_open = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.reopen_s[1])

    def close(self) -> None:
        self._closed.set()
        source = self._source
        if source is not None:
            source.close()  # outside the lock: this wakes a read blocked in the source
        with self._lock:
            self._source = None
