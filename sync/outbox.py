"""Upstream: the store-and-forward outbox.

A decision's transaction already wrote its outbox row (gate/store.py). This thread
hands at most `window` pending rows to the current MQTT connection, marks a row
sent only when its PUBACK arrives with a non-failure reason code, and on a lost
connection simply forgets what was in flight: those rows are still pending in
the store and go again (central deduplicates by event id). A restart loses
nothing for the same reason: the store, not paho, holds what is unsent.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

from drivers.base import Counters
from gate.store import Store
from sync.link import Link

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_rows: int = 2_000_000
    max_age_s: float = 30 * 86400.0


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
    ) -> None:
        self.link = link
        self._open_store = open_store
        self.events_topic = events_topic
        self.window = window
        self.limits = limits
        self._on_backlog = on_backlog or (lambda over, detail: None)
        self.retry_s = retry_s
        self.counters = Counters()
        self._acks: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: dict[int, int] = {}  # mid -> seq (this connection only)
        self._inflight_seqs: set[int] = set()
        self._gen = 0  # connection generation: acks of an old connection are ignored
        self._state_gen = 0
        self._lock = threading.Lock()
        self._hold_until: dict[int, float] = {}  # seq -> monotonic time before which we do not retry it
        self._rng = random.Random()
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
        self._acks.put((mid if ok else -mid, gen, reason))  # type: ignore[arg-type]
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

    def wait_drained(self, timeout: float) -> bool:
        """Block until no row is pending and nothing is in flight, as seen by a pass
        of the publisher that started after this call (rows written before it count)."""
        with self._done:
            start = self._loops
            self._wake.set()
            return self._done.wait_for(lambda: self._loops > start + 1 and self._idle_seen, timeout)

    def _run(self) -> None:
        store = self._open_store()
        # Marking a row sent need not survive a power cut: if it is lost, the row goes
        # again and central drops the duplicate by its id. Sparing the fsync here
        # doubles the drain rate; the events themselves stay synchronous=FULL.
        store.conn.execute("PRAGMA synchronous=NORMAL")
        # Rows a previous run had in flight were never marked sent: they are pending.
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
        """One round: acks in, connection changes, a window out, limits checked."""
        self.alive_at = time.monotonic()
        # Acks of the connection we published on count, even if it has gone since.
        self._drain_acks(store, seen_gen)
        with self._lock:
            gen = self._state_gen
        if gen != seen_gen:
            # Connection came or went: whatever the old one carried is pending again.
            seen_gen = gen
            if self._inflight:
                self.counters.inc("requeued", len(self._inflight))
            self._inflight.clear()
            self._inflight_seqs.clear()
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
                signed_mid, ack_gen, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            if ack_gen != gen:
                continue  # an ack from a connection we have already given up on
            mid = abs(signed_mid)
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue
            self._inflight_seqs.discard(seq)
            if signed_mid > 0:
                sent.append(seq)
            else:
                # The broker refused it (e.g. 135 Not authorized): never marked sent.
                self.counters.inc("refused")
                log.warning("outbox: broker refused event seq %d (%s); will retry with backoff", seq, reason)
                attempts = self._bump_attempts(store, seq)
                hold = min(self.retry_s[1], self.retry_s[0] * (2 ** min(attempts, 16)))
                self._hold_until[seq] = time.monotonic() + self._rng.uniform(hold / 2, hold)
        if sent:
            now = time.time()
            with store.write() as c:
                c.executemany("UPDATE outbox SET state = 'sent', sent_at = ? WHERE seq = ?", [(now, s) for s in sent])
            for s in sent:
                self._hold_until.pop(s, None)
            self.counters.inc("sent", len(sent))
            self._sent_since += len(sent)

    def _bump_attempts(self, store: Store, seq: int) -> int:
        with store.write() as c:
            c.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
        row = store.conn.execute("SELECT attempts FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return int(row[0]) if row else 0

    def _fill(self, store: Store) -> None:
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        now = time.monotonic()
        rows = store.conn.execute(
            "SELECT seq, payload, topic FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?",
            (self.window + len(self._inflight_seqs) + len(self._hold_until),),
        ).fetchall()
        for seq, payload, topic in rows:
            if room <= 0:
                break
            if seq in self._inflight_seqs or self._hold_until.get(seq, 0) > now:
                continue
            mid = self.link.publish(topic or self.events_topic, payload.encode("utf-8"), qos=1)
            if mid is None:
                return  # the connection went away under us; the state change will reset
            self._inflight[mid] = seq
            self._inflight_seqs.add(seq)
            room -= 1

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
