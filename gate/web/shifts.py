"""A guard's shift starts with a handover: the guard taps 交接班, enters their own
PIN (guard.guards_file), and the page lists what the last shift leaves open (alarms
not yet acknowledged, visitors still inside). The shift's start is an `admin`
event (`shift_start`, who, and whom they took over from), which the daily report
lists."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, jsonify, request, session

from gate.core.records import AdminRecord
from gate.web.protect import Protection, local


def visitors_inside(store: Any, tz: Any) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT p.id, p.holder, p.unit, i.since, p.valid_until FROM inside i JOIN passes p ON p.id = i.pass_id"
        " WHERE p.category = 'visitor' ORDER BY i.since"
    ).fetchall()
    hm = lambda ts: None if ts is None else datetime.fromtimestamp(ts, tz).strftime("%H:%M")  # noqa: E731
    return [{"pass": r[0], "holder": r[1], "unit": r[2], "since": hm(r[3]), "until": hm(r[4])} for r in rows]


def register(app: Flask, page: Any, guard: Protection) -> None:
    @app.post("/api/shift")
    def start_shift() -> Any:
        data = request.get_json(silent=True)
        data = data if isinstance(data, dict) else {}
        if not page.guardian.guards:
            broken = page.guards_file.problem  # the file names itself and what it expected
            if broken:
                # The kiosk's guard reads what to tell the desk; elsewhere, only that it is broken.
                where = f"{broken}; " if local() else "the guards file cannot be read (the gate's log names it); "
                return jsonify(error="guards_file_broken", message=f"{where}until it is mended, "
                               "no named guard can start a shift (gate guards add NAME rewrites it)"), 503
            return jsonify(error="no_guards", message="no named guards: gate guards add NAME"), 400
        session.pop("unlock_until", None)  # a shift begins with the new guard's own PIN, always
        refused = guard.authorize(data)
        if refused is not None:
            return refused
        name = session.get("guard")
        if not name:
            guard.lock()
            return jsonify(error="not_a_guard", message="use your own PIN, not the shared one"), 403
        previous = page.on_duty
        page.on_duty = name
        store = page.app.open_store()
        try:
            inside = visitors_inside(store, page.app.tz)
        finally:
            store.close()
        page.app.record_gate_event(AdminRecord(
            at=page.app.clock.now(), lane="", action="shift_start", who=name if local() else f"{name}@{request.remote_addr}",
            reason="", detail=f"took over from {previous}" if previous else "first shift since the gate started",
        ))
        return jsonify(ok=True, guard=name, previous=previous, alarms=page.live.snapshot()["alarms"], visitors=inside)
