"""The live scan path on phones (issue 19) and at rest (issue 17): the phone-screen
frame set, the live decoder against `gate scan`'s on it, and the scanner skipping
frames in which nothing changed."""
from __future__ import annotations

import collections
import dataclasses
import threading

import numpy as np
import pytest

from drivers.camera import SimCamera, render, render_empty, render_scene
from drivers.phone import LOCK_EVERY, PhoneShot, phone_frames, phone_set
from drivers.qr import FastScanDecoder, QrScanner, ThoroughDecoder, make_decoder
from drivers.qr.idle import ChangeGate

TOKEN = "GP1." + ("Qm9va2luZy0xMjM0NTY3ODkw_-aZ" * 5)[:130]
SEED = 19  # the bench's set too


# --- the phone set --------------------------------------------------------------------

def test_phone_set_is_seeded_and_a_fifth_are_lock_screens() -> None:
    shots = phone_set(20, seed=3)
    assert shots == phone_set(20, seed=3)
    assert [s.text is None for s in shots] == [i % LOCK_EVERY == LOCK_EVERY - 1 for i in range(20)]
    assert all(0.8 <= s.distance <= 1.2 for s in shots)
    a, b = phone_frames(shots[0], 2), phone_frames(shots[0], 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == (720, 1280) and a[0].dtype == np.uint8
    assert not np.array_equal(a[0], a[1])  # the next frame: tremor and fresh noise


def test_phone_screen_clips_and_blooms_where_a_card_does_not() -> None:
    shot = phone_set(1, seed=3)[0]
    frame = phone_frames(shot, 1)[0]
    # The backlit screen clips: a patch of 255s around the code's centre...
    cx, cy = round(shot.center[0] * 1280), round(shot.center[1] * 720)
    patch = frame[cy - 60:cy + 60, cx - 60:cx + 60]
    assert (patch == 255).mean() > 0.2
    assert (render(TOKEN, 1280, 720) == 255).sum() == 0  # a printed card does not
    # ...and the light above the clip blooms into the dark modules next to it.
    plain = phone_frames(dataclasses.replace(shot, bloom=0.0), 1)[0][cy - 60:cy + 60, cx - 60:cx + 60]
    bloomed = phone_frames(dataclasses.replace(shot, bloom=0.3), 1)[0][cy - 60:cy + 60, cx - 60:cx + 60]
    dark = plain < 128
    assert bloomed[dark].mean() > plain[dark].mean() + 5


def _read_set(n: int) -> dict[str, object]:
    """Read a phone set as the bench does: the live decoder gets 4 consecutive
    frames of a scene, `gate scan`'s decoder its first frame."""
    thorough = ThoroughDecoder()
    out: dict[str, object] = {"live": 0, "thorough": 0, "plain": 0, "false": 0,
                              "slower": [], "first": collections.Counter()}
    for i, shot in enumerate(phone_set(n, seed=SEED)):
        frames = phone_frames(shot, 4)
        live, plain = FastScanDecoder(), FastScanDecoder(regions=False)
        seen = [live.decode(f) for f in frames]
        before = [plain.decode(f) for f in frames]
        still = thorough.decode(frames[0])
        wanted = {shot.text} if shot.text else set()
        out["false"] += sum(1 for s in [*seen, still] for t in s if t not in wanted)  # type: ignore[operator]
        if shot.text is None:
            continue
        at = next((k + 1 for k, s in enumerate(seen) if shot.text in s), None)
        was = next((k + 1 for k, s in enumerate(before) if shot.text in s), None)
        out["first"][at] += 1  # type: ignore[index]
        out["live"] += at is not None  # type: ignore[operator]
        out["plain"] += was is not None  # type: ignore[operator]
        out["thorough"] += shot.text in still  # type: ignore[operator]
        if was is not None and (at is None or at > max(2, was)):
            out["slower"].append(i)  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("n", [pytest.param(25, id="short"),
                               pytest.param(150, id="long", marks=pytest.mark.long)])
def test_live_decoder_reads_phones_as_well_as_gate_scan(n: int) -> None:
    got = _read_set(n)
    print(f"\nphone set of {n}: live {got['live']}, gate scan {got['thorough']}, "
          f"live before regions {got['plain']}; frames to read {dict(got['first'])}")  # type: ignore[call-overload]
    # Within 4 consecutive frames the live path reads at least what the still
    # decoder reads from one, and more than it used to (it read fewer than
    # `gate scan` on this set).
    assert got["live"] >= got["thorough"] > got["plain"]  # type: ignore[operator]
    # What it read before, it still reads within 2 frames (or as soon as before).
    assert got["slower"] == []
    # Lock screens, the scene behind, the other scenes: nothing but the pass.
    assert got["false"] == 0


def test_live_decoder_looks_harder_only_where_a_screen_is() -> None:
    dec = FastScanDecoder()
    for frame in (render_empty(1280, 720), render_scene(1280, 720, seed=1),
                  render_scene(1280, 720, seed=6), render(TOKEN, 1280, 720)):
        for _ in range(4):
            dec.decode(frame)
    assert dec.counters.get("regions") == 0
    shot = next(s for s in phone_set(10, seed=SEED) if s.text)
    for f in phone_frames(shot, 2):
        dec.decode(f)
    assert dec.counters.get("regions") >= 1


# --- idle: only frames that changed are decoded -----------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Frames:
    """A camera the test feeds frame by frame."""

    def __init__(self) -> None:
        self._q: collections.deque[np.ndarray] = collections.deque()
        self._cond = threading.Condition()
        self.fed = 0

    def feed(self, *frames: np.ndarray) -> None:
        with self._cond:
            self._q.extend(frames)
            self.fed += len(frames)
            self._cond.notify_all()

    def read(self, timeout: float) -> np.ndarray | None:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._q), timeout):
                return None
            return self._q.popleft()

    def close(self) -> None:
        pass


