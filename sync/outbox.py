"""Upstream: the store-and-forward outbox.

A decision's transaction already wrote its outbox row (gate/store/database.py). This thread
hands at most `window` pending rows at a time to the current MQTT connection. A
row stays pending until central's signed receipt covers it (sync/receipts.py):
a broker's PUBACK only frees a place in the window, because a broker may ack and
then lose a message (16 "no matching subscribers" after a restart, a rogue shared
subscriber, a broker without persistence). What no receipt covers within
`receipt_timeout_s` (doubling while nothing is receipted, up to 5 minutes) goes
again, as does what central says it is missing; central stores by id, so the
copies cost nothing. At most `receipt_window` rows wait for a receipt at a time,
so a long central outage does not pile copies onto the broker.

With `receipts = false` (a central that sends none) a PUBACK with a success code
other than 16 marks a row sent, as before. Reports (rows with their own topic)
are always marked on such a PUBACK: central keeps one per gate and day.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from drivers.base import Counters
from gate.store.database import Store
from sync import codec, receipts
from sync.link import Link

log = logging.getLogger(__name__)

_EVENT_TOP = 1 << 53  # event seqs are below this; other rows (reports) above (gate/store/database.py)
NO_SUBSCRIBERS = "No matching subscribers"


@dataclass(frozen=True)
class Limits:
    max_rows: int = 2_000_000
    max_age_s: float = 30 * 86400.0


@dataclass(frozen=True)
class ReceiptSettings:
    keyring: Any = None  # None: no receipts, a PUBACK (other than 16) is delivery
    gate: str = ""
    timeout_s: float = 10.0
    window: int = 2000
    max_timeout_s: float = 300.0


class Publisher:
    def __init__(
        self,
        link: Link,
        open_store: Callable[[], Store],
        events_topic: str,
        *,
        window: int = 20,
        limits: Limits = Limits(),
        on_backlog: Callable[[bool, str], None] | None = None,
        retry_s: tuple[float, float] = (0.5, 30.0),
        receipts: ReceiptSettings = ReceiptSettings(),
    ) -> None:
        self.link = link
        self._open_store = open_store
        self.events_topic = events_topic
        self.window = window
        self.limits = limits
        self._on_backlog = on_backlog or (lambda over, detail: None)
        self.retry_s = retry_s
        self.rcpt = receipts
        self.counters = Counters()
        self._acks: queue.SimpleQueue[tuple[int, bool, str, int]] = queue.SimpleQueue()
        self._receipts: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: dict[int, tuple[int, bool]] = {}  # mid -> (seq, is an event) on this connection
        self._waiting: dict[int, float] = {}  # event seq -> when handed over; not yet receipted
        self._again: set[int] = set()  # event seqs to send again before new ones
        self._cursor = 0  # highest event seq handed over since the start
        self._state_gen = 0
        self._lock = threading.Lock()
        self._hold_until: dict[int, float] = {}  # seq -> monotonic time before which we do not retry it
        self._rng = random.Random()
        self._timeout = receipts.timeout_s
        self._progress_at = time.monotonic()
        self.pending = 0
        self.alive_at = time.monotonic()
        self._over = False
        self._limits_at = 0.0
        self._sent_since = 0
        self._done = threading.Condition()
        self._loops = 0
        self._idle_seen = False

    # ------------------------------------------------------------ from paho's thread

    def on_state(self, connected: bool) -> None:
        with self._lock:
            self._state_gen += 1
        self._wake.set()

    def on_ack(self, mid: int, ok: bool, reason: str) -> None:
        with self._lock:
            gen = self._state_gen
        self._acks.put((mid, ok, reason, gen))
        self._wake.set()

    def on_receipt(self, payload: bytes) -> None:
        self._receipts.put(payload)
        self._wake.set()

    def nudge(self) -> None:
        """New rows were written (called by the lanes after a decision)."""
        self._wake.set()

    # ------------------------------------------------------------ thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    @property
    def awaiting_receipt(self) -> int:
        return len(self._waiting)

    def wait_drained(self, timeout: float) -> bool:
        """Block until no row is pending (with receipts: every event receipted) and
        nothing is in flight, as seen by a pass of the publisher that started after
        this call (rows written before it count)."""
        with self._done:
            start = self._loops
            self._wake.set()
            return self._done.wait_for(lambda: self._loops > start + 1 and self._idle_seen, timeout)

    def _run(self) -> None:
        store = self._open_store()
        # Marking a row delivered need not survive a power cut: if it is lost, the row
        # goes again and central drops the duplicate by its id. Sparing the fsync here
        # doubles the drain rate; the events themselves stay synchronous=FULL.
        store.conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            seen_gen = self._state_gen
        try:
            while not self._stop.is_set():
                try:
                    seen_gen = self._pass(store, seen_gen)
                except Exception:
                    # One bad moment of the disk or the store must not end delivery for good.
                    self.counters.inc("errors")
                    log.exception("outbox: publishing pass failed; trying again shortly")
                    self._stop.wait(1.0)
        finally:
            store.close()

    def _pass(self, store: Store, seen_gen: int) -> int:
        """One round: acks and receipts in, connection changes, a window out, limits checked."""
        self.alive_at = time.monotonic()
        # Acks of the connection we published on count, even if it has gone since.
        self._drain_acks(store, seen_gen)
        self._drain_receipts(store)
        with self._lock:
            gen = self._state_gen
        if gen != seen_gen:
            # Connection came or went: whatever the old one carried unacked goes again.
            seen_gen = gen
            if self._inflight:
                self.counters.inc("requeued", len(self._inflight))
            for seq, is_event in self._inflight.values():
                self._again.add(seq)
                self._waiting.pop(seq, None)
            self._inflight.clear()
        self._check_timeout()
        if self.link.connected:
            self._fill(store)
        self._check_limits(store)
        with self._done:
            self._loops += 1
            self._idle_seen = self.pending == 0 and not self._inflight
            self._done.notify_all()
        self._wake.wait(0.2)
        self._wake.clear()
        return seen_gen

    def _drain_acks(self, store: Store, gen: int) -> None:
        sent: list[int] = []
        while True:
            try:
                mid, ok, reason, ack_gen = self._acks.get_nowait()
            except queue.Empty:
                break
            if ack_gen != gen:
                continue  # an ack from a connection we have already given up on
            got = self._inflight.pop(mid, None)
            if got is None:
                continue
            seq, is_event = got
            if ok and NO_SUBSCRIBERS not in reason:
                if not is_event or self.rcpt.keyring is None:
                    sent.append(seq)
                    self._waiting.pop(seq, None)
                continue  # an event now waits for central's receipt
            # 135 Not authorized, or 16: the broker took it but nobody will get it.
            self._waiting.pop(seq, None)
            what = "refused" if not ok else "no_subscribers"
            self.counters.inc(what)
            n = self.counters.get(what)
            if n <= 3 or n % 1000 == 0:  # a broker without central says 16 to every event
                log.warning("outbox: broker %s event seq %d (%s, #%d); will retry with backoff",
                            "refused" if not ok else "had no subscriber for", seq, reason, n)
            attempts = self._bump_attempts(store, seq)
            hold = min(self.retry_s[1], self.retry_s[0] * (2 ** min(attempts, 16)))
            self._hold_until[seq] = time.monotonic() + self._rng.uniform(hold / 2, hold)
            self._again.add(seq)
        if sent:
            now = time.time()
            with store.write() as c:
                c.executemany("UPDATE outbox SET state = 'sent', sent_at = ? WHERE seq = ?", [(now, s) for s in sent])
            for s in sent:
                self._hold_until.pop(s, None)
            self.counters.inc("sent", len(sent))
            self._sent_since += len(sent)

    def _drain_receipts(self, store: Store) -> None:
        while True:
            try:
                raw = self._receipts.get_nowait()
            except queue.Empty:
                return
            if self.rcpt.keyring is None:
                continue
            try:
                r = receipts.read(raw, self.rcpt.keyring, self.rcpt.gate)
            except codec.PayloadError as err:
                self.counters.inc(f"receipt_{err.reason}")
                log.warning("outbox: receipt refused: %s", err)
                continue
            with store.write() as c:
                marked, trusted = receipts.apply(c, r, time.time())
            if r.upto and not trusted:
                self.counters.inc("receipt_mismatch")
                log.error("outbox: central's receipt names event %s for seq %d, which is not ours:"
                          " only the seqs it lists are marked", r.upto_id, r.upto)
            covered = r.upto if trusted else 0
            done = [s for s in self._waiting if s <= covered or any(a <= s <= b for a, b in r.ranges)]
            for s in done:
                del self._waiting[s]
            self._again = {s for s in self._again if s > covered and not any(a <= s <= b for a, b in r.ranges)}
            if marked:
                self.counters.inc("receipted", marked)
                self._sent_since += marked
                self._progress_at = time.monotonic()
                self._timeout = self.rcpt.timeout_s
            self._ask_missing(store, r)

    def _ask_missing(self, store: Store, r: receipts.Receipt) -> None:
        """Central saw a hole in our seqs: send those again now (unless just sent)."""
        if not r.missing:
            return
        recent = time.monotonic() - 1.0
        inflight = {seq for seq, _ in self._inflight.values()}
        for a, b in r.missing:
            rows = store.conn.execute(
                "SELECT seq FROM outbox WHERE state = 'pending' AND topic IS NULL AND seq BETWEEN ? AND ? LIMIT ?",
                (a, b, self.rcpt.window),
            ).fetchall()
            for (seq,) in rows:
                if seq in inflight or self._waiting.get(seq, 0.0) > recent or seq > self._cursor:
                    continue
                self._waiting.pop(seq, None)
                self._again.add(seq)
                self.counters.inc("asked_again")

    def _check_timeout(self) -> None:
        if not self._waiting or self.rcpt.keyring is None:
            return
        now = time.monotonic()
        if now - self._progress_at < self._timeout:
            return
        old = [s for s, t in self._waiting.items() if now - t >= self._timeout]
        if not old:
            return
        inflight = {seq for seq, _ in self._inflight.values()}
        for s in old:
            if s not in inflight:
                del self._waiting[s]
                self._again.add(s)
        self.counters.inc("resent", len(old))
        log.warning("outbox: %d events without central's receipt after %.0f s; sending them again", len(old), self._timeout)
        self._progress_at = now
        self._timeout = min(self._timeout * 2, self.rcpt.max_timeout_s)

    def _bump_attempts(self, store: Store, seq: int) -> int:
        with store.write() as c:
            c.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
        row = store.conn.execute("SELECT attempts FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return int(row[0]) if row else 0

    def _fill(self, store: Store) -> None:
        room = self.window - len(self._inflight)
        if self.rcpt.keyring is not None:
            room = min(room, self.rcpt.window - len(self._waiting))
        if room <= 0:
            return
        now = time.monotonic()
        rows: list[tuple[int, str, str | None]] = []
        if self._again:
            ready = sorted(s for s in self._again if self._hold_until.get(s, 0) <= now)[:room]
            self._again.difference_update(ready)
            if ready:
                marks = ",".join("?" * len(ready))
                rows += store.conn.execute(
                    f"SELECT seq, payload, topic FROM outbox WHERE state = 'pending' AND seq IN ({marks}) ORDER BY seq", ready
                ).fetchall()
        if len(rows) < room:
            rows += store.conn.execute(
                "SELECT seq, payload, topic FROM outbox WHERE state = 'pending' AND seq > ? AND seq < ? ORDER BY seq LIMIT ?",
                (self._cursor, _EVENT_TOP, room - len(rows)),
            ).fetchall()
        if len(rows) < room:
            # Reports and other rows: a few a day, above the events' seqs.
            busy = {seq for seq, _ in self._inflight.values()}
            rows += [r for r in store.conn.execute(
                "SELECT seq, payload, topic FROM outbox WHERE state = 'pending' AND seq >= ? ORDER BY seq LIMIT ?",
                (_EVENT_TOP, room - len(rows) + len(self._hold_until) + len(busy)),
            ).fetchall() if r[0] not in busy and self._hold_until.get(r[0], 0) <= now][: room - len(rows)]
        for i, (seq, payload, topic) in enumerate(rows):
            mid = self.link.publish(topic or self.events_topic, payload.encode("utf-8"), qos=1)
            if mid is None:
                # The connection went away under us: what was taken from the resend
                # list goes back on it; the rest is still above the cursor.
                self._again.update(r[0] for r in rows[i:] if r[0] <= self._cursor)
                return
            is_event = seq < _EVENT_TOP
            self._inflight[mid] = (seq, is_event)
            if is_event:
                self._waiting[seq] = now
                self._cursor = max(self._cursor, seq)

    def _check_limits(self, store: Store) -> None:
        # Counting a large backlog costs milliseconds: every ack batch would pay it.
        # While the backlog is clearly large, estimate it; near empty, always count.
        now = time.monotonic()
        estimate = self.pending - self._sent_since
        if estimate > 4 * self.window and now - self._limits_at < 1.0:
            self.pending, self._sent_since = estimate, 0
            return
        self._limits_at, self._sent_since = now, 0
        count, oldest = store.conn.execute(
            "SELECT count(*), min(created) FROM outbox WHERE state = 'pending'"
        ).fetchone()
        self.pending = int(count)
        age = time.time() - oldest if oldest else 0.0
        over = count >= self.limits.max_rows or age >= self.limits.max_age_s
        if over != self._over:
            self._over = over
            detail = f"{count} events waiting, oldest {age / 3600:.1f} h" if over else "backlog back under its limits"
            if over:
                log.error("outbox: %s (limits: %d rows, %.0f h); nothing is dropped", detail, self.limits.max_rows, self.limits.max_age_s / 3600)
            self._on_backlog(over, detail)
