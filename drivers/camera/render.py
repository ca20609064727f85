"""Synthetic camera frames for drills, tests and the bench: a QR code as a camera
sees it, an empty background, and a cluttered scene with no code in it."""
from __future__ import annotations

import cv2
import numpy as np

# Grey levels of a phone screen or paper pass as a camera sees them: never pure
# black or white, and a background a little darker than the pass itself.
_DARK, _LIGHT, _BACKGROUND = 40, 215, 165
_QUIET_ZONE = 4  # modules of light margin the QR standard asks for


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
