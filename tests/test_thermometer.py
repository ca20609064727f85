"""Thermometer driver: byte protocol, detector, compensation, and the real serial path
(SimThermometer on a pseudo-terminal read by SerialThermometer through pyserial)."""
from __future__ import annotations

import queue
import threading
from typing import Callable

import pytest
import serial
from hypothesis import given, settings, strategies as st

from drivers.thermometer import (
    CMD_CONTINUOUS, CMD_QUERY, AsciiLineParser, Compensation, Frame, Gy90614Parser,
    Measurement, MeasurementDetector, ModbusRtuParser, SerialThermometer, SimThermometer,
    crc16_modbus, encode_frame, exception_response, read_holding_request, read_holding_response)

HEADER = bytes([0x5A, 0x5A, 0x45, 0x04])


# --- byte protocol ------------------------------------------------------------------------


def test_commands_are_the_documented_bytes() -> None:
    assert CMD_CONTINUOUS == bytes.fromhex("A545EA")
    assert CMD_QUERY == bytes.fromhex("A515BA")


def test_encode_matches_documented_layout() -> None:
    # 36.52 °C = 3652 = 0x0E44, 24.10 °C = 2410 = 0x096A, sum of bytes 0..7 = 0x1C2
    assert encode_frame(36.52, 24.10) == bytes.fromhex("5A5A45040E44096AC2")


@pytest.mark.parametrize("obj, amb", [(36.52, 24.1), (-12.34, -5.0), (-70.0, -40.0), (0.0, 0.01), (300.0, 125.0)])
def test_parser_round_trip_including_negative(obj: float, amb: float) -> None:
    p = Gy90614Parser()
    assert p.feed(encode_frame(obj, amb)) == [Frame(obj, amb)]
    assert p.counters.get("frames") == 1


def test_encode_rejects_values_beyond_int16() -> None:
    with pytest.raises(ValueError):
        encode_frame(400.0, 20.0)


def test_frame_split_across_feeds_byte_by_byte() -> None:
    p = Gy90614Parser()
    data = encode_frame(36.6, 21.0) + encode_frame(36.7, 21.0)
    out = [f for b in data for f in p.feed(bytes([b]))]
    assert out == [Frame(36.6, 21.0), Frame(36.7, 21.0)]


def test_no_single_byte_corruption_becomes_a_reading() -> None:
    good = encode_frame(36.5, 22.0)
    p = Gy90614Parser()
    for pos in range(len(good)):
        for mask in range(1, 256):
            bad = bytearray(good)
            bad[pos] ^= mask
            assert p.feed(bytes(bad)) == [], (pos, mask)
            p.feed(b"\x00" * 9)  # flush any held-back partial header
    # every corruption of bytes 4..8 leaves a header with a wrong checksum
    assert p.counters.get("bad_checksum") >= 5 * 255
    assert p.counters.get("frames") == 0


def test_bad_checksum_counted_and_next_frame_still_read() -> None:
    p = Gy90614Parser()
    bad = bytearray(encode_frame(39.9, 22.0))
    bad[-1] ^= 0xFF
    out = p.feed(bytes(bad) + encode_frame(36.4, 22.0))
    assert out == [Frame(36.4, 22.0)]
    assert p.counters.get("bad_checksum") == 1
    assert p.counters.get("garbage_bytes") == 9


def test_resync_after_garbage_including_fake_headers() -> None:
    p = Gy90614Parser()
    garbage = b"\x5a\x5a\x45\x5a\x5a\x45\x04\x01" + b"\xff\x00\x5a"
    out = p.feed(garbage + encode_frame(36.9, 23.0) + b"\x5a\x5a" + encode_frame(37.0, 23.0))
    assert out == [Frame(36.9, 23.0), Frame(37.0, 23.0)]


def test_checksum_valid_but_physically_impossible_frame_is_no_reading() -> None:
    p = Gy90614Parser()
    assert p.feed(encode_frame(20.0, 200.0) + encode_frame(-100.0, 20.0)) == []
    assert p.counters.get("out_of_range") == 2


