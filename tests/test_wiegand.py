"""Wiegand frames: the bit format against published examples, and a reader on
mock pins fed by the simulator."""
from __future__ import annotations

import logging
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.gpio import MockFactory
from drivers.wiegand import SimWiegandReader, WiegandError, WiegandReader, decode, encode

D0, D1 = 23, 24


def bits_of(text: str) -> list[int]:
    return [int(c) for c in text.replace(" ", "")]


# ---------------------------------------------------------------- bit format

# Published examples:
# - Allegion KB "How are the even parity bit and odd parity bit calculated in the
#   26A format": facility 101, card 4095 -> 0 01100101 0000111111111111 1
# - Civintec CN56 reader manual, 6.4.2 / 6.4.5: data D41B81 (26-bit) and
#   89D41B81 (34-bit)
KNOWN = [
    ("0 01100101 0000111111111111 1", (101 << 16) | 4095),
    ("1 11010100 00011011 10000001 0", 0xD41B81),
    ("1 10001001 11010100 00011011 10000001 1", 0x89D41B81),
]


@pytest.mark.parametrize("frame,number", KNOWN)
def test_published_frames(frame, number):
    bits = bits_of(frame)
    assert encode(number, len(bits)) == bits
    assert decode(bits) == number


def test_facility_and_number_read_as_one_card_number():
    # Readers print the 24 data bits as one number: facility 18, number 54919.
    assert decode(encode((18 << 16) | 54919)) == 1234567


@given(st.integers(0, 2**24 - 1))
def test_26_bit_round_trip(number):
    bits = encode(number, 26)
    assert len(bits) == 26
    assert decode(bits) == number


@given(st.integers(0, 2**32 - 1))
def test_34_bit_round_trip(number):
    bits = encode(number, 34)
    assert len(bits) == 34
    assert decode(bits) == number


@st.composite
def frame_and_position(draw):
    length = draw(st.sampled_from([26, 34]))
    number = draw(st.integers(0, 2 ** (length - 2) - 1))
    return number, length, draw(st.integers(0, length - 1))


@given(frame_and_position())
def test_any_single_flipped_bit_is_a_parity_error(case):
    number, length, flip = case
    bits = encode(number, length)
    bits[flip] ^= 1
    with pytest.raises(WiegandError) as err:
        decode(bits)
    assert err.value.reason == "parity"


@pytest.mark.parametrize("length", [0, 1, 25, 27, 32, 33, 35, 37])
def test_other_lengths_are_length_errors(length):
    with pytest.raises(WiegandError) as err:
        decode([1] * length)
    assert err.value.reason == "length"


@pytest.mark.parametrize("number,bits", [(2**24, 26), (-1, 26), (2**32, 34)])
def test_encode_refuses_numbers_that_do_not_fit(number, bits):
    with pytest.raises(ValueError):
        encode(number, bits)


def test_encode_refuses_other_formats():
    with pytest.raises(ValueError):
        encode(5, 37)


# -------------------------------------------------------------------- reader


