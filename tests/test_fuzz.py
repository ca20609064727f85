"""Every parser that takes outside input, fuzzed: no input may crash the process;
every rejection is the parser's own, counted error.

CI runs a few hundred inputs each; `pytest -m long` (or GATE_FUZZ_EXAMPLES=10000)
runs the long form of at least 10,000 each."""
from __future__ import annotations

import json
import os
import random
import textwrap

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.thermometer import AsciiLineParser, Gy90614Parser, ModbusRtuParser, crc16_modbus, encode_frame
from drivers.wiegand import WiegandError, decode
from gate import config as cfgmod
from gate.drill import file as drill_file
from gate.config import ConfigError
from gate.core.tokens import KeyRing, PassToken, TokenError, sign
from sync import codec

N = int(os.environ.get("GATE_FUZZ_EXAMPLES", "300"))
LONG = 10_000
fuzz = settings(max_examples=N, deadline=None, database=None, suppress_health_check=list(HealthCheck))
long_fuzz = settings(max_examples=max(N, LONG), deadline=None, database=None, suppress_health_check=list(HealthCheck))

KEY = Ed25519PrivateKey.generate()
RING = KeyRing([KEY.public_key()])
GOOD_TOKEN = sign(PassToken("r1", "resident", "3-2-501"), KEY)


def mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(3)
        if op == 0 and b:
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        elif op == 1 and b:
            del b[rnd.randrange(len(b))]
        else:
            b.insert(rnd.randrange(len(b) + 1), rnd.randrange(256))
    return bytes(b)


def check_token(text: str) -> None:
    try:
        RING.verify(text)
    except TokenError as e:
        assert e.reason in ("malformed", "forged")


def check_payload(raw: bytes, kind: str) -> None:
    try:
        codec.decode(raw, kind, RING)
    except codec.PayloadError as e:
        assert e.reason in ("too_large", "malformed", "schema", "forged")


@fuzz
@given(st.text(max_size=400))
def test_fuzz_qr_text_as_pass_token(text: str) -> None:
    check_token(text)
    check_token("GP1." + text)
    check_token("GP2." + text)


@fuzz
@given(st.randoms(use_true_random=False))
def test_fuzz_mutated_tokens(rnd: random.Random) -> None:
    text = mutate(GOOD_TOKEN.encode(), rnd).decode("latin-1")
    check_token(text)


@fuzz
@given(st.binary(max_size=300))
def test_fuzz_serial_bytes(data: bytes) -> None:
    for parser in (Gy90614Parser(), AsciiLineParser()):
        frames = parser.feed(data)
        assert all(-70 <= f.object_c <= 383 for f in frames)


@fuzz
@given(st.randoms(use_true_random=False))
def test_fuzz_mutated_serial_frames(rnd: random.Random) -> None:
    good = b"".join(encode_frame(30 + rnd.random() * 10, 20 + rnd.random() * 5) for _ in range(5))
    Gy90614Parser().feed(mutate(good, rnd))
    AsciiLineParser().feed(mutate(b"36.50 24.10\n" * 3, rnd))


def _modbus_reply(tenths: int) -> bytes:
    body = bytes([1, 3, 2]) + tenths.to_bytes(2, "big", signed=True)
    return body + crc16_modbus(body).to_bytes(2, "little")


@fuzz
@given(st.binary(max_size=300))
def test_fuzz_modbus_replies(data: bytes) -> None:
    p = ModbusRtuParser(slave=1, register=0)
    frames = p.feed(data)
    assert all(-70 <= f.object_c <= 383 for f in frames)


@fuzz
@given(st.randoms(use_true_random=False))
def test_fuzz_mutated_modbus_replies(rnd: random.Random) -> None:
    good = b"".join(_modbus_reply(300 + rnd.randrange(100)) for _ in range(4))
    p = ModbusRtuParser(slave=1, register=0)
    p.feed(mutate(good, rnd))
    # A clean reply after the damage still reads.
    assert any(abs(f.object_c - 36.5) < 1e-6 for f in p.feed(_modbus_reply(365)))


@fuzz
@given(st.lists(st.integers(0, 1), max_size=64))
def test_fuzz_wiegand_bits(bits: list[int]) -> None:
    try:
        n = decode(bits)
    except WiegandError as e:
        assert e.reason in ("length", "parity")
    else:
        assert len(bits) in (26, 34) and n >= 0


PAYLOAD_KINDS = ("passes", "policy", "cmd", "snapshot_chunk", "event", "status", "report", "snapshot_request", "keylist")


@fuzz
@given(st.binary(max_size=500), st.sampled_from(PAYLOAD_KINDS))
def test_fuzz_mqtt_payload_bytes(raw: bytes, kind: str) -> None:
    check_payload(raw, kind)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@fuzz
