"""The guard sets a lane's door mode from the page (normal, held open, locked), with a
reason from a list: every change is a `mode` event with who and why (gate/core/door.py)."""
from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

from gate.core.door import MODES
from gate.web.protect import Protection, who


def register(app: Flask, page: Any, guard: Protection) -> None:
    @app.post("/api/mode")
    def set_mode() -> Any:
        data = request.get_json(silent=True)
        data = data if isinstance(data, dict) else {}
        refused = guard.authorize(data)
        if refused is not None:
            return refused
        mode, why, lane = data.get("mode"), data.get("reason"), str(data.get("lane", ""))
        if mode not in MODES:
            return jsonify(error="mode", message="normal, open or locked"), 400
        if why not in page.conf.mode_reasons:
            return jsonify(error="reason", message="choose a reason from the list"), 400
        if lane != "all" and lane not in page.app.lanes:
            return jsonify(error="lane", message="no such lane"), 404
        page.app.set_door_mode(lane, mode, why, who())
        return jsonify(ok=True), 202
