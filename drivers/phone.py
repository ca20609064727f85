"""Phone-screen frames: what a gate camera sees when a resident holds up a pass on a
phone. For tests and the bench (issue 19); the gate itself never renders these.

A phone screen is not a printed card, and each difference below is rendered,
with the ranges ``phone_set`` draws from (uniformly unless said otherwise):

* **Where** -- a 1280x720 camera with a 40 degree horizontal field of view
  (``HFOV_DEG``); the phone at 0.8-1.2 x arm's length (``ARM_MM`` = 600 mm) from
  it, its code's centre anywhere in the middle 50 % x 50 % of the frame. The app
  shows the pass as a 50 mm code with its 4-module quiet zone (``CODE_MM``) on a
  66 x 140 mm screen of 0.061 mm pixels (about 415 ppi) in a 72 x 150 mm dark
  body. A 134-character pass (QR version 8-M, 49 modules) then has about 2.1-3.2
  camera pixels per module, the band where a half-size copy stops reading.
* **Backlit** -- the screen's white is 1.5-3 x the scene's white (the camera is
  exposed for the scene), so it clips at 255; the screen's black is 2 % of its
  white plus 4 % of the scene reflected by the glass. Light above the clip level
  blooms: 0.05-0.3 of the excess, spread with a sigma of 1.5-3 px, is added back,
  lightening the dark modules next to bright ones.
* **Moire** -- each screen pixel is lit over 70 % x 85 % of its pitch (the gaps are
  a grid 30-60 % darker, ``grid``); the camera samples that grid at 2 x 2 points a
  pixel, so the grid aliases into a beat pattern as on a real sensor.
* **Glare** -- in 60 % of scenes a straight band of reflected light (radiance
  40-180 at its middle, a Gaussian 8-25 mm wide, 20 mm either side of the code's
  centre, any angle) crosses the screen.
* **Hand** -- roll -25..25 degrees, tilt -25..25 degrees about each screen axis
  (perspective), motion blur 0-4 px along any direction; between consecutive
  frames of a scene the hand trembles (+-1.5 px, +-0.4 degrees) and the blur
  varies by +-40 %.
* **Sensor** -- lens blur sigma 0.7 px, noise sigma 3-6 grey levels, fresh per
  frame. The scene behind is ``camera.render_scene`` (clutter, no code).
* **Lock screens** -- every fifth scene (index 4, 9, ...) shows a lock screen: a
  wallpaper gradient, a large clock, the date and two notification cards; no code.

Same ``seed``, same scenes and same pixels. Rendering costs about 20-40 ms a frame.
With these ranges `gate scan`'s decoder reads about half of the codes from one frame
and raw zxing-cpp about a third (bench ``scan.phone.*``); stronger bloom (0.3-0.9)
or motion (to 7 px) left almost nothing readable by any decoder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from drivers.camera import render_scene

WIDTH, HEIGHT = 1280, 720
HFOV_DEG = 40.0
ARM_MM = 600.0
SCREEN_MM = (66.0, 140.0)
BODY_MM = (72.0, 150.0)
PITCH_MM = 0.061  # one screen pixel
CODE_MM = 50.0  # the code with its quiet zone, as the app shows it
CODE_AT = 0.45  # the code's centre, as a fraction of the screen's height from its top
SCENE_WHITE = 200.0  # radiance of a white surface in the scene (camera units)
LOCK_EVERY = 5  # every fifth scene is a lock screen
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class PhoneShot:
    """One phone held up in front of the camera: everything that decides its frames."""

    text: str | None  # the pass on the screen; None: a lock screen
    distance: float  # x ARM_MM from the camera
    center: tuple[float, float]  # the code's (or the screen's) centre, fractions of the frame
    roll_deg: float
    tilt_deg: tuple[float, float]  # about the screen's horizontal and vertical axes
    screen_gain: float  # screen white / scene white
    bloom: float  # fraction of the clipped excess spread back
    bloom_sigma: float  # px
    grid: float  # how much darker the gaps between screen pixels are (0..1)
    glare: float  # radiance added at the middle of the glare band (0: none)
    glare_deg: float
    glare_offset_mm: float  # band's distance from the code's centre
    glare_width_mm: float
    motion_px: float
    motion_deg: float
    noise_sigma: float
    seed: int

    @property
    def has_code(self) -> bool:
        return self.text is not None


def pass_text(rng: np.random.Generator) -> str:
    """A resident's pass: ``GP1.`` and 130 base64url characters (QR version 8-M)."""
    return "GP1." + "".join(_B64[i] for i in rng.integers(0, 64, 130))


