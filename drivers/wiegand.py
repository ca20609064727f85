"""Wiegand card readers on two GPIO inputs, and a simulator that swipes cards.

Wire format: D0 and D1 idle high; each bit is a short low pulse (20-100 us) on D0
for a 0 or on D1 for a 1, bits 200 us-20 ms apart, most significant first. A frame
is over when the lines have been quiet for a while (25 ms here; pigpio's 5 ms
example is too short for slow readers).

26-bit (H10301): bit 1 even parity over bits 2-13, 24 data bits (8-bit facility,
16-bit number), bit 26 odd parity over bits 14-25. 34-bit: bit 1 even parity over
2-17, 32 data bits, bit 34 odd parity over 18-33. Readers commonly print the whole
data value as the card number (facility 18, number 54919 -> "1234567"), and that
is what ``on_card`` gets.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

from drivers.base import Counters, Progress
from drivers.gpio import InputPin, MockFactory, MockInputPin

log = logging.getLogger(__name__)

FORMATS = (26, 34)
#: Noise can clock in any number of bits; past this a frame is surely garbage.
_MAX_FRAME_BITS = 64

# Simulated train timing (SIA: pulses 20-100 us, gaps 200 us-20 ms).
SIM_PULSE_NS = 50_000
SIM_BIT_INTERVAL_NS = 2_000_000


class WiegandError(ValueError):
    """A frame that is not a card: ``reason`` is "length" or "parity"."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def encode(number: int, bits: int = 26) -> list[int]:
    """The frame a reader sends for ``number`` (the full 24- or 32-bit data value)."""
    if bits not in FORMATS:
        raise ValueError(f"unsupported Wiegand length {bits}; use one of {FORMATS}")
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"card number must be an int, not {type(number).__name__}")
    width = bits - 2
    if not 0 <= number < 1 << width:
        raise ValueError(f"card number {number} does not fit in {width} data bits")
    data = [(number >> i) & 1 for i in range(width - 1, -1, -1)]  # MSB first
    half = width // 2
    even = sum(data[:half]) % 2  # makes the first half plus parity even
    odd = 1 - sum(data[half:]) % 2  # makes the second half plus parity odd
    return [even, *data, odd]


def decode(bits: list[int]) -> int:
    """The data value of a 26- or 34-bit frame; WiegandError if it is not one."""
    if len(bits) not in FORMATS:
        raise WiegandError("length", f"{len(bits)} bits")
    if any(b not in (0, 1) for b in bits):
        raise ValueError("Wiegand bits must be 0 or 1")
    data = bits[1:-1]
    half = len(data) // 2
    if (bits[0] + sum(data[:half])) % 2 != 0 or (bits[-1] + sum(data[half:])) % 2 != 1:
        raise WiegandError("parity", f"{len(bits)} bits")
    number = 0
    for b in data:
        number = number << 1 | b
    return number


