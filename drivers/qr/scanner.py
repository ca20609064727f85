"""``QrScanner``: a daemon thread that reads a frame source, decodes the frames worth
it and calls ``on_code(text)`` once per code held up; source faults go to ``on_fault``."""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Literal

import numpy as np

from drivers.base import Counters, FaultCallback, Progress, no_fault
from drivers.frames import FrameSource
from drivers.qr.base import Decoder
from drivers.qr.idle import ChangeGate

class QrScanner:
    """Reads frames on a daemon thread, decodes them and calls ``on_code(text)``.

    A text is suppressed while it was last seen (in any frame) less than ``hold_s``
    ago by ``now()``; every sighting refreshes that time, so a code held in front of
    the camera is reported once, and again only after it has been away for hold_s.
    ``now`` is injectable so drills can run on a simulated clock.

    Frames nothing changed in are not decoded (``idle``, a ``ChangeGate``; None
    decodes every frame): the lane's PIR says when someone is there
    (``presence``), and a slow full check finds a code held perfectly still.

    ``progress`` advances once per frame after its decode and callbacks return.
    ``counters``: frames, skipped (not decoded: unchanged), codes (reported),
    repeats (suppressed sightings), decode_errors, read_errors, callback_errors.
    """

    _FPS_WINDOW_S = 2.0  # real seconds of frame times behind the rolling fps

    def __init__(
        self,
        source: FrameSource,
        decoder: Decoder,
        on_code: Callable[[str], None],
        *,
        hold_s: float = 1.5,
        now: Callable[[], float] = time.monotonic,
        name: str = "camera",
        on_fault: FaultCallback = no_fault,
        idle: ChangeGate | None | Literal["default"] = "default",
    ) -> None:
        self.source = source
        self.idle = ChangeGate() if idle == "default" else idle
        self.decoder = decoder
        self.on_code = on_code
        self.hold_s = hold_s
        self.now = now
        self.name = name
        self.on_fault = on_fault
        self.progress = Progress()
        self.counters = Counters()
        self.last_frame_at: float | None = None  # time.monotonic() of the last frame
        self._last_seen: dict[str, float] = {}  # only touched by the scanner thread
        self._frame_times: collections.deque[float] = collections.deque(maxlen=120)
        self._times_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy: bool | None = None

    def start(self) -> QrScanner:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"qr-{self.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread. The source belongs to the caller and is not closed."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def presence(self, present: bool) -> None:
        """The lane's presence sensor: someone is in front of the camera (True:
        decode every frame) or has gone (False: only frames that changed, and the
        slow full check). Safe to call from any thread."""
        if self.idle is not None:
            self.idle.presence(present)

    @property
    def frame_age(self) -> float | None:
        """Real seconds since the last frame was processed (None before the first)."""
        last = self.last_frame_at
        return None if last is None else time.monotonic() - last

    @property
    def fps(self) -> float:
        """Frames per real second over the last couple of seconds (0 if stalled)."""
        cutoff = time.monotonic() - self._FPS_WINDOW_S
        with self._times_lock:
            recent = [t for t in self._frame_times if t >= cutoff]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read(timeout=0.5)
            except Exception as e:
                self.counters.inc("read_errors")
                self._set_health(False, f"frame read failed: {e!r}")
                self._stop.wait(0.5)  # a failing source must not spin the CPU
                continue
            if frame is None:
                continue
            try:
                self._process(frame)
            finally:
                self.progress.advance()

    def _process(self, frame: np.ndarray) -> None:
        """Decode one frame and report its new codes (the caller advances progress)."""
        t = time.monotonic()
        self.last_frame_at = t
        with self._times_lock:
            self._frame_times.append(t)
        self.counters.inc("frames")
        self._set_health(True, "frames arriving")

        gate = self.idle
        if gate is not None:
            try:
                verdict = gate.check(frame)
            except Exception:  # not an image: let the decoder count it
                verdict = None
            if verdict is not None and not verdict.decode:
                self.counters.inc("skipped")
                return
            if verdict is not None and verdict.fresh:
                restart = getattr(self.decoder, "restart", None)
                if restart is not None:
                    restart()  # something appeared: look at this frame fully
        errors_before = getattr(self.decoder, "errors", 0)
        failed = False
        try:
            texts = self.decoder.decode(frame)
        except Exception:  # a third-party decoder that breaks the contract
            self.counters.inc("decode_errors")
            texts = []
            failed = True
        swallowed = getattr(self.decoder, "errors", 0) - errors_before
        if swallowed > 0:
            self.counters.inc("decode_errors", swallowed)
        if gate is not None:
            gate.decoded(ok=not failed and swallowed <= 0, codes=bool(texts),
                         code_like=bool(getattr(self.decoder, "busy", False)))

        now = self.now()
        # Forget codes out of sight for hold_s; keeps the table small on a busy gate.
        for old in [k for k, seen in self._last_seen.items() if now - seen >= self.hold_s]:
            del self._last_seen[old]
        for text in dict.fromkeys(texts):  # the same code twice in one frame is one sighting
            seen = self._last_seen.get(text)
            self._last_seen[text] = now
            if seen is not None and now - seen < self.hold_s:
                self.counters.inc("repeats")
                continue
            self.counters.inc("codes")
            try:
                self.on_code(text)
            except Exception:
                # The lane's handler failing must not stop the camera.
                self.counters.inc("callback_errors")

    def _set_health(self, ok: bool, detail: str) -> None:
        if self._healthy is not ok:  # report changes only, not every frame
            self._healthy = ok
            self.on_fault(self.name, ok, detail)