def phone_set(n: int, seed: int = 0) -> list[PhoneShot]:
    """``n`` phone scenes drawn from the ranges in the module docstring; every
    ``LOCK_EVERY``-th one (index 4, 9, ...) a lock screen."""
    rng = np.random.default_rng(seed)
    shots = []
    for i in range(n):
        u = rng.uniform
        glare = u(40, 180) if u() < 0.6 else 0.0
        text = pass_text(rng)
        shots.append(PhoneShot(
            text=None if i % LOCK_EVERY == LOCK_EVERY - 1 else text,
            distance=u(0.8, 1.2), center=(u(0.25, 0.75), u(0.25, 0.75)),
            roll_deg=u(-25, 25), tilt_deg=(u(-25, 25), u(-25, 25)),
            screen_gain=u(1.5, 3.0), bloom=u(0.05, 0.3), bloom_sigma=u(1.5, 3.0),
            grid=u(0.3, 0.6), glare=glare, glare_deg=u(0, 180), glare_offset_mm=u(-20, 20),
            glare_width_mm=u(8, 25), motion_px=u(0, 4), motion_deg=u(0, 180),
            noise_sigma=u(3, 6), seed=int(rng.integers(0, 2**31))))
    return shots


def phone_frames(shot: PhoneShot, n: int = 4) -> list[np.ndarray]:
    """``n`` consecutive grey 1280x720 frames of ``shot``: the same scene with the
    hand's tremor, a varying motion blur and fresh sensor noise."""
    rng = np.random.default_rng(shot.seed)
    scene = render_scene(WIDTH, HEIGHT, seed=shot.seed % 1000, noise_sigma=0.0,
                         blur_sigma=0.0).astype(np.float32)
    screen = _screen_texture(shot, rng)
    frames = []
    for k in range(n):
        jitter = shot if k == 0 else replace(
            shot,
            center=(shot.center[0] + rng.uniform(-1.5, 1.5) / WIDTH,
                    shot.center[1] + rng.uniform(-1.5, 1.5) / HEIGHT),
            roll_deg=shot.roll_deg + rng.uniform(-0.4, 0.4),
            motion_px=shot.motion_px * rng.uniform(0.6, 1.4))
        frames.append(_frame(jitter, scene, screen, rng))
    return frames


def render_phone(shot: PhoneShot) -> np.ndarray:
    """The first frame of ``shot``."""
    return phone_frames(shot, 1)[0]


# --- rendering ------------------------------------------------------------------------


def _screen_texture(shot: PhoneShot, rng: np.random.Generator) -> np.ndarray:
    """The screen's content in screen pixels, 0 (black) to 1 (white)."""
    import segno

    w, h = (round(s / PITCH_MM) for s in SCREEN_MM)
    if shot.text is None:
        # Lock screen: a wallpaper gradient, the clock, the date, notifications.
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a, b = rng.uniform(0.1, 0.6, 2)
        tex = (a + (b - a) * yy / h + 0.15 * np.sin(xx / w * rng.uniform(2, 6))).clip(0, 1)
        tex = (tex * 255).astype(np.uint8)  # OpenCV draws text on 8 bits only
        cv2.putText(tex, f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}",
                    (int(w * 0.12), int(h * 0.22)), cv2.FONT_HERSHEY_SIMPLEX, 9.0, 255, 22)
        cv2.putText(tex, "Thursday 3 December", (int(w * 0.18), int(h * 0.28)),
                    cv2.FONT_HERSHEY_SIMPLEX, 2.2, 242, 5)
        for top in (0.55, 0.68):
            y0 = int(h * top)
            cv2.rectangle(tex, (int(w * 0.06), y0), (int(w * 0.94), y0 + int(h * 0.1)), 230, -1)
            cv2.putText(tex, "Messages  2 new", (int(w * 0.1), y0 + int(h * 0.06)),
                        cv2.FONT_HERSHEY_SIMPLEX, 2.0, 50, 4)
        return tex.astype(np.float32) / 255
    tex = np.full((h, w), 255, np.uint8)
    modules = np.asarray(segno.make(shot.text, error="m", micro=False,
                                    boost_error=False).matrix, dtype=bool)
    n = modules.shape[0] + 8
    px = max(1, round(CODE_MM / PITCH_MM / n))  # whole screen pixels per module
    code = np.pad(np.where(modules, 0, 255).astype(np.uint8), 4, constant_values=255)
    code = np.repeat(np.repeat(code, px, 0), px, 1)
    cy, cx = round(h * CODE_AT), w // 2
    y0, x0 = cy - code.shape[0] // 2, cx - code.shape[1] // 2
    tex[y0:y0 + code.shape[0], x0:x0 + code.shape[1]] = code
    # The app around the code: a title bar, the holder's name, a button.
    cv2.rectangle(tex, (0, 0), (w, int(h * 0.09)), 90, -1)
    cv2.putText(tex, "Gate pass", (int(w * 0.06), int(h * 0.065)),
                cv2.FONT_HERSHEY_SIMPLEX, 3.0, 255, 6)
    cv2.putText(tex, "Zhang Wei  3-2-501", (int(w * 0.1), y0 + code.shape[0] + int(h * 0.06)),
                cv2.FONT_HERSHEY_SIMPLEX, 2.4, 25, 5)
    cv2.rectangle(tex, (int(w * 0.2), int(h * 0.85)), (int(w * 0.8), int(h * 0.92)), 64, -1)
    return tex.astype(np.float32) / 255


