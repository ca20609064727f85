"""Health at a glance and today's counts, for the guard's page.

A monitor thread (with its own store connection) recomputes them when the lanes
report something and every few seconds regardless, and publishes what changed.

Where the numbers come from:

- devices: each lane's ``health`` (what its drivers last reported) for the devices
  its config names; the engine thread's liveness; the door (relay and contact).
- pass table: store meta ``passes_synced_at`` (written by sync when the pass table
  was last confirmed current; ISO 8601 with offset, or Unix seconds); absent:
  "unknown". Policy: ``policy_version`` and ``policy_applied_at`` (same format);
  without them the version the lanes run from the local config is shown.
- stale: either time older than ``guard.stale_after_h`` raises the banner. An
  unknown time raises none (there is nothing to say it is old).
- upstream: ``GateApp.upstream`` (set by sync), a callable returning
  ``{"connected": bool, "detail": str}``; None: "not configured".
- outbox backlog: outbox rows whose state is not ``sent``.
- disk: free space where the store lives (low under 10 % or 1 GiB).
- today: ``gate.store.daily.daily`` for the local date.
"""
from __future__ import annotations

import logging
import shutil
import threading
from datetime import datetime, timezone
from typing import Any, Callable

from gate.core.records import LaneRecord
from gate.store.daily import daily
from gate.store.database import Store

log = logging.getLogger(__name__)

LOW_DISK_BYTES = 1 << 30
# Devices whose drivers report their own health; the others (relay, contacts, PIR) cannot tell.
REPORTING = frozenset({"camera", "thermometer", "card_reader", "speaker"})
LOW_DISK_PCT = 10.0


def parse_when(value: str | None) -> datetime | None:
    """A meta time: ISO 8601 (with offset; naive means UTC) or Unix seconds."""
    if not value:
        return None
    try:
        return datetime.fromtimestamp(float(value), timezone.utc)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class Monitor:
    def __init__(self, app: Any, publish: Callable[[str, Any], None], *, every_s: float = 5.0, debounce_s: float = 0.5) -> None:
        self.app = app
        self.publish = publish
        self.every_s = every_s
        self.debounce_s = debounce_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._today_dirty = True
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] = {}
        self._day: Any = None
        self.store: Store | None = None

    def changed(self, rec: LaneRecord | None = None) -> None:
        """Something happened at a lane (called from the live worker)."""
        if rec is None or rec.type in ("decision", "alarm", "registration", "health"):
            self._today_dirty = True
        self._wake.set()

    def refresh_now(self) -> None:
        self._today_dirty = True
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="guard-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop refreshing; wait up to `timeout` for a refresh under way (0: do not wait)."""
        self._stop.set()
        self._wake.set()
        if timeout > 0 and self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        self.store = self.app.open_store()
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:
                    log.exception("guard page: health/today refresh failed")
                self._wake.wait(self.every_s)
                if self._stop.is_set():
                    return
                self._stop.wait(self.debounce_s)  # gather a burst of records into one refresh
                self._wake.clear()
        finally:
            self.store.close()

    def tick(self) -> None:
        assert self.store is not None
        now = self.app.clock.now()
        day = now.astimezone(self.app.tz).date()
        if day != self._day:  # midnight: a new day starts at zero, traffic or not
            self._day = day
            self._today_dirty = True
        if self._today_dirty:
            self._today_dirty = False
            self._send("today", self.today(now))
        self._send("health", self.health(now))

    def _send(self, name: str, value: dict[str, Any]) -> None:
        if self._last.get(name) != value:
            self._last[name] = value
            self.publish(name, value)

    # ------------------------------------------------------------ today

    def today(self, now: datetime) -> dict[str, Any]:
        assert self.store is not None
        day = now.astimezone(self.app.tz).date().isoformat()
        return daily(self.store, day)

    # ------------------------------------------------------------ health

    def health(self, now: datetime) -> dict[str, Any]:
        assert self.store is not None
        conf = self.app.config
        lanes = []
        bad = False
        for cfg in conf.lanes:
            lane = self.app.lanes.get(cfg.name)
            alive = bool(lane and lane.alive)
            bad |= not alive
            devices = []
            reported = dict(lane.health) if lane else {}
            names = list(cfg.devices()) + (["speaker"] if cfg.speaker.driver != "sim" or "speaker" in reported else [])
            for name in names:
                state = reported.get(name)
                ok = None if state is None else bool(state[0])
                bad |= ok is False
                devices.append({"device": name, "ok": ok, "detail": "" if state is None else state[1],
                                "reports": name in REPORTING})
            door = None
            if lane is not None and (cfg.relay is not None or cfg.door_contact is not None):
                door = {
                    "relay": cfg.relay is not None,
                    "unlocked": bool(lane.unlocked),
                    "contact": cfg.door_contact is not None,
                    "open": bool(lane.door_open),
                    "mode": lane.door_mode,  # normal | open | locked
                }
            lanes.append({"name": cfg.name, "direction": cfg.direction, "alive": alive, "devices": devices, "door": door})

        meta = self.store.get_meta
        synced = parse_when(meta("passes_synced_at"))
        applied = parse_when(meta("policy_applied_at"))
        version = meta("policy_version")
        if version is None:
            running = {str(l.policy.version) for l in self.app.lanes.values()} or {str(conf.policy.version)}
            version_src, version = "config", ", ".join(sorted(running))
        else:
            version_src = "store"
        after_s = conf.guard.stale_after_h * 3600
        stale_what = []
        passes_age = _age(now, synced)
        policy_age = _age(now, applied)
        if passes_age is not None and passes_age > after_s:
            stale_what.append("passes")
        if policy_age is not None and policy_age > after_s:
            stale_what.append("policy")

        upstream: dict[str, Any] = {"configured": False, "connected": None, "detail": ""}
        fn = getattr(self.app, "upstream", None)
        if fn is not None:
            try:
                got = fn() or {}
                upstream = {"configured": True, "connected": bool(got.get("connected")), "detail": str(got.get("detail", ""))}
            except Exception as exc:
                upstream = {"configured": True, "connected": False, "detail": f"status unavailable: {exc}"}

        backlog = self.store.outbox_depth()
        try:
            du = shutil.disk_usage(self.app.store_path.parent)
            free_pct = round(100.0 * du.free / du.total, 1) if du.total else 0.0
            disk = {"free_bytes": du.free, "total_bytes": du.total, "free_pct": free_pct,
                    "low": du.free < LOW_DISK_BYTES or free_pct < LOW_DISK_PCT}
        except OSError as exc:
            disk = {"free_bytes": None, "total_bytes": None, "free_pct": None, "low": True, "error": str(exc)}

        warn = bool(stale_what) or disk["low"] or (upstream["configured"] and not upstream["connected"])
        return {
            "level": "bad" if bad else ("warn" if warn else "ok"),
            "lanes": lanes,
            "passes": {"synced_at": synced.isoformat() if synced else None, "age_s": _round(passes_age),
                       "count": self.store.pass_count(), "version": meta("passes_version")},
            "policy": {"version": version, "source": version_src, "applied_at": applied.isoformat() if applied else None,
                       "age_s": _round(policy_age)},
            "stale": {"stale": bool(stale_what), "what": stale_what, "after_h": conf.guard.stale_after_h},
            "upstream": upstream,
            "outbox": {"backlog": backlog},
            "disk": disk,
        }


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


def _round(v: float | None) -> float | None:
    # Ages move every tick; round to the minute so an unchanged health is not re-sent each time.
    return None if v is None else float(int(v // 60) * 60)
