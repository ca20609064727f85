"""Central's privacy work over time: the retention purge (events by when central
received them, visits after they ended, old quarantine; a chunk a transaction) and the
running central's thread that purges on its timer and re-sends erase commands until each
gate confirms (sync/central/privacy.py holds export and erase themselves)."""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime
from typing import Any, Callable

from sync.central.privacy import commands, due, mark_sent

log = logging.getLogger("sync.central.privacy")


# ---------------------------------------------------------------- retention


def _ended(body: str, received: float) -> float:
    """When a registration's visit ended (its pass's valid_until), never before it came in."""
    try:
        t = datetime.fromisoformat(json.loads(body).get("valid_until") or "")
        return max(received, t.timestamp()) if t.tzinfo is not None else received
    except (ValueError, TypeError):
        return received


def purge(store: Any, *, days: int, now: float | None = None, chunk: int = 1000,
          stop: threading.Event | None = None, pause_s: float = 0.0) -> dict[str, int]:
    """Delete what is past retention, `chunk` rows a transaction (the writer gets the
    database between two). Returns counts by kind."""
    db = store.db
    now = time.time() if now is None else now
    cutoff = now - days * 86400
    out = {"events": 0, "registrations": 0, "visitor_passes": 0, "quarantined": 0}

    def stopped() -> bool:
        if pause_s:
            time.sleep(pause_s)
        return stop is not None and stop.is_set()

    while True:  # events: by when central received them (a gate's clock may be wrong)
        with db.tx():
            n = db.execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE received < ?"
                           " AND type <> 'registration' ORDER BY received LIMIT ?)", (cutoff, chunk)).rowcount
        out["events"] += max(n, 0)
        if n < chunk or stopped():
            break
    last = ""
    while not (stop is not None and stop.is_set()):  # registrations: that long after the visit ended
        rows = db.all("SELECT id, body, received FROM events WHERE type = 'registration' AND received < ? AND id > ?"
                      " ORDER BY id LIMIT ?", (cutoff, last, chunk))
        if not rows:
            break
        last = rows[-1][0]
        gone = [(r[0],) for r in rows if _ended(r[1], float(r[2])) < cutoff]
        if gone:
            with db.tx():
                db.executemany("DELETE FROM events WHERE id = ?", gone)
            out["registrations"] += len(gone)
        if len(rows) < chunk or stopped():
            break
    # visitor passes of the roster that ended that long ago: a delete change (a tombstone
    # already past its `until`) and their history without the visitor's name
    ended = []
    for pid, wire in db.all("SELECT id, wire FROM passes WHERE category = 'visitor'"):
        until = json.loads(wire).get("valid_until")
        try:
            t = datetime.fromisoformat(until) if until else None
        except ValueError:
            t = None
        if t is not None and t.tzinfo is not None and t.timestamp() < cutoff:
            ended.append(pid)
    for i in range(0, len(ended), chunk):
        part = ended[i:i + chunk]
        with db.tx():
            store.apply([("delete", pid, None) for pid in part])
            for pid in part:
                cat, until = db.one("SELECT category, until FROM tombstones WHERE id = ?", (pid,))
                change = json.dumps({"op": "delete", "id": pid, "category": cat, "until": until}, ensure_ascii=False)
                db.execute("UPDATE changes SET op = 'delete', change = ? WHERE pass_id = ? AND op = 'upsert'", (change, pid))
        out["visitor_passes"] += len(part)
        if stopped():
            break
    with db.tx():
        out["quarantined"] = max(db.execute("DELETE FROM quarantine WHERE last_seen < ?", (cutoff,)).rowcount, 0)
    with db.tx():  # the console's latest decision per pass and gate (sync/central/console/seen.py), by the decision's time
        out["seen"] = max(db.execute("DELETE FROM console_seen WHERE at < ?", (cutoff,)).rowcount, 0)
        db.execute("DELETE FROM console_last_seen WHERE at < ?", (cutoff,))
    if any(out.values()):
        log.info("retention (%d days): purged %s", days, out)
    return out


# ---------------------------------------------------------------- the running central's thread


class Worker:
    """In the running central: sends erase commands until each gate confirms, and runs
    the retention purge every `retention.purge_every_s` (first a minute after start)."""

    def __init__(self, config: Any, peer: Any, signer: Any, open_store: Callable[[], Any], *,
                 stop: threading.Event, wake: threading.Event, count: Callable[..., None]) -> None:
        self.config = config
        self.peer = peer
        self.signer = signer
        self.open_store = open_store
        self.stop = stop
        self.wake = wake
        self.count = count
        self.next_purge = time.monotonic() + min(60.0, config.retention.purge_every_s)

    def run(self) -> None:
        store = self.open_store()
        try:
            while not self.stop.is_set():
                self.resend(store)
                if time.monotonic() >= self.next_purge:
                    self.next_purge = time.monotonic() + self.config.retention.purge_every_s
                    try:
                        got = purge(store, days=self.config.retention.days, chunk=self.config.retention.chunk,
                                    stop=self.stop, pause_s=0.01)
                        self.count("purges")
                        for k, v in got.items():
                            if v:
                                self.count(f"purged_{k}", v)
                    except Exception:
                        log.exception("retention purge failed; next try in %.0f s", self.config.retention.purge_every_s)
                self.wake.wait(min(1.0, self.config.erase_resend_s))
                self.wake.clear()
        finally:
            store.close()

    def resend(self, store: Any) -> int:
        now = time.time()
        items = due(store.db, now, self.config.erase_resend_s)
        if not items or not self.peer.connected.is_set():
            return 0
        sent = []
        for erasure, gate, payload in commands(self.signer, items, self.config.command_ttl_s):
            self.peer.publish(self.config.topics.gate(gate).cmd, payload)
            store.store_command(payload)
            sent.append((erasure, gate))
        mark_sent(store.db, sent, now)
        self.count("erase_commands", len(sent))
        return len(sent)