def _homography(shot: PhoneShot) -> np.ndarray:
    """Phone-plane millimetres (origin at the code's centre, y down) -> camera pixels."""
    f = (WIDTH / 2) / math.tan(math.radians(HFOV_DEG / 2))
    K = np.array([[f, 0, WIDTH / 2], [0, f, HEIGHT / 2], [0, 0, 1]])
    ax, ay = (math.radians(t) for t in shot.tilt_deg)
    az = math.radians(shot.roll_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    R = rz @ ry @ rx
    z = shot.distance * ARM_MM
    t = np.array([(shot.center[0] * WIDTH - WIDTH / 2) * z / f,
                  (shot.center[1] * HEIGHT - HEIGHT / 2) * z / f, z])
    return K @ np.column_stack([R[:, 0], R[:, 1], t])


def _frame(shot: PhoneShot, scene: np.ndarray, screen: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    H = _homography(shot)
    Hi = np.linalg.inv(H)
    sw, sh = SCREEN_MM
    bw, bh = BODY_MM
    code_y = -sh * CODE_AT + sh / 2  # the code's centre below the screen's centre, mm
    # The body's outline in camera pixels bounds the work.
    body = np.array([[-bw / 2, -bh / 2], [bw / 2, -bh / 2], [bw / 2, bh / 2], [-bw / 2, bh / 2]])
    body = body + [0, code_y]
    pts = cv2.perspectiveTransform(body[None].astype(np.float64), H)[0]
    x0, y0 = (max(0, int(v) - 2) for v in pts.min(axis=0))
    x1, y1 = int(min(WIDTH, pts[:, 0].max() + 3)), int(min(HEIGHT, pts[:, 1].max() + 3))
    radiance = scene.copy()
    if x1 > x0 and y1 > y0:
        ss = 2  # samples per camera pixel each way: the sensor's sampling of the grid
        ys, xs = np.mgrid[y0:y1:1 / ss, x0:x1:1 / ss].astype(np.float64)
        xs += 0.5 / ss
        ys += 0.5 / ss
        den = Hi[2, 0] * xs + Hi[2, 1] * ys + Hi[2, 2]
        u = (Hi[0, 0] * xs + Hi[0, 1] * ys + Hi[0, 2]) / den  # mm from the code's centre
        v = (Hi[1, 0] * xs + Hi[1, 1] * ys + Hi[1, 2]) / den
        vs = v - code_y  # from the screen's centre
        in_body = (np.abs(u) <= bw / 2) & (np.abs(vs) <= bh / 2)
        in_screen = (np.abs(u) < sw / 2) & (np.abs(vs) < sh / 2)
        # Screen pixel index and position inside it.
        pu = (u + sw / 2) / PITCH_MM
        pv = (vs + sh / 2) / PITCH_MM
        th, tw = screen.shape
        iu = np.clip(pu.astype(np.int64), 0, tw - 1)
        iv = np.clip(pv.astype(np.int64), 0, th - 1)
        lit = ((pu % 1.0) < 0.7) & ((pv % 1.0) < 0.85)
        white = SCENE_WHITE * shot.screen_gain
        content = screen[iv, iu] * white * np.where(lit, 1.0, 1.0 - shot.grid)
        reflected = 0.04 * scene[y0:y1, x0:x1].mean()
        light = content + 0.02 * white + reflected
        if shot.glare > 0:
            a = math.radians(shot.glare_deg)
            d = u * math.cos(a) + v * math.sin(a) - shot.glare_offset_mm
            light = light + shot.glare * np.exp(-0.5 * (d / (shot.glare_width_mm / 2)) ** 2)
        bezel = 18.0 + reflected
        here = np.where(in_screen, light, bezel)
        cover = in_body.astype(np.float32)
        # Average the ss x ss samples of each camera pixel (the sensor integrates).
        hh, ww = y1 - y0, x1 - x0
        lum = (here * cover).reshape(hh, ss, ww, ss).mean(axis=(1, 3))
        frac = cover.reshape(hh, ss, ww, ss).mean(axis=(1, 3))
        radiance[y0:y1, x0:x1] = radiance[y0:y1, x0:x1] * (1 - frac) + lum
    img = cv2.GaussianBlur(radiance, (0, 0), 0.7)  # the lens
    if shot.motion_px >= 1.0:
        img = cv2.filter2D(img, -1, _motion_kernel(shot.motion_px, shot.motion_deg))
    excess = np.maximum(img - 255.0, 0.0)
    if shot.bloom > 0 and excess.any():
        img = img + shot.bloom * cv2.GaussianBlur(excess, (0, 0), shot.bloom_sigma)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * shot.noise_sigma
    return np.clip(img, 0, 255).astype(np.uint8)


def _motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    n = int(math.ceil(length)) | 1
    k = np.zeros((n, n), np.float32)
    c = n // 2
    a = math.radians(angle_deg)
    dx, dy = math.cos(a) * (length - 1) / 2, math.sin(a) * (length - 1) / 2
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1,
             cv2.LINE_AA)
    return k / k.sum()