class Cards:
    """on_card sink that also notes how far the reader's progress was at each call."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.progress_at_call: list[int] = []
        self.threads: set[str] = set()
        self.reader: WiegandReader | None = None

    def __call__(self, number: str, bits: int) -> None:
        self.seen.append((number, bits))
        self.threads.add(threading.current_thread().name)
        if self.reader is not None:
            self.progress_at_call.append(self.reader.progress.value)


@pytest.fixture
def rig():
    factory = MockFactory()
    cards = Cards()
    reader = WiegandReader(factory.input(D0, pull="up"), factory.input(D1, pull="up"), cards)
    cards.reader = reader
    sim = SimWiegandReader(factory, D0, D1)
    yield sim, reader, cards
    reader.close()


def test_a_swipe_is_one_card(rig):
    sim, reader, cards = rig
    sim.swipe(1234567)
    assert sim.settle(reader)
    assert cards.seen == [("1234567", 26)]
    assert cards.threads == {"wiegand-card_reader"}  # not on the GPIO callback thread
    assert reader.counters.snapshot() == {"cards": 1, "length": 0, "parity": 0}


def test_large_numbers_go_out_as_34_bit(rig):
    sim, reader, cards = rig
    sim.swipe(0x89D41B81)
    assert sim.settle(reader)
    assert cards.seen == [(str(0x89D41B81), 34)]


def test_two_swipes_back_to_back_are_two_cards_in_order(rig):
    sim, reader, cards = rig
    sim.swipe(1)
    sim.swipe(16777215)
    sim.swipe(42, bits=34)
    assert sim.settle(reader)
    assert cards.seen == [("1", 26), ("16777215", 26), ("42", 34)]
    assert cards.progress_at_call == [0, 1, 2]  # progress moves only after on_card returns
    assert reader.progress.value == 3


def test_bad_frames_are_dropped_counted_and_logged_and_reading_goes_on(rig, caplog):
    sim, reader, cards = rig
    corrupt = encode(1234567)
    corrupt[5] ^= 1
    with caplog.at_level(logging.WARNING, logger="drivers.wiegand"):
        sim.send_bits(corrupt)
        sim.send_bits([1, 0] * 12)  # 24 bits: a frame cut short
        sim.send_bits(encode(7654321))
        assert sim.settle(reader)
    assert cards.seen == [("7654321", 26)]
    assert reader.counters.snapshot() == {"cards": 1, "length": 1, "parity": 1}
    assert reader.progress.value == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("26-bit" in m and "parity" in m for m in messages)
    assert any("24-bit" in m and "length" in m for m in messages)
    assert "1234567" not in " ".join(messages)


def test_frames_are_split_by_edge_timestamps_without_waiting_for_silence():
    # Real-time silence of 60 s would never end a frame within this test:
    # only the edge timestamps can have split the first swipe off.
    factory = MockFactory()
    cards = Cards()
    reader = WiegandReader(
        factory.input(D0, pull="up"), factory.input(D1, pull="up"), cards, silence_ms=60_000
    )
    sim = SimWiegandReader(factory, D0, D1, frame_gap_ms=61_000)
    try:
        sim.swipe(111)
        sim.swipe(222)
        assert reader.progress.wait_for(1, timeout=5.0)
        assert cards.seen == [("111", 26)]
    finally:
        reader.close()


def test_a_failing_on_card_does_not_stop_the_reader(caplog):
    factory = MockFactory()
    seen: list[str] = []

    def on_card(number: str, bits: int) -> None:
        seen.append(number)
        if len(seen) == 1:
            raise RuntimeError("queue full")

    reader = WiegandReader(factory.input(D0, pull="up"), factory.input(D1, pull="up"), on_card)
    sim = SimWiegandReader(factory, D0, D1)
    try:
        with caplog.at_level(logging.ERROR, logger="drivers.wiegand"):
            sim.swipe(1)
            sim.swipe(2)
            assert sim.settle(reader)
        assert seen == ["1", "2"]
        assert "on_card failed" in caplog.text
    finally:
        reader.close()


def test_close_stops_the_thread_and_lets_go_of_the_pins():
    factory = MockFactory()
    d0, d1 = factory.input(D0, pull="up"), factory.input(D1, pull="up")
    seen: list[str] = []
    reader = WiegandReader(d0, d1, lambda n, b: seen.append(n), name="lane1_reader")
    assert any(t.name == "wiegand-lane1_reader" for t in threading.enumerate())
    reader.close()
    reader.close()  # idempotent
    assert not any(t.name == "wiegand-lane1_reader" for t in threading.enumerate())
    assert d0.when_edge is None and d1.when_edge is None
    SimWiegandReader(factory, D0, D1).swipe(5)
    assert seen == []


def test_sim_trains_look_like_a_reader():
    # Lines idle high, 50 us low pulses 2 ms apart, D0 for a 0 and D1 for a 1.
    factory = MockFactory()
    edges: list[tuple[int, int, int]] = []  # (t_ns, line, level)
    for line, number in ((0, D0), (1, D1)):
        pin = factory.input(number, pull="up")
        pin.when_edge = (lambda ln: lambda level, t: edges.append((t, ln, level)))(line)
    sim = SimWiegandReader(factory, D0, D1)
    sim.send_bits([1, 0, 1])
    edges.sort()
    assert [(ln, lv) for _, ln, lv in edges] == [(1, 0), (1, 1), (0, 0), (0, 1), (1, 0), (1, 1)]
    t = [ts - edges[0][0] for ts, _, _ in edges]
    assert t == [0, 50_000, 2_000_000, 2_050_000, 4_000_000, 4_050_000]
    assert factory.pin(D0).read() == 1 and factory.pin(D1).read() == 1
    assert sim.frames_sent == 1
    sim.send_bits([])
    assert sim.frames_sent == 1  # nothing on the wire is no frame


def test_lines_rising_to_idle_are_not_bits():
    # A reader powering up (or a cable plugged in) lifts both lines from low to
    # idle high: those rising edges must not clock in bits.
    factory = MockFactory()
    cards = Cards()
    d0, d1 = factory.input(D0), factory.input(D1)  # no pull: low until the reader drives them
    reader = WiegandReader(d0, d1, cards)
    try:
        d0.drive_high()
        d1.drive_high()
        sim = SimWiegandReader(factory, D0, D1)
        sim.swipe(5)
        assert sim.settle(reader)
        assert cards.seen == [("5", 26)]
        assert reader.counters.get("length") == 0
    finally:
        reader.close()
