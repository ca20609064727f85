"""Every native library the gate loads does its job on this machine's CPU.

Run on x86 by the suite and on arm64 by scripts/check-arm64 (under qemu): a wheel
that installs but was built for the wrong CPU, or against a missing system
library, fails here rather than at a gate.
"""
from __future__ import annotations

import io
import platform

import numpy as np

from drivers.qr import ZxingDecoder, to_grey


def test_machine_is_named() -> None:
    # check-arm64 greps this line out of the log to show where the tests ran.
    print(f"platform: {platform.machine()} {platform.python_version()}")
    assert platform.machine() in {"x86_64", "aarch64", "armv7l", "arm64", "AMD64"}


def _qr_frame(text: str, angle: float = 0.0) -> np.ndarray:
    import cv2
    import segno

    buf = io.BytesIO()
    # make_qr: never a Micro QR code, which no camera pass uses and zbar cannot read.
    segno.make_qr(text, error="m").save(buf, kind="png", scale=6, border=4)
    img = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "OpenCV could not decode a PNG"
    # A camera-like frame: the code (turned by angle degrees) on a grey background.
    h, w = img.shape[:2]
    frame = np.full((480, 640, 3), 128, np.uint8)
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    frame[100:100 + h, 200:200 + w] = cv2.warpAffine(img, rot, (w, h), borderValue=(255, 255, 255))
    return frame


def test_opencv_and_zxing_read_a_code_in_a_frame() -> None:
    frame = _qr_frame("GP1.platform-check", angle=8)
    assert ZxingDecoder().decode(to_grey(frame)) == ["GP1.platform-check"]


def test_pyzbar_reads_the_same_code() -> None:
    from pyzbar import pyzbar

    found = pyzbar.decode(to_grey(_qr_frame("GP1.zbar")))
    assert [r.data.decode() for r in found] == ["GP1.zbar"]


def test_cryptography_signs_and_verifies_ed25519() -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    sig = key.sign(b"pass r1")
    key.public_key().verify(sig, b"pass r1")
    try:
        key.public_key().verify(sig, b"pass r2")
    except InvalidSignature:
        pass
    else:
        raise AssertionError("a signature verified for other data")


def test_orjson_and_pydantic_core_round_trip() -> None:
    import orjson
    from pydantic import BaseModel

    class Event(BaseModel):
        id: str
        temp_c: float

    raw = orjson.dumps({"id": "e1", "temp_c": 36.6, "name": "张三"})
    assert Event.model_validate_json(raw) == Event(id="e1", temp_c=36.6)
    assert orjson.loads(raw)["name"] == "张三"


def test_cel_evaluates_a_rule() -> None:
    from gate.core.rules import compile_expression

    import cel

    program = compile_expression("pass.attributes.vaccine_doses >= 2 && lane.direction == 'in'")
    ctx = cel.Context(variables={"pass": {"attributes": {"vaccine_doses": 2}}, "lane": {"direction": "in"}})
    assert program.execute(ctx) is True


def test_matplotlib_renders_a_png_without_a_display() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=50)
    fig.add_subplot().bar([1, 2, 3], [3, 1, 2])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    assert rgba.shape == (50, 100, 4) and rgba[..., :3].min() < 128  # bars were drawn


def test_numpy_linear_algebra() -> None:
    a = np.arange(16, dtype=np.float64).reshape(4, 4) + np.eye(4)
    assert np.allclose(a @ np.linalg.inv(a), np.eye(4))
