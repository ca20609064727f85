"""Dynamic QR passes: a code that changes every 30 s, signed by the holder's phone;
a photographed code is refused once it has let someone in, or once it is old."""
from __future__ import annotations

import textwrap

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from gate.core.tokens import KeyRing, PassToken, TokenError, dynamic_code, sign, time_step

DRILL = drill_file.parse(
    textwrap.dedent(
        """
        name: dynamic
        start: "2026-11-22T10:00:00+08:00"
        config: {policy: {passback: "off"}}
        passes:
          - {id: r1, holder: 王芳, unit: 3-2-501, category: resident}
        """
    )
)


def raw(pub: object) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)  # type: ignore[attr-defined]


def test_dynamic_codes_admit_once_per_step_and_refuse_old_ones() -> None:
    with Rehearsal(DRILL) as r:
        phone = Ed25519PrivateKey.generate()
        static = sign(PassToken("r1", "resident", "3-2-501", device_key=raw(phone.public_key())), r.keys.central)
        step0 = time_step(r.clock.now())
        code = dynamic_code(static, phone, step0)
        r.step(Step(at=0, lane="in", qr_text=code))
        r.step(Step(at=1, lane="in", temperature=36.5))
        # A photo of that code, shown by someone else 10 s later (same step): refused.
        r.step(Step(at=10, lane="in", qr_text=code))
        # The live code 40 s later (next step) works.
        r.advance(40)
        r.step(Step(at=40, lane="in", qr_text=dynamic_code(static, phone, time_step(r.clock.now()))))
        r.step(Step(at=41, lane="in", temperature=36.5))
        # A code from five minutes ago: refused.
        r.step(Step(at=400, lane="in", qr_text=dynamic_code(static, phone, step0)))
        # The pass's still picture (GP1) without its live code: refused as forged.
        r.step(Step(at=500, lane="in", qr_text=static))
        # A code signed by another phone: forged.
        r.advance(600)
        r.step(Step(at=600, lane="in", qr_text=dynamic_code(static, Ed25519PrivateKey.generate(), time_step(r.clock.now()))))
        counters = r.app.lanes["in"].counters.snapshot()
    got = [(l["pass"], l["decision"], l["reason"]) for l in r.lines if l["type"] == "decision"]
    assert got == [
        ("r1", "allow", "ok"),
        ("r1", "deny", "replayed"),
        ("r1", "allow", "ok"),
        ("r1", "deny", "replayed"),
        (None, "deny", "forged"),
        (None, "deny", "forged"),
    ]
    assert counters["replayed"] == 2
    assert any(l["type"] == "prompt" and l["key"] == "code_replayed" for l in r.lines)


def test_a_retry_after_a_refusal_in_the_same_step_is_not_a_replay() -> None:
    with Rehearsal(DRILL) as r:
        phone = Ed25519PrivateKey.generate()
        static = sign(PassToken("r1", "resident", "", device_key=raw(phone.public_key())), r.keys.central)
        code = dynamic_code(static, phone, time_step(r.clock.now()))
        r.step(Step(at=0, lane="in", qr_text=code))
        r.advance(10.5)  # no temperature: refused
        r.step(Step(at=12, lane="in", qr_text=code))  # same 30-s step, scanned again
        r.step(Step(at=12.5, lane="in", temperature=36.4))
    assert [l["reason"] for l in r.lines if l["type"] == "decision"] == ["no_temperature", "ok"]


def test_dynamic_code_format_is_checked() -> None:
    central, phone = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ring = KeyRing([central.public_key()])
    static = sign(PassToken("r9", "renter", "", device_key=raw(phone.public_key())), central)
    code = dynamic_code(static, phone, 123456)
    tok = ring.verify(code)
    assert (tok.pass_id, tok.step, tok.device_key) == ("r9", 123456, raw(phone.public_key()))
    assert len(code) < 300  # fits a QR a phone screen shows well
    for bad in (code[:-5], code[:10], "GP2." + code[4:][::-1]):
        try:
            ring.verify(bad)
        except TokenError as e:
            assert e.reason in ("malformed", "forged")
        else:
            raise AssertionError(f"accepted {bad!r}")
