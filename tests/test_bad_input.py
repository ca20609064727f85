"""Garbage at every input is counted, logged and survived: the lane keeps deciding."""
from __future__ import annotations

import base64
import logging
import random
import textwrap

import pytest

from drivers.thermometer import encode_frame
from drivers.wiegand import encode
from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step

DRILL = drill_file.parse(
    textwrap.dedent(
        """
        name: bad input
        start: "2026-11-22T10:00:00+08:00"
        passes:
          - {id: r1, holder: 王芳, unit: 3-2-501, category: resident, card: "1234567"}
          - {id: r2, holder: 王强, unit: 3-2-502, category: resident}
        """
    )
)


def decisions(r: Rehearsal) -> list[tuple[str | None, str, str]]:
    return [(l["pass"], l["decision"], l["reason"]) for l in r.lines if l["type"] == "decision"]


def test_garbage_and_forged_qr_are_refused_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with Rehearsal(DRILL) as r:
        r.step(Step(at=0, lane="in", qr_text="hello"))
        r.step(Step(at=1, lane="in", qr_text="GP1.%%%not-base64%%%"))
        # A valid shape with a signature that does not match: flip one signature byte.
        good = r.tokens["r1"]
        blob = bytearray(base64.urlsafe_b64decode(good[4:] + "=" * (-len(good[4:]) % 4)))
        blob[-1] ^= 0x01
        r.step(Step(at=2, lane="in", qr_text="GP1." + base64.urlsafe_b64encode(bytes(blob)).rstrip(b"=").decode()))
        r.step(Step(at=3, lane="in", qr_text="\x00\x01binary\xff payload"))
        r.step(Step(at=10, lane="in", qr="r1"))
        r.step(Step(at=11, lane="in", temperature=36.5))
        counters = r.app.lanes["in"].counters.snapshot()
        assert r.app.lanes["in"].alive
    assert decisions(r) == [
        (None, "deny", "malformed"),
        (None, "deny", "malformed"),
        (None, "deny", "forged"),
        (None, "deny", "malformed"),
        ("r1", "allow", "ok"),
    ]
    assert counters["malformed"] == 3 and counters["forged"] == 1
    assert sum("QR refused" in rec.message for rec in caplog.records) == 4


def test_bad_checksum_frame_never_becomes_a_reading() -> None:
    with Rehearsal(DRILL) as r:
        dev = r.app.devices["in"]
        r.step(Step(at=0, lane="in", qr="r1"))
        # A person's frames, each with a broken checksum, then ambient frames.
        body = dev.compensation.skin_for(36.5, dev.ambient_c)
        bad = b"".join(encode_frame(body, dev.ambient_c)[:-1] + bytes([(encode_frame(body, dev.ambient_c)[-1] + 1) % 256]) for _ in range(7))
        dev.sim_thermometer.write_raw(bad + encode_frame(dev.ambient_c, dev.ambient_c) * 2)
        assert dev.sim_thermometer.settle(dev.thermometer, 5)
        r.app.join()
        r.finish()
        counts = dev.thermometer.counters.snapshot()
    assert counts["bad_checksum"] >= 7
    assert decisions(r) == [("r1", "deny", "no_temperature")]


def test_random_bytes_on_the_serial_line_are_survived() -> None:
    rng = random.Random(7)
    with Rehearsal(DRILL) as r:
        dev = r.app.devices["in"]
        dev.sim_thermometer.write_raw(bytes(rng.randrange(256) for _ in range(4000)))
        assert dev.sim_thermometer.settle(dev.thermometer, 5)
        r.step(Step(at=5, lane="in", qr="r2"))
        r.step(Step(at=6, lane="in", temperature=36.8))
        garbage = dev.thermometer.counters.get("garbage_bytes")
        assert dev.thermometer.healthy
    assert garbage > 3000
    assert decisions(r) == [("r2", "allow", "ok")]
    assert next(l for l in r.lines if l["type"] == "decision")["temperature_c"] == 36.8


@pytest.mark.parametrize(
    "train, counter",
    [
        ([1 - b if i == 5 else b for i, b in enumerate(encode(1234567, 26))], "parity"),
        (encode(1234567, 26)[:-3], "length"),
        ([1, 0, 1] * 20, "length"),
    ],
    ids=["parity", "short", "long"],
)
def test_broken_wiegand_train_is_dropped_and_counted(train: list[int], counter: str) -> None:
    with Rehearsal(DRILL) as r:
        dev = r.app.devices["in"]
        dev.sim_wiegand.send_bits(train)
        assert dev.sim_wiegand.settle(dev.wiegand, 5)
        r.app.join()
        assert decisions(r) == []  # nothing became a card
        r.step(Step(at=1, lane="in", card="1234567"))
        r.step(Step(at=2, lane="in", temperature=36.4))
        count = dev.wiegand.counters.get(counter)
    assert count == 1
    assert decisions(r) == [("r1", "allow", "ok")]