def _reference_frames(data: bytes) -> list[Frame]:
    """Independent greedy scan: a frame is a header + 4 data bytes + correct checksum."""
    out, i = [], 0
    while i + 9 <= len(data):
        if data[i:i + 4] == HEADER and sum(data[i:i + 8]) & 0xFF == data[i + 8]:
            to = int.from_bytes(data[i + 4:i + 6], "big", signed=True) / 100
            ta = int.from_bytes(data[i + 6:i + 8], "big", signed=True) / 100
            if -70 <= to <= 382.2 and -40 <= ta <= 125:
                out.append(Frame(to, ta))
            i += 9
        else:
            i += 1
    return out


_pieces = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda o, a: encode_frame(o / 100, a / 100),
              st.integers(-7000, 32767), st.integers(-4000, 12500)),
    st.just(HEADER), st.just(HEADER[:2]),
    st.builds(lambda o, x: bytes(b ^ (x if k == 8 else 0) for k, b in enumerate(encode_frame(o / 100, 22.0))),
              st.integers(-7000, 5000), st.integers(1, 255)),
)


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(_pieces, max_size=12), cuts=st.lists(st.integers(1, 20), max_size=30))
def test_random_bytes_never_raise_and_only_embedded_frames_come_out(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    p = Gy90614Parser()
    out: list[Frame] = []
    pos = 0
    for c in cuts:  # arbitrary chunking must not change the result
        out += p.feed(data[pos:pos + c])
        pos += c
    out += p.feed(data[pos:])
    assert out == _reference_frames(data)
    c = p.counters
    # every byte is accounted for: read as a frame, range-rejected, garbage, or held back
    assert 9 * (c.get("frames") + c.get("out_of_range")) + c.get("garbage_bytes") + p.pending == len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_pure_noise_without_header_yields_nothing(data: bytes) -> None:
    p = Gy90614Parser()
    frames = p.feed(data)
    if HEADER not in data:
        assert frames == []


# --- ASCII lines ------------------------------------------------------------------------------


def test_ascii_good_lines() -> None:
    p = AsciiLineParser(assumed_ambient_c=25.0)
    out = p.feed(b"36.52\nT=36.52 A=24.10\r\n36.5,24.1\nTO:36.6C TA:22.0\n\n ta=21.5, to=-3.25 \n")
    assert out == [Frame(36.52, 25.0), Frame(36.52, 24.1), Frame(36.5, 24.1),
                   Frame(36.6, 22.0), Frame(-3.25, 21.5)]
    assert p.counters.get("frames") == 5
    assert p.counters.get("bad_lines") == 0


def test_ascii_line_split_across_chunks() -> None:
    p = AsciiLineParser()
    assert p.feed(b"T=36.") == []
    assert p.feed(b"7 A=2") == []
    assert p.feed(b"2.0\n") == [Frame(36.7, 22.0)]


def test_ascii_bad_lines_counted_never_raise() -> None:
    p = AsciiLineParser()
    bad = [b"hello", b"36.5.2", b"T=36.5 T=37.0", b"A=22.0", b"X=36.5", b"\xff\xfe36.5",
           b"999.0", b"36.5,24.1,3", b"nan", b"1e3"]
    out = p.feed(b"\n".join(bad) + b"\n" + b"9" * 500 + b"\n36.9\n")
    assert out == [Frame(36.9, 25.0)]  # the line after an overlong one is still read
    assert p.counters.get("bad_lines") == len(bad) + 1


def test_ascii_wrong_baud_rate_noise_without_newlines_is_counted() -> None:
    # at the wrong baud rate a line sensor produces bytes that may never contain \n
    p = AsciiLineParser()
    for _ in range(20):
        assert p.feed(bytes([0xE6, 0x80, 0x1E]) * 20) == []
    assert p.counters.get("bad_lines") >= 1


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_ascii_random_bytes_never_raise(data: bytes) -> None:
    AsciiLineParser().feed(data)


# --- compensation and detector -----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(body=st.floats(30, 45), amb=st.floats(-20, 45), off=st.floats(-3, 3), k=st.floats(0, 0.5))
def test_compensation_inverse(body: float, amb: float, off: float, k: float) -> None:
    c = Compensation(offset_c=off, ambient_ref_c=25.0, ambient_k=k)
    assert c.body(c.skin_for(body, amb), amb) == pytest.approx(body, abs=1e-9)


def test_compensation_cold_ambient_raises_estimate() -> None:
    c = Compensation(offset_c=0.5, ambient_ref_c=25.0, ambient_k=0.1)
    assert c.body(35.0, 25.0) == pytest.approx(35.5)
    assert c.body(35.0, 5.0) == pytest.approx(37.5)


def _feed(det: MeasurementDetector, objs: list[float], amb: float = 22.0) -> list[Measurement]:
    return [m for o in objs if (m := det.feed(Frame(o, amb))) is not None]


def test_detector_reports_median_not_mean() -> None:
    det = MeasurementDetector(Compensation(offset_c=1.0))
    ms = _feed(det, [36.0, 36.4, 41.0, 36.2, 36.3, 22.0])
    assert len(ms) == 1
    m = ms[0]
    assert m.object_c == pytest.approx(36.3)
    assert m.ambient_c == pytest.approx(22.0)
    assert m.body_c == pytest.approx(37.3)
    assert m.frames == 5


def test_detector_discards_short_presence() -> None:
    det = MeasurementDetector(Compensation(), min_frames=3)
    assert _feed(det, [36.0, 36.0, 22.0, 22.0]) == []
    assert det.counters.get("too_short") == 1
    assert len(_feed(det, [36.0, 36.0, 36.0, 22.0])) == 1


def test_detector_presence_threshold_is_relative_to_ambient() -> None:
    det = MeasurementDetector(Compensation(), presence_delta_c=3.0)
    assert _feed(det, [24.9] * 5 + [22.0], amb=22.0) == []  # 2.9 above ambient: nobody there
    assert len(_feed(det, [25.0] * 5 + [22.0], amb=22.0)) == 1


def test_detector_max_frames_emits_early_then_once_per_presence() -> None:
    det = MeasurementDetector(Compensation(), max_frames=14)
    ms = _feed(det, [36.5] * 13)
    assert ms == []
    ms = _feed(det, [36.5])  # 14th frame: emitted without waiting for the person to leave
    assert len(ms) == 1 and ms[0].frames == 14
    assert _feed(det, [36.5] * 30 + [22.0]) == []  # same presence: nothing more
    ms = _feed(det, [37.5] * 4 + [22.0])  # a new presence
    assert len(ms) == 1 and ms[0].object_c == pytest.approx(37.5)


def test_detector_reports_out_of_human_range_values() -> None:
    # a hot drink in front of the sensor is measured, not judged
    ms = _feed(MeasurementDetector(Compensation()), [55.0] * 5 + [22.0])
    assert ms[0].object_c == pytest.approx(55.0)


# --- real serial path ---------------------------------------------------------------------------


class Rig:
    """SimThermometer + SerialThermometer with queues for what the lane would see."""

    def __init__(self, *, stream: bool = False, rate_hz: float = 14.0, protocol: str = "gy-mcu90614",
                 compensation: Compensation = Compensation(), stale_s: float | None = None,
                 on_measurement: Callable[[Measurement], None] | None = None,
                 sim_kw: dict | None = None, **reader_kw) -> None:  # type: ignore[no-untyped-def]
        self.measurements: queue.Queue[Measurement] = queue.Queue()
        self.faults: queue.Queue[tuple[str, bool, str]] = queue.Queue()
        sim_kw = dict(sim_kw or {})
        if protocol == "modbus":
            sim_kw.setdefault("protocol", "modbus")
        self.sim = SimThermometer(ambient_c=22.0, rate_hz=rate_hz, stream=stream, **sim_kw)
        self.sim.start()
        self.reader = SerialThermometer(
            self.sim.port, protocol=protocol, compensation=compensation,  # type: ignore[arg-type]
            on_measurement=on_measurement or self.measurements.put,
            on_fault=lambda *a: self.faults.put(a), name="thermo-test",
            stale_s=stale_s, backoff_s=(0.02, 0.1), **reader_kw)
        self.reader.start()

    def close(self) -> None:
        self.reader.close()
        self.sim.close()

    def wait_continuous(self) -> None:
        assert self.sim.wait_continuous(5.0)

    def wait_open(self) -> None:
        # pyserial flushes the input on open: bytes written before that never arrive
        pause = threading.Event()
        for _ in range(250):
            if self.reader.healthy:
                return
            pause.wait(0.02)
        raise AssertionError("reader never opened the port")


@pytest.fixture
def rig():
    rigs: list[Rig] = []

    def make(**kw) -> Rig:
        r = Rig(**kw)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()


COMP = Compensation(offset_c=0.6, ambient_ref_c=25.0, ambient_k=0.08)


def test_end_to_end_measurement_through_pty(rig) -> None:
    r = rig(compensation=COMP)
    r.sim.present(36.5)
    assert r.sim.settle(r.reader)
    m = r.measurements.get(timeout=2)
    assert m.body_c == pytest.approx(COMP.body(36.5, 22.0), abs=0.01)
    assert m.frames == 7
    assert r.measurements.empty()  # one person, one measurement
    assert r.reader.last_measurement == m
    assert r.reader.healthy
    assert r.reader.counters.get("frames") == 9


def test_sim_skin_for_gives_the_wanted_body_temperature(rig) -> None:
    r = rig(compensation=COMP)
    for wanted in (36.4, 37.3, 38.6):
        r.sim.present(COMP.skin_for(wanted, r.sim.ambient_c))
        assert r.sim.settle(r.reader)
        assert r.measurements.get(timeout=2).body_c == pytest.approx(wanted, abs=0.01)


def test_garbage_between_frames_still_measures_correctly(rig) -> None:
    r = rig()
    r.wait_continuous()
    bad = bytearray(encode_frame(45.0, 22.0))
    bad[8] ^= 0x55
    for obj in (36.4, 36.6, 36.5, 36.7, 36.5):
        r.sim.write_raw(b"\x00\xffjunk\x5a\x5a" + encode_frame(obj, 22.0) + bytes(bad))
    r.sim.write_raw(encode_frame(22.0, 22.0))
    assert r.sim.settle(r.reader)
    m = r.measurements.get(timeout=2)
    assert m.object_c == pytest.approx(36.5) and m.frames == 5  # the corrupt 45 °C frames never counted
    assert r.reader.counters.get("bad_checksum") == 5
    assert r.reader.counters.get("garbage_bytes") > 0


def test_unplug_reports_fault_and_replug_recovers(rig) -> None:
    r = rig()
    r.sim.present(36.5)
    assert r.sim.settle(r.reader)
    r.measurements.get(timeout=2)
    assert r.faults.empty()  # a clean start reports nothing

    r.sim.unplug()
    name, ok, detail = r.faults.get(timeout=3)
    assert (name, ok) == ("thermo-test", False)
    assert detail
    assert not r.reader.healthy

    r.sim.replug()
    assert r.faults.get(timeout=3)[1:] == (True, "reconnected")
    r.sim.present(37.0)  # waits for the reader's continuous command on the new pty
    assert r.sim.settle(r.reader)
    assert r.measurements.get(timeout=2).object_c == pytest.approx(37.0)
    assert r.reader.healthy
    assert r.reader.counters.get("reopen") == 1
    assert r.faults.empty()  # no repeated reports while it was failing to reopen


def test_stream_mode_frames_but_no_measurement_from_ambient(rig) -> None:
    r = rig(stream=True, rate_hz=100.0, stale_s=3.0)
    r.wait_continuous()
    seen = threading.Event()
    while not seen.wait(0.02):
        if r.reader.counters.get("frames") >= 20:
            seen.set()
    assert r.reader.frames_per_s > 0
    assert r.measurements.empty()
    # a person stepping in is interleaved into the stream as one unbroken presence
    r.sim.present(36.8, frames=6)
    m = r.measurements.get(timeout=2)
    assert m.object_c == pytest.approx(36.8) and m.frames == 6
    assert r.faults.empty()


def test_stale_stream_is_a_fault_once_and_recovers(rig) -> None:
    r = rig(stale_s=0.2)  # stream=False: the simulated module stays silent
    name, ok, detail = r.faults.get(timeout=3)
    assert not ok and "no valid frame" in detail
    assert not r.reader.healthy
    with pytest.raises(queue.Empty):  # still silent, but state changes are reported once
        r.faults.get(timeout=0.5)
    assert r.reader.counters.get("stale") == 1
    stop = threading.Event()

    def frames() -> None:  # the module speaks again, and goes on speaking (0.2 s of silence is stale again)
        while True:
            r.sim.write_raw(encode_frame(22.0, 22.0))
            if stop.wait(0.05):
                return

    t = threading.Thread(target=frames, daemon=True)
    t.start()
    try:
        assert r.faults.get(timeout=3)[1:] == (True, "frames resumed")
        assert r.reader.healthy
    finally:
        stop.set()
        t.join()


def test_garbage_only_is_still_stale(rig) -> None:
    r = rig(stale_s=0.3)
    r.wait_continuous()
    stop = threading.Event()

    def noise() -> None:
        while not stop.wait(0.05):
            r.sim.write_raw(b"\x5a\x5a\x45\x04garbage!")

    t = threading.Thread(target=noise, daemon=True)
    t.start()
    try:
        assert r.faults.get(timeout=3)[1] is False
    finally:
        stop.set()
        t.join()


def test_ascii_protocol_end_to_end(rig) -> None:
    r = rig(protocol="ascii", compensation=COMP)
    r.wait_open()  # an ASCII reader sends no command, so wait until its port is open
    r.sim.write_raw(b"T=22.0 A=22.0\r\n" + b"T=36.20 A=21.0\r\n" * 4 + b"bogus\r\nT=22.0 A=21.0\r\n")
    assert r.sim.settle(r.reader)
    m = r.measurements.get(timeout=2)
    assert m.body_c == pytest.approx(COMP.body(36.2, 21.0), abs=0.01)
    assert r.reader.counters.get("bad_lines") == 1


def test_sim_answers_query_with_one_frame() -> None:
    sim = SimThermometer(ambient_c=19.5)
    sim.start()
    try:
        with serial.Serial(sim.port, 9600, timeout=2) as s:
            s.write(CMD_QUERY)
            assert Gy90614Parser().feed(s.read(9)) == [Frame(19.5, 19.5)]
    finally:
        sim.close()


def test_present_without_reader_fails_clearly() -> None:
    sim = SimThermometer(ready_timeout_s=0.2)
    sim.start()
    try:
        with pytest.raises(RuntimeError, match="continuous mode"):
            sim.present(36.5)
    finally:
        sim.close()


def test_port_is_held_exclusively_while_reading(rig) -> None:
    # A second program (or a second gate by mistake) cannot open the sensor's port
    # and steal its bytes while the reader has it.
    r = rig()
    r.wait_continuous()
    with pytest.raises(serial.SerialException, match="exclusively lock"):
        serial.Serial(r.sim.port, 9600, timeout=0.1, exclusive=True)
    assert r.reader.healthy


def test_close_releases_port_and_is_idempotent(rig) -> None:
    r = rig()
    r.wait_continuous()
    r.reader.close()
    r.reader.close()
    # the port was opened exclusively; after close someone else can have it
    with serial.Serial(r.sim.port, 9600, timeout=0.1, exclusive=True):
        pass
    assert not r.reader.healthy


def test_callback_exception_does_not_stop_the_reader(rig) -> None:
    calls: list[Measurement] = []

    def boom(m: Measurement) -> None:
        calls.append(m)
        raise RuntimeError("consumer bug")

    r = rig(on_measurement=boom)
    for obj in (36.5, 36.9):
        r.sim.present(obj)
        assert r.sim.settle(r.reader)
    assert [round(m.object_c, 2) for m in calls] == [36.5, 36.9]
    assert r.reader.counters.get("callback_errors") == 2


# --- Modbus RTU ----------------------------------------------------------------------------


def test_modbus_frames_are_the_documented_bytes() -> None:
    # The specification's examples: read 10 / 1 holding registers of slave 1 from 0.
    assert read_holding_request(1, 0, 10) == bytes.fromhex("01030000000AC5CD")
    assert read_holding_request(1, 0, 1) == bytes.fromhex("010300000001840A")
    assert crc16_modbus(b"123456789") == 0x4B37  # CRC-16/MODBUS check value
    # 36.5 °C and 22.0 °C as tenths: 365 = 0x016D, 220 = 0x00DC
    assert read_holding_response(1, [365, 220])[:7] == bytes.fromhex("010304016D00DC")


@pytest.mark.parametrize("slave, address, count", [(0, 0, 1), (248, 0, 1), (1, 0, 0), (1, 0, 126), (1, 65535, 2)])
def test_modbus_request_refuses_what_the_protocol_cannot_say(slave: int, address: int, count: int) -> None:
    with pytest.raises(ValueError):
        read_holding_request(slave, address, count)


def test_modbus_parser_reads_object_and_ambient_including_negative() -> None:
    p = ModbusRtuParser(slave=7, register=2, ambient_register=3)
    assert p.request() == read_holding_request(7, 2, 2)
    assert p.feed(read_holding_response(7, [365, 221])) == [Frame(36.5, 22.1)]
    assert p.feed(read_holding_response(7, [-125, -40])) == [Frame(-12.5, -4.0)]
    # Ambient register below the object one: still one request, values in register order.
    q = ModbusRtuParser(slave=1, register=5, ambient_register=4)
    assert q.request() == read_holding_request(1, 4, 2)
    assert q.feed(read_holding_response(1, [220, 366])) == [Frame(36.6, 22.0)]


def test_modbus_parser_without_ambient_register_assumes_reference() -> None:
    p = ModbusRtuParser(register=0, assumed_ambient_c=25.0)
    assert p.request() == read_holding_request(1, 0, 1)
    assert p.feed(read_holding_response(1, [368])) == [Frame(36.8, 25.0)]


def test_modbus_parser_byte_by_byte_with_noise_and_other_slaves() -> None:
    p = ModbusRtuParser(slave=1, register=0, ambient_register=1)
    data = (b"\x00\xff\x01"  # line noise, with our address in it
            + read_holding_response(2, [999, 999])  # another sensor on the bus
            + read_holding_response(1, [365, 220])
            + exception_response(1, 0x03, 0x02)  # a refusal
            + read_holding_response(1, [366, 220]))
    out = [f for b in data for f in p.feed(bytes([b]))]
    assert out == [Frame(36.5, 22.0), Frame(36.6, 22.0)]
    assert p.counters.get("modbus_exception") == 1 and p.last_exception == 0x02
    assert p.counters.get("garbage_bytes") > 0


def test_modbus_no_single_byte_corruption_becomes_a_reading() -> None:
    good = read_holding_response(1, [365, 220])
    p = ModbusRtuParser(slave=1, register=0, ambient_register=1)
    for pos in range(len(good)):
        for mask in range(1, 256):
            bad = bytearray(good)
            bad[pos] ^= mask
            assert p.feed(bytes(bad)) == [], (pos, mask)
            p.feed(b"\x00" * 9)  # flush anything held back
    assert p.counters.get("bad_crc") > 0


def test_modbus_sim_answers_real_requests_on_the_line() -> None:
    sim = SimThermometer(ambient_c=21.5, protocol="modbus", slave=3, register=0, ambient_register=1)
    sim.start()
    try:
        with serial.Serial(sim.port, 9600, timeout=2) as s:
            s.write(read_holding_request(3, 0, 2))
            assert s.read(9) == read_holding_response(3, [215, 215])
            s.write(read_holding_request(4, 0, 2))  # not its address: silence
            s.write(read_holding_request(3, 0, 40))  # beyond its registers
            assert s.read(5) == exception_response(3, 0x03, 0x02)
            s.write(with_crc_bytes(bytes([3, 0x06, 0, 0, 0, 1])))  # write register: not supported
            assert s.read(5) == exception_response(3, 0x06, 0x01)
        assert sim.polls == 3
    finally:
        sim.close()


def with_crc_bytes(body: bytes) -> bytes:
    return body + crc16_modbus(body).to_bytes(2, "little")


def test_modbus_end_to_end_measurement_through_pty(rig) -> None:
    r = rig(protocol="modbus", compensation=COMP, ambient_register=1, poll_hz=50.0)
    r.sim.present(36.5)
    assert r.sim.settle(r.reader)
    m = r.measurements.get(timeout=2)
    assert m.body_c == pytest.approx(COMP.body(36.5, 22.0), abs=0.01)
    assert m.frames == 7
    assert r.reader.last_frame is not None and r.reader.healthy
    assert r.sim.polls >= 9


def test_modbus_sensor_without_ambient_register(rig) -> None:
    comp = Compensation(offset_c=0.5, ambient_ref_c=24.0, ambient_k=0.1)
    r = rig(protocol="modbus", compensation=comp, poll_hz=50.0,
            sim_kw={"ambient_register": None})
    r.sim.present(comp.skin_for(37.0, 24.0), frames=5)
    assert r.sim.settle(r.reader)
    # Without an ambient reading the ambient term is zero; presence is judged
    # against the reference temperature.
    assert r.measurements.get(timeout=2).body_c == pytest.approx(37.0, abs=0.06)


def test_modbus_wrong_slave_address_is_a_stale_sensor(rig) -> None:
    r = rig(protocol="modbus", stale_s=0.3, slave=9, poll_hz=20.0)  # the sim is slave 1
    name, ok, detail = r.faults.get(timeout=3)
    assert not ok and "no valid frame" in detail
    assert r.sim.polls == 0  # it never answered another slave's polls


def test_modbus_refused_register_is_counted_and_stale(rig) -> None:
    r = rig(protocol="modbus", stale_s=0.3, register=40, poll_hz=20.0)
    assert r.faults.get(timeout=3)[1] is False
    assert r.reader.counters.get("modbus_exception") >= 1


def test_modbus_unplug_and_replug(rig) -> None:
    r = rig(protocol="modbus", poll_hz=50.0, ambient_register=1)
    r.sim.present(36.5)
    assert r.sim.settle(r.reader)
    r.measurements.get(timeout=2)
    r.sim.unplug()
    assert r.faults.get(timeout=3)[1] is False
    r.sim.replug()
    assert r.faults.get(timeout=3)[1:] == (True, "reconnected")
    r.sim.present(37.1)
    assert r.sim.settle(r.reader)
    assert r.measurements.get(timeout=2).object_c == pytest.approx(37.1)


def test_on_frame_sees_every_reading_and_hold_keeps_a_target(rig) -> None:
    frames: list[Frame] = []
    r = rig(stream=True, rate_hz=200.0, on_frame=frames.append)
    r.wait_continuous()
    r.sim.hold(36.2)  # a blackbody in front of the sensor
    deadline = threading.Event()
    for _ in range(250):
        if sum(1 for f in frames if f.object_c == 36.2) >= 10:
            break
        deadline.wait(0.02)
    assert sum(1 for f in frames if f.object_c == 36.2) >= 10
    assert r.reader.last_frame is not None
    r.sim.hold(None)
