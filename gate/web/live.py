"""What the guard's page shows live, derived from the lanes' record stream.

The lanes call :meth:`LiveState.sink` on their engine threads for every record;
the sink only puts the record on a queue. One worker thread of our own takes
records off it, looks up what the page needs from the store (the masked phone of
a challenged pass), keeps the state (last decisions, open challenges, active
alarms, door states) and pushes each change to every subscriber (one per open
page, over server-sent events).

- A challenge is open from its ``challenge`` decision until a decision with the
  same ``challenge_id``.
- An alarm is active until an ``ack`` record with its id. A ``passback`` alarm
  belongs to the challenge raised with it (same lane and pass): answering the
  challenge acknowledges it, so the guard answers once.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from datetime import datetime, timedelta, tzinfo
from typing import Any, Callable

from gate.core.records import (
    AckRecord,
    AlarmRecord,
    DecisionRecord,
    DoorRecord,
    LaneRecord,
    OverrideRecord,
)
from gate.store.database import Store

log = logging.getLogger(__name__)

RECENT = 20
SUBSCRIBER_BACKLOG = 500  # messages a slow page may fall behind before it is dropped (it reconnects)
PER_CLIENT_STREAMS = 2  # a page and its reload
# Alarms that sound on the page: what a dozing night guard must be woken for.
TONE_ALARMS = frozenset({"fever", "door_forced", "door_held", "sensor_fault", "night_presence", "card_sweep", "fire"})


def mask_phone(last4: str | None) -> str | None:
    """Only the last four digits are kept; shown in the 3-4-4 grouping of a Chinese
    mobile number: ``***-****-1234``."""
    if not last4:
        return None
    return f"***-****-{last4}"


Message = str  # one server-sent event, ready to write


def sse(event: str, data: Any) -> Message:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {body}\n\n"


class Subscriber:
    def __init__(self, client: str = "local", local: bool = True) -> None:
        self.client = client  # who opened it (its address); streams are capped per client
        self.local = local  # opened from this machine (the kiosk)
        self.queue: queue.Queue[Message | None] = queue.Queue(SUBSCRIBER_BACKLOG)
        self.opened = time.monotonic()

    def put(self, msg: Message | None) -> bool:
        try:
            self.queue.put_nowait(msg)
            return True
        except queue.Full:
            return False


class LiveState:
    def __init__(self, *, tz: tzinfo, open_store: Callable[[], Store], max_subscribers: int = 4) -> None:
        self.tz = tz
        self.open_store = open_store
        self.max_subscribers = max_subscribers
        self._inbox: queue.Queue[LaneRecord | None] = queue.Queue()
        self._lock = threading.Lock()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.challenges: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.alarms: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.doors: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}  # health, today ...: set by the monitor
        self._subs: list[Subscriber] = []
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        self.handled = 0  # records handled, for tests and the load check
        self._handled_cond = threading.Condition()
        self.on_change: Callable[[LaneRecord], None] | None = None  # the monitor's "something happened"

    # ------------------------------------------------------------ lane side

    def sink(self, rec: LaneRecord) -> None:
        """Called on a lane's engine thread: hand off, never block."""
        self._inbox.put_nowait(rec)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="guard-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.end_streams()
        if self._thread is not None and self._thread.is_alive():
            self._inbox.put(None)
            self._thread.join(5)
        self.end_streams()

    def end_streams(self) -> None:
        """End every page's stream now (its page reconnects; at shutdown, nothing to wait for)."""
        with self._lock:
            for sub in self._subs:
                _force(sub)
            self._subs.clear()

    def wait_handled(self, n: int, timeout: float = 10.0) -> bool:
        with self._handled_cond:
            return self._handled_cond.wait_for(lambda: self.handled >= n, timeout)

    def _run(self) -> None:
        self._store = self.open_store()
        try:
            while True:
                rec = self._inbox.get()
                if rec is None:
                    return
                try:
                    self._apply(rec)
                except Exception:
                    log.exception("guard page: could not show %r", rec)
                with self._handled_cond:
                    self.handled += 1
                    self._handled_cond.notify_all()
                if self.on_change is not None:
                    try:
                        self.on_change(rec)
                    except Exception:
                        log.exception("guard page: change hook failed")
        finally:
            self._store.close()

    # ------------------------------------------------------------ history

    def load_history(self, store: Store, now: datetime) -> None:
        """After a restart: the last decisions, and alarms not yet acknowledged (a day back).

        Challenges are not restored: they live in the lane's memory and ended with it."""
        since = (now - timedelta(hours=24)).timestamp()
        rows = store.conn.execute(
            "SELECT e.body, p.holder, p.unit FROM events e LEFT JOIN passes p ON p.id = e.pass_id"
            " WHERE e.type IN ('decision', 'override') ORDER BY e.seq DESC LIMIT ?",
            (RECENT,),
        ).fetchall()
        recent = []
        for body, holder, unit in reversed(rows):
            b = json.loads(body)
            b.setdefault("holder", holder)
            b.setdefault("unit", unit)
            recent.append(self._view_from_body(b))
        acked = {
            r[0]
            for r in store.conn.execute(
                "SELECT json_extract(body, '$.alarm_id') FROM events WHERE type = 'ack' AND ts >= ?", (since,)
            )
        }
        alarms = []
        for (body,) in store.conn.execute(
            "SELECT body FROM events WHERE type = 'alarm' AND ts >= ? ORDER BY seq", (since,)
        ):
            b = json.loads(body)
            if b["id"] in acked or b.get("kind") == "passback":
                continue  # a passback alarm went with a challenge, which did not survive the restart
            view = self._alarm_view(b["id"], b["lane"], b["kind"], b.get("detail", ""), _parse(b["ts"]), b.get("pass"))
            row = store.conn.execute("SELECT holder, unit FROM passes WHERE id = ?", (b.get("pass"),)).fetchone()
            view["holder"], view["unit"] = row if row else (None, None)  # as it was shown before the restart
            alarms.append(view)
        with self._lock:
            known = {v["id"] for v in self.recent}
            merged = [v for v in recent if v["id"] not in known] + list(self.recent)
            self.recent.clear()
            self.recent.extend(merged[-RECENT:])
            for a in alarms:
                self.alarms.setdefault(a["id"], a)

    def _view_from_body(self, b: dict[str, Any]) -> dict[str, Any]:
        at = _parse(b["ts"])
        if b.get("type") == "override":
            return {
                "kind": "override", "id": b["id"], "lane": b.get("lane"), "at": at.isoformat(),
                "time": self._hms(at), "reason": b.get("reason"), "who": b.get("who"),
            }
        return {
            "kind": "decision", "id": b["id"], "lane": b.get("lane"), "at": at.isoformat(), "time": self._hms(at),
            "decision": b.get("decision"), "reason": b.get("reason"), "category": b.get("category"),
            "pass_id": b.get("pass"), "credential": b.get("credential"), "holder": b.get("holder"),
            "unit": b.get("unit"), "temperature_c": b.get("temperature_c"), "card": b.get("card"),
            "challenge_id": b.get("challenge_id"), "who": b.get("who"), "presence": b.get("presence"),
        }

    # ------------------------------------------------------------ records

    def _hms(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%H:%M:%S")

    def _decision_view(self, rec: DecisionRecord) -> dict[str, Any]:
        return {
            "kind": "decision", "id": rec.id, "lane": rec.lane, "at": rec.at.isoformat(), "time": self._hms(rec.at),
            "decision": rec.decision, "reason": rec.reason, "category": rec.category, "pass_id": rec.pass_id,
            "credential": rec.credential, "holder": rec.holder, "unit": rec.unit,
            "temperature_c": None if rec.temperature_c is None else round(rec.temperature_c, 1),
            "card": rec.card, "challenge_id": rec.challenge_id, "who": rec.who, "presence": rec.presence,
        }

    def _alarm_view(self, id_: str, lane: str, kind: str, detail: str, at: datetime, pass_id: str | None) -> dict[str, Any]:
        return {
            "id": id_, "lane": lane, "kind": kind, "detail": detail, "at": at.isoformat(),
            "time": self._hms(at), "pass_id": pass_id, "tone": kind in TONE_ALARMS,
        }

    def _pass_row(self, pass_id: str | None) -> tuple[str | None, str | None, str | None]:
        """(holder, unit, phone_last4) of a pass from the table, or Nones."""
        if not pass_id or self._store is None:
            return None, None, None
        row = self._store.conn.execute(
            "SELECT holder, unit, phone_last4 FROM passes WHERE id = ?", (pass_id,)
        ).fetchone()
        return (row[0], row[1], row[2]) if row else (None, None, None)

    def _apply(self, rec: LaneRecord) -> None:
        out: list[Message] = []
        with self._lock:
            if isinstance(rec, DecisionRecord):
                view = self._decision_view(rec)
                self.recent.append(view)
                out.append(sse("decision", view))
                if rec.challenge_id:
                    if rec.decision == "challenge":
                        last4 = self._pass_row(rec.pass_id)[2]
                        self.challenges[rec.challenge_id] = {
                            **view, "phone_last4": last4, "phone_masked": mask_phone(last4), "alarm_id": None,
                        }
                    else:
                        self.challenges.pop(rec.challenge_id, None)
                    out.append(sse("challenges", list(self.challenges.values())))
            elif isinstance(rec, AlarmRecord):
                view = self._alarm_view(rec.id, rec.lane, rec.kind, rec.detail, rec.at, rec.pass_id)
                view["holder"], view["unit"], _ = self._pass_row(rec.pass_id)
                owner = None
                if rec.kind == "passback":
                    owner = next(
                        (c for c in reversed(self.challenges.values())
                         if c["lane"] == rec.lane and c["pass_id"] == rec.pass_id and c["alarm_id"] is None),
                        None,
                    )
                if owner is not None:
                    owner["alarm_id"] = rec.id
                    out.append(sse("challenges", list(self.challenges.values())))
                else:
                    self.alarms[rec.id] = view
                    out.append(sse("alarms", list(self.alarms.values())))
            elif isinstance(rec, AckRecord):
                if self.alarms.pop(rec.alarm_id, None) is not None:
                    out.append(sse("alarms", list(self.alarms.values())))
            elif isinstance(rec, DoorRecord):
                self.doors[rec.lane] = {"lane": rec.lane, "action": rec.action, "time": self._hms(rec.at)}
                out.append(sse("door", self.doors[rec.lane]))
            elif isinstance(rec, OverrideRecord):
                view = {
                    "kind": "override", "id": rec.id, "lane": rec.lane, "at": rec.at.isoformat(),
                    "time": self._hms(rec.at), "reason": rec.reason, "who": rec.who,
                }
                self.recent.append(view)
                out.append(sse("decision", view))
            # Registrations and device health reach the page through the monitor (today, health).
            self._fanout(out)

    # ------------------------------------------------------------ subscribers

    def publish(self, event: str, data: Any) -> None:
        """Set a piece of page state (health, today ...) and push it to every page."""
        with self._lock:
            self.extra[event] = data
            self._fanout([sse(event, data)])

    def _fanout(self, messages: list[Message]) -> None:
        if not messages:
            return
        dropped = []
        for sub in self._subs:
            for msg in messages:
                if not sub.put(msg):
                    dropped.append(sub)
                    break
        for sub in dropped:
            # Too far behind (a frozen tab): drop it; its page reconnects and gets a fresh snapshot.
            self._subs.remove(sub)
            _force(sub)

    def snapshot_locked(self) -> dict[str, Any]:
        return {
            "recent": list(self.recent),
            "challenges": list(self.challenges.values()),
            "alarms": list(self.alarms.values()),
            "doors": dict(self.doors),
            **self.extra,
        }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.snapshot_locked(), ensure_ascii=False))

    def subscribe(self, client: str = "local", *, local: bool = True) -> tuple[Subscriber, Message] | None:
        """A new page from `client`: its queue and the snapshot to start from, taken
        atomically; None when every stream is taken by other machines.

        Another machine keeps at most PER_CLIENT_STREAMS (its own oldest gives way).
        When all streams are taken, a page on this machine (the kiosk) takes the
        oldest stream of another machine, else the oldest of this machine's (the kiosk
        reloading); another machine's page is refused. So no stream from the LAN ever
        ends the kiosk's."""
        sub = Subscriber(client, local)
        with self._lock:
            mine = [s for s in self._subs if s.client == client]
            if not local and len(mine) >= PER_CLIENT_STREAMS:
                self._drop(mine[0])
            if len(self._subs) >= self.max_subscribers:
                if not local:
                    return None
                remote = [s for s in self._subs if not s.local]
                self._drop((remote or self._subs)[0])
            self._subs.append(sub)
            return sub, sse("snapshot", self.snapshot_locked())

    def _drop(self, sub: Subscriber) -> None:
        self._subs.remove(sub)
        _force(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    # ------------------------------------------------------------ lookups for actions

    def challenge(self, challenge_id: str) -> dict[str, Any] | None:
        with self._lock:
            c = self.challenges.get(challenge_id)
            return dict(c) if c else None

    def alarm(self, alarm_id: str) -> dict[str, Any] | None:
        with self._lock:
            a = self.alarms.get(alarm_id)
            return dict(a) if a else None


def _force(sub: Subscriber) -> None:
    """End a subscriber's stream even when its queue is full."""
    try:
        while True:
            sub.queue.get_nowait()
    except queue.Empty:
        pass
    sub.put(None)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)