@given(st.dictionaries(st.sampled_from(["type", "from_version", "to_version", "ts", "changes", "kid", "sig", "cmd", "gate", "nonce", "expires", "by", "policy", "version", "withdrawn", "notes"]) | st.text(max_size=8), json_values, max_size=10), st.sampled_from(PAYLOAD_KINDS))
def test_fuzz_mqtt_payload_json(obj: dict, kind: str) -> None:  # type: ignore[type-arg]
    check_payload(json.dumps(obj).encode(), kind)


@fuzz
@given(st.randoms(use_true_random=False))
def test_fuzz_signed_payloads_mutated(rnd: random.Random) -> None:
    good = codec.encode(codec.sign({"type": "passes", "from_version": 0, "to_version": 1, "ts": "2026-11-22T10:00:00+08:00",
                                    "changes": [{"op": "delete", "id": "x"}]}, KEY))
    check_payload(mutate(good, rnd), "passes")


@fuzz
@given(st.text(max_size=600))
def test_fuzz_config_text(text: str) -> None:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    try:
        cfgmod.from_dict(data, "fuzz.toml")
    except ConfigError as e:
        assert str(e).startswith("fuzz.toml")


@fuzz
@given(json_values)
def test_fuzz_config_structures(data: object) -> None:
    if not isinstance(data, dict):
        data = {"lanes": data}
    try:
        cfgmod.from_dict(data, "fuzz.toml")
    except ConfigError:
        pass


@fuzz
@given(st.text(max_size=600) | json_values.map(lambda v: json.dumps(v)))
def test_fuzz_drill_files(text: str) -> None:
    try:
        drill_file.parse(text, "fuzz.yaml")
    except ConfigError as e:
        assert str(e).startswith("fuzz.yaml")


@pytest.mark.long
@long_fuzz
@given(st.text(max_size=400))
def test_long_fuzz_tokens(text: str) -> None:
    check_token(text)
    check_token("GP1." + text)


@pytest.mark.long
@long_fuzz
@given(st.binary(max_size=500), st.sampled_from(PAYLOAD_KINDS))
def test_long_fuzz_payloads(raw: bytes, kind: str) -> None:
    check_payload(raw, kind)


@pytest.mark.long
@long_fuzz
@given(st.binary(max_size=300))
def test_long_fuzz_serial(data: bytes) -> None:
    Gy90614Parser().feed(data)
    AsciiLineParser().feed(data)
    ModbusRtuParser(slave=1, register=0).feed(data)


@pytest.mark.long
@long_fuzz
@given(st.text(max_size=600))
def test_long_fuzz_config_and_drills(text: str) -> None:
    test_fuzz_config_text.hypothesis.inner_test(text)  # type: ignore[attr-defined]
    try:
        drill_file.parse(text, "fuzz.yaml")
    except ConfigError:
        pass


@pytest.mark.long
@long_fuzz
@given(st.lists(st.integers(0, 1), max_size=64))
def test_long_fuzz_wiegand(bits: list[int]) -> None:
    test_fuzz_wiegand_bits.hypothesis.inner_test(bits)  # type: ignore[attr-defined]


def test_fuzz_lane_survives_any_qr_text_and_card() -> None:
    """Random QR texts and card numbers straight into a running lane: every one is
    refused and counted, and a real resident still gets in afterwards."""
    from gate.drill.runner import Rehearsal
    from gate.drill.file import Step
    from gate.core.events import CardRead, QrSeen

    d = drill_file.parse(textwrap.dedent("""
        name: fuzz lane
        start: "2026-11-22T10:00:00+08:00"
        passes: [{id: r1, holder: 王芳, unit: 3-2-501, category: resident}]
        """))
    rnd = random.Random(1)
    with Rehearsal(d) as r:
        lane = r.app.lanes["in"]
        n = min(N, 500)
        for i in range(n):
            kind = rnd.randrange(3)
            if kind == 0:
                text = "".join(chr(rnd.randrange(1, 0x3000)) for _ in range(rnd.randrange(0, 200)))
            elif kind == 1:
                text = mutate(r.tokens["r1"].encode(), rnd).decode("latin-1")
            else:
                text = "GP1." + "".join(rnd.choice("AZaz09-_") for _ in range(rnd.randrange(0, 300)))
            lane.post(QrSeen(text))
            lane.post(CardRead(str(rnd.randrange(10**10)), 34))
        lane.join()
        assert lane.alive and lane.counters.get("errors") == 0
        r.step(Step(at=100, lane="in", qr="r1"))
        r.step(Step(at=100.5, lane="in", temperature=36.5))
    reasons = [l["reason"] for l in r.lines if l["type"] == "decision"]
    assert reasons[-1] == "ok"
    assert set(reasons[:-1]) <= {"malformed", "forged", "unknown_card"}
    # A burst of unknown cards is a card sweep (DRILLS.md): an alarm, and what comes
    # faster than the throttle is counted, not answered. Nothing goes unaccounted.
    assert [l["kind"] for l in r.lines if l["type"] == "alarm"] == ["card_sweep"]
    assert len(reasons) - 1 + lane.counters.get("sweep_throttled") == 2 * n
