"""The retained status heartbeat and the daily report's schedule.

Status: online/offline (the offline payload is the connection's last will), the
pass-table version and age, policy version, outbox depth, device health, software
version. The daily report goes up every day at sync.report_at, days with nothing
in them included, through the outbox so it survives an outage.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable

from gate.store.daily import daily
from gate.store.database import Store
from sync import codec
from sync.link import Link
from sync.topics import Topics

log = logging.getLogger(__name__)


def software_version() -> str:
    try:
        return version("gate")
    except PackageNotFoundError:
        return "unknown"


def offline_payload(gate: str) -> bytes:
    return codec.encode({"gate": gate, "online": False, "ts": datetime.now().astimezone().isoformat()})


class Heartbeat:
    def __init__(
        self,
        link: Link,
        open_store: Callable[[], Store],
        topics: Topics,
        *,
        every_s: float,
        report_at: str,
        now: Callable[[], datetime],
        devices: Callable[[], dict[str, dict[str, dict[str, Any]]]],
        policy_version: Callable[[], int],
        time_floor: Callable[[], datetime | None],
        on_enqueued: Callable[[], None] = lambda: None,
        signing_kid: str | None = None,
    ) -> None:
        self.link = link
        # The key id this gate's desk signs visitor passes with, announced so the operator
        # can see it beside central's gate key list (sync/gatekeys.py); never trusted for it.
        self.signing_kid = signing_kid
        self._open_store = open_store
        self.topics = topics
        self.every_s = every_s
        h, m = (int(x) for x in report_at.split(":"))
        self.report_minutes = h * 60 + m
        self.now = now
        self.devices = devices
        self.policy_version = policy_version
        self.time_floor = time_floor
        self._on_enqueued = on_enqueued
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._report_requests: list[str | None] = []
        self._lock = threading.Lock()
        self.alive_at = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def on_state(self, connected: bool) -> None:
        if connected:
            self._wake.set()  # say we are online at once

    def report_now(self, day: str | None) -> None:
        with self._lock:
            self._report_requests.append(day)
        self._wake.set()

    def _run(self) -> None:
        store = self._open_store()
        try:
            while not self._stop.is_set():
                self.alive_at = time.monotonic()
                try:
                    self._reports(store)
                    if self.link.connected:
                        self.link.publish(self.topics.status, codec.encode(self.status(store)), qos=1, retain=True)
                except Exception:
                    log.exception("heartbeat failed")
                self._wake.wait(self.every_s)
                self._wake.clear()
        finally:
            store.close()

    def status(self, store: Store) -> dict[str, Any]:
        synced = store.get_meta("passes_synced_at")
        floor = self.time_floor()
        return {
            "gate": self.topics.gate,
            "online": True,
            "ts": self.now().isoformat(),
            "software": software_version(),
            "passes_version": store.passes_version(),
            "passes_age_s": round(time.time() - float(synced), 1) if synced else None,
            "policy_version": self.policy_version(),
            "outbox_depth": store.outbox_depth(),
            "devices": self.devices(),
            "time_floor": floor.isoformat() if floor else None,
            "heartbeat_s": self.every_s,
            **({"signing_kid": self.signing_kid} if self.signing_kid else {}),
        }

    def _reports(self, store: Store) -> None:
        now = self.now()
        today = now.date()
        with self._lock:
            asked, self._report_requests = self._report_requests, []
        for day in asked:
            self._enqueue_report(store, day or today.isoformat())
        # A day's report goes up once the day is over, at report_at the next morning
        # (its last minutes included); a gate that was off catches up (a week at most:
        # older days are the operators' to ask for).
        last = store.get_meta("report_sent_through")
        yesterday = today - timedelta(days=1)
        due_through = yesterday if now.hour * 60 + now.minute >= self.report_minutes else yesterday - timedelta(days=1)
        start = date.fromisoformat(last) + timedelta(days=1) if last else due_through
        start = max(start, due_through - timedelta(days=6))
        d = start
        while d <= due_through:
            self._enqueue_report(store, d.isoformat())
            store.set_meta("report_sent_through", d.isoformat())
            d += timedelta(days=1)

    def _enqueue_report(self, store: Store, day: str) -> None:
        rep = daily(store, day)
        store.enqueue(self.topics.report, rep)
        self._on_enqueued()
        log.info("daily report for %s queued upstream (%d events)", day, rep["events"])