class Counting:
    """The live decoder, counting the frames it was given."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = FastScanDecoder()
        self.calls = 0

    @property
    def errors(self) -> int:
        return self.inner.errors

    @property
    def busy(self) -> bool:
        return self.inner.busy

    def restart(self) -> None:
        self.inner.restart()

    def decode(self, frame: np.ndarray) -> list[str]:
        self.calls += 1
        return self.inner.decode(frame)


@pytest.fixture
def lane():
    clock = Clock()
    cam = Frames()
    dec = Counting()
    codes: list[tuple[str, int]] = []
    gate = ChangeGate(clock=clock)
    scanner: QrScanner = QrScanner(
        cam, dec, lambda t: codes.append((t, scanner.counters.get("frames"))), idle=gate)
    scanner.start()

    def show(*frames: np.ndarray) -> None:
        cam.feed(*frames)
        assert scanner.progress.wait_for(cam.fed, 10.0)

    yield show, clock, dec, codes, scanner
    scanner.close()


EMPTY = [render_empty(1280, 720, seed=s) for s in range(6)]  # the same view, new noise


def test_unchanged_frames_are_not_decoded(lane) -> None:
    show, clock, dec, codes, scanner = lane
    show(*EMPTY, *EMPTY)
    assert dec.calls == 1  # the first frame; sensor noise is no change
    assert scanner.counters.get("skipped") == 11 and scanner.counters.get("frames") == 12


def test_a_code_that_appears_is_read_on_its_first_frame(lane) -> None:
    show, clock, dec, codes, scanner = lane
    far = render(TOKEN, 1280, 720, module_px=2, center=(0.6, 0.4))  # only full resolution reads it
    show(*EMPTY[:5], far, far, *EMPTY[:3])
    assert codes == [(TOKEN, 6)]
    # The changed frame was decoded, and the frames after it while the code was in
    # view; then the empty view again, after which nothing more.
    assert dec.calls == 1 + 2 + 1


def test_a_still_code_is_found_by_the_slow_full_check(lane) -> None:
    show, clock, dec, codes, scanner = lane
    far = render(TOKEN, 1280, 720, module_px=2, center=(0.6, 0.4))
    # Someone walks up (every frame changes: no frame is skipped, so the decoder
    # keeps its cycle) and holds a far code still where the half-size copy
    # cannot see it, on a frame without the full-resolution pass: missed.
    show(render_scene(1280, 720, seed=1), render_scene(1280, 720, seed=2), far, far, far)
    assert codes == [] and dec.calls == 3
    clock.t += 0.5  # within the check's period: still skipped
    show(far)
    assert codes == [] and dec.calls == 3
    clock.t += 0.5  # full_check_s since the last decoded frame: the slow full check
    show(far)
    assert codes == [(TOKEN, 7)]
    assert scanner.idle.reasons["check"] == 1


def test_presence_decodes_every_frame_until_it_ends(lane) -> None:
    show, clock, dec, codes, scanner = lane
    show(*EMPTY[:3])
    assert dec.calls == 1
    scanner.presence(True)  # the lane's PIR: someone is there
    show(*EMPTY[:4])
    assert dec.calls == 5
    scanner.presence(False)
    show(*EMPTY[:4])
    assert dec.calls == 5


def test_a_streaming_sim_camera_costs_next_to_nothing_at_rest() -> None:
    cam = SimCamera(1280, 720, stream_fps=300.0)
    dec = Counting()
    scanner = QrScanner(cam, dec, lambda t: None, idle=ChangeGate(clock=Clock())).start()
    try:
        assert scanner.progress.wait_for(40, 10.0)
    finally:
        scanner.close()
        cam.close()
    assert dec.calls == 1 and scanner.counters.get("skipped") >= 39


def test_a_phone_held_up_is_reported_once() -> None:
    def reads(shot: PhoneShot) -> bool:
        return shot.text in FastScanDecoder().decode(phone_frames(shot, 1)[0])

    shot = next(s for s in phone_set(10, seed=SEED) if s.text and reads(s))
    frames = phone_frames(shot, 8)
    rec: list[str] = []
    scanner = QrScanner(Frames(), make_decoder("auto"), rec.append)
    for f in frames:
        scanner._process(f)
    assert rec == [shot.text]
    assert scanner.counters.get("repeats") >= 1  # seen again on later frames, not reported
