"""The gates board: every gate as central knows it, and the site's alarms.

Per gate: its state as ``gate central status`` judges it (sync/central/store.py
``liveness``: online, offline, stale after three missed heartbeats, silent when stale
longer than ``gate_silent_alarm_s``) and since when (``console_gate_state``, kept as
the state changes), the pass-table and policy versions it reported, its outbox depth,
its devices that report a fault, its last event, and today's decisions (received since
local midnight). Alarms: those of the last ``ALARM_DAYS`` days across the site, open
(no gate has sent an acknowledgement of them) or acknowledged, with who acknowledged.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, tzinfo
from typing import Any

ALARM_DAYS = 7
RECENT_ACKED = 20


def midnight(now: float, tz: tzinfo) -> float:
    local = datetime.fromtimestamp(now, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


_KEPT = ("passes_version", "policy_version", "outbox_depth", "devices", "software")


def _since(db: Any, live: dict[str, dict[str, Any]], now: float) -> dict[str, float]:
    """Since when each gate is in its state: kept in the database, moved when it changes.
    A gate's last full status is kept too, and fills in what an offline gate's will lacks."""
    known = {r[0]: (r[1], float(r[2]), r[3]) for r in db.all("SELECT gate, state, since, last FROM console_gate_state")}
    out = {}
    changed = []
    for gate, st in live.items():
        state = st["state"]
        was = known.get(gate)
        full = {k: st[k] for k in _KEPT if k in st}
        last = json.dumps(full, sort_keys=True, ensure_ascii=False) if "passes_version" in full else (was[2] if was else None)
        if last and "passes_version" not in full:
            st.update({k: v for k, v in json.loads(last).items() if k not in st} | {"kept": True})
        if was is not None and was[0] == state and was[2] == last:
            out[gate] = was[1]
            continue
        if was is not None and was[0] == state:  # the same state, a newer status
            out[gate] = was[1]
            changed.append((gate, state, was[1], last))
            continue
        # New to the board: since its last status (online, offline) or since it went quiet.
        if state in ("stale", "silent"):
            since = float(st["received"]) + 3 * float(st.get("heartbeat_s") or 30.0)
        elif was is None:
            since = float(st["received"])
        else:
            since = now
        out[gate] = since
        changed.append((gate, state, since, last))
    if changed:
        with db.tx():
            db.executemany("INSERT INTO console_gate_state (gate, state, since, last) VALUES (?,?,?,?) ON CONFLICT (gate)"
                           " DO UPDATE SET state = excluded.state, since = excluded.since, last = excluded.last", changed)
    return out


def _today(db: Any, start: float) -> dict[str, dict[str, int]]:
    rows = db.all(
        "SELECT gate, count(*), sum(CASE WHEN body LIKE ? THEN 1 ELSE 0 END)"  # a parameter: psycopg reads % in SQL
        " FROM events WHERE type = 'decision' AND received >= ? GROUP BY gate", ('%"decision":"allow"%', start))
    return {r[0]: {"decisions": int(r[1]), "allowed": int(r[2] or 0), "denied": int(r[1]) - int(r[2] or 0)} for r in rows}


def _last_event(db: Any, gate: str) -> dict[str, Any] | None:
    row = db.one("SELECT body, received FROM events WHERE gate = ? ORDER BY seq DESC LIMIT 1", (gate,))
    if row is None:
        return None
    ev = json.loads(row[0])
    return {"type": ev.get("type"), "ts": ev.get("ts"), "lane": ev.get("lane") or "", "received": float(row[1]),
            "what": ev.get("decision") or ev.get("kind") or ev.get("action") or ev.get("mode") or "",
            "reason": ev.get("reason") or ""}


def _faults(devices: Any) -> list[dict[str, str]]:
    out = []
    if isinstance(devices, dict):
        for lane, devs in sorted(devices.items()):
            for dev, h in sorted((devs or {}).items()):
                if isinstance(h, dict) and not h.get("ok", True):
                    out.append({"lane": lane, "device": dev, "detail": str(h.get("detail") or "")})
    return out


def gates(store: Any, now: float, tz: tzinfo, silent_after_s: float) -> list[dict[str, Any]]:
    db = store.db
    live = store.liveness(now, silent_after_s)
    received = {r[0]: float(r[1]) for r in db.all("SELECT gate, received FROM status")}
    for gate, st in live.items():
        st["received"] = received.get(gate, now)
    since = _since(db, live, now)
    today = _today(db, midnight(now, tz))
    out = []
    for gate, st in live.items():
        out.append({
            "gate": gate, "state": st["state"], "since": since.get(gate, now), "status_ts": st.get("ts"),
            "passes_version": st.get("passes_version"), "policy_version": st.get("policy_version"),
            "outbox_depth": st.get("outbox_depth"), "software": st.get("software") or "", "kept": bool(st.get("kept")),
            "faults": _faults(st.get("devices")), "devices_known": isinstance(st.get("devices"), dict),
            "last": _last_event(db, gate), "today": today.get(gate, {"decisions": 0, "allowed": 0, "denied": 0}),
        })
    return out


def alarms(db: Any, now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(open alarms newest first, the latest acknowledged ones with who acknowledged them)."""
    start = now - ALARM_DAYS * 86400
    raised = [json.loads(r[0]) | {"received": float(r[1])} for r in db.all(
        "SELECT body, received FROM events WHERE type = 'alarm' AND received >= ? ORDER BY received DESC", (start,))]
    acks: dict[str, dict[str, Any]] = {}
    for (body,) in db.all("SELECT body FROM events WHERE type = 'ack' AND received >= ?", (start,)):
        ev = json.loads(body)
        if ev.get("alarm_id"):
            acks.setdefault(ev["alarm_id"], ev)
    open_, acked = [], []
    for a in raised:
        ack = acks.get(a["id"])
        if ack is None:
            open_.append(a)
        elif len(acked) < RECENT_ACKED:
            acked.append({**a, "ack_who": ack.get("who") or "", "ack_ts": ack.get("ts") or ""})
    return open_, acked


def board(store: Any, now: float, tz: tzinfo, silent_after_s: float, roster_version: int | None = None) -> dict[str, Any]:
    """Everything the board shows, at ``now``."""
    open_, acked = alarms(store.db, now)
    return {"now": now, "gates": gates(store, now, tz, silent_after_s), "open_alarms": open_, "acked_alarms": acked,
            "roster_version": store.passes_version if roster_version is None else roster_version,
            "today": datetime.fromtimestamp(now, tz).date().isoformat(),
            "yesterday": (datetime.fromtimestamp(now, tz).date() - timedelta(days=1)).isoformat()}