class WiegandReader:
    """Turns the pulse trains on D0/D1 into ``on_card(number_text, bit_count)`` calls.

    Edges are only collected in the GPIO callback; frames are ended and decoded on
    the reader's own thread, so ``on_card`` calls come in order and a slow
    ``on_card`` never stalls the GPIO backend. A frame ends when

    * an edge arrives more than ``silence_ms`` after the previous one *by the
      edges' timestamps* (exact with kernel timestamps, and what lets a simulator
      deliver two trains back to back without sleeping), or
    * nothing has arrived for ``silence_ms`` of real time (the last frame).

    The data lines are never debounced: a bit is one 20-100 us pulse.
    """

    def __init__(
        self,
        d0: InputPin,
        d1: InputPin,
        on_card: Callable[[str, int], None],
        *,
        silence_ms: float = 25.0,
        name: str = "card_reader",
    ) -> None:
        if silence_ms <= 0:
            raise ValueError("silence_ms must be positive")
        self.name = name
        self.counters = Counters()
        for key in ("cards", "length", "parity"):
            self.counters.inc(key, 0)  # so status shows zeros, not nothing
        self.progress = Progress()
        self._on_card = on_card
        self._silence_ns = int(silence_ms * 1_000_000)
        self._silence_s = silence_ms / 1000.0
        self._cond = threading.Condition()
        self._bits: list[int] = []  # the frame being clocked in
        self._ready: deque[list[int]] = deque()  # frames ended by timestamps
        self._last_t: int | None = None  # t_ns of the latest edge on either line
        self._last_rx = 0.0  # time.monotonic() when that edge reached us
        self._closed = False
        self._d0, self._d1 = d0, d1
        self._thread = threading.Thread(target=self._run, name=f"wiegand-{name}", daemon=True)
        self._thread.start()
        d0.when_edge = self._on_d0
        d1.when_edge = self._on_d1

    def _on_d0(self, level: int, t_ns: int) -> None:
        self._edge(0, level, t_ns)

    def _on_d1(self, level: int, t_ns: int) -> None:
        self._edge(1, level, t_ns)

    def _edge(self, bit: int, level: int, t_ns: int) -> None:
        with self._cond:
            if self._closed:
                return
            if self._bits and self._last_t is not None and t_ns - self._last_t > self._silence_ns:
                self._ready.append(self._bits)
                self._bits = []
            self._last_t = t_ns
            self._last_rx = time.monotonic()
            # Falling edge = the bit; the rising edge only ends the pulse.
            if level == 0 and len(self._bits) < _MAX_FRAME_BITS:
                self._bits.append(bit)
            self._cond.notify()

    def _next_frame(self) -> list[int] | None:
        """Block until a frame has ended; None once closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._ready:
                    return self._ready.popleft()
                if self._bits:
                    remaining = self._last_rx + self._silence_s - time.monotonic()
                    if remaining <= 0:
                        frame, self._bits = self._bits, []
                        return frame
                    self._cond.wait(remaining)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (frame := self._next_frame()) is not None:
            try:
                self._finish(frame)
            finally:
                self.progress.advance()

    def _finish(self, frame: list[int]) -> None:
        try:
            number = decode(frame)
        except WiegandError as exc:
            self.counters.inc(exc.reason)
            log.warning("%s: dropped a %d-bit frame (%s)", self.name, len(frame), exc.reason)
            return
        self.counters.inc("cards")
        log.debug("%s: card read (%d bits)", self.name, len(frame))
        try:
            self._on_card(str(number), len(frame))
        except Exception:
            log.exception("%s: on_card failed", self.name)

    def close(self) -> None:
        """Stop the thread and let go of the pins; a half-clocked frame is dropped."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for pin, handler in ((self._d0, self._on_d0), (self._d1, self._on_d1)):
            if pin.when_edge == handler:
                pin.when_edge = None
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> WiegandReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SimWiegandReader:
    """Swipes cards on a MockFactory's D0/D1 pins the way a reader would.

    Timestamps are virtual: a train starts at ``time.monotonic_ns()`` (or later,
    see below) and each pulse advances them; edges are delivered at once, with
    no sleeping. Each train starts at least ``frame_gap_ms`` after the previous
    one ended, so back-to-back swipes are separate frames by their timestamps
    (keep it above the reader's ``silence_ms``).
    """

    def __init__(
        self, factory: MockFactory, d0: int, d1: int, *, frame_gap_ms: float = 250.0
    ) -> None:
        self._factory = factory
        self._d0, self._d1 = d0, d1
        self._gap_ns = int(frame_gap_ms * 1_000_000)
        self._next_t = 0
        self._lock = threading.Lock()
        self.frames_sent = 0

    def _pin(self, number: int) -> MockInputPin:
        # Looked up on use, so the sim may be made before the reader claims its pins.
        pin = self._factory.pin(number)
        if not isinstance(pin, MockInputPin):
            raise TypeError(f"GPIO{number} is not an input")
        return pin

    def swipe(self, number: int, bits: int | None = None) -> None:
        """Present a card; 26-bit if the number fits in 24 bits, else 34-bit."""
        if bits is None:
            bits = 26 if number < 1 << 24 else 34
        self.send_bits(encode(number, bits))

    def send_bits(self, bits: list[int]) -> None:
        """Send any train, e.g. a malformed one. An empty train sends nothing."""
        if any(b not in (0, 1) for b in bits):
            raise ValueError("bits must be 0 or 1")
        if not bits:
            return
        d0, d1 = self._pin(self._d0), self._pin(self._d1)
        with self._lock:
            t = max(time.monotonic_ns(), self._next_t)
            d0.drive_high(t)  # lines idle high (no edge if already high)
            d1.drive_high(t)
            for b in bits:
                line = d1 if b else d0
                line.drive_low(t)
                line.drive_high(t + SIM_PULSE_NS)
                t += SIM_BIT_INTERVAL_NS
            self._next_t = t + self._gap_ns
            self.frames_sent += 1

    def settle(self, reader: WiegandReader, timeout: float = 5.0) -> bool:
        """Wait until the reader has ended every frame sent so far."""
        return reader.progress.wait_for(self.frames_sent, timeout)
