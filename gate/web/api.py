"""The gate's local HTTP API under /api/v1/: for an intercom, Home Assistant's REST
integration or Node-RED to see the lanes, read the events and open a door.

Served by the guard page's server (waitress) when ``[guard] api = true``: the same
listen address, the same Host allow-list (gate.web.hosts). Nothing else of the page
applies: no cookies, no CSRF, no session. A client sends
``Authorization: Bearer <token>``, a token of its own made with `gate tokens add NAME
--can open,read` and kept hashed in ``guard.tokens_file`` (gate/desk/api_tokens.py),
read again when it changes, so `gate tokens remove` takes effect at once. Wrong tokens
are throttled per client address as the page's PIN is (gate.web.auth.Throttle, an
instance of its own, so a program guessing tokens cannot lock the guard's PIN out).

Rights: any valid token lists the lanes; ``read`` reads events; ``open`` opens a door,
recorded (as the guard's opening is) as an ``override`` event with who = ``api:NAME``.

``ROUTES`` is the route table: the blueprint is built from it, and so is
docs/openapi.json (``python -m gate.cli.api_docs``).
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from gate.web.auth import Throttle
from gate.web.protect import client

PREFIX = "/api/v1"
BLUEPRINT = "api_v1"
MAX_REASON = 200
MAX_EVENTS = 1000
DEFAULT_EVENTS = 100


# ---------------------------------------------------------------- the route table


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query"
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    rule: str  # a Flask rule under PREFIX
    endpoint: str
    right: str | None  # None: no token; "any": any valid token; else the right it needs
    summary: str
    description: str
    ok_status: int
    ok_schema: dict[str, Any]
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # JSON Schema of the request body
    errors: tuple[int, ...] = field(default=())  # besides the auth errors the right implies


LANE_NAME = {"type": "string", "pattern": "^[a-z0-9_-]{1,32}$"}
ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "a short code: no_token, bad_token, throttled, forbidden, not_found, "
                  "bad_request, no_relay, door_locked, method_not_allowed"},
        "detail": {"type": "string", "description": "what went wrong, for a person"},
    },
}
DOOR = {
    "type": "object",
    "required": ["lock", "contact", "mode"],
    "properties": {
        "lock": {"enum": ["locked", "unlocked", None], "description": "the relay; null: the lane has no door relay"},
        "contact": {"enum": ["open", "closed", None], "description": "the door contact; null: the lane has none"},
        "mode": {"enum": ["normal", "open", "locked"], "description": "the door mode (README, Door modes)"},
    },
}
DEVICE = {
    "type": "object",
    "required": ["ok"],
    "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
}
LANE = {
    "type": "object",
    "required": ["name", "direction", "door", "devices", "alive"],
    "properties": {
        "name": LANE_NAME,
        "direction": {"enum": ["in", "out"]},
        "label": {"type": ["string", "null"], "description": "the lane's display name, if it has one"},
        "door": DOOR,
        "devices": {"type": "object", "additionalProperties": DEVICE,
                    "description": "device name -> health, as the lane last heard it"},
        "alive": {"type": "boolean", "description": "the lane's engine thread is running"},
    },
}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/health", "health", None,
        "Is the gate running?",
        "No token needed. Only whether every lane and service is alive and turning: nothing personal, "
        "no counts. 200 when it is, 503 when it is not.",
        200, {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}},
        errors=(503,),
    ),
    Route(
        "GET", "/lanes", "lanes", "any",
        "The lanes and their doors",
        "Every lane: name, direction, the door's lock, contact and mode, its devices' health. Any valid token.",
        200, {"type": "object", "required": ["gate", "lanes"],
              "properties": {"gate": {"type": "string"}, "lanes": {"type": "array", "items": LANE}}},
    ),
    Route(
        "GET", "/events", "events", "read",
        "Recent events, as stored",
        "The gate's events after `since_seq`, oldest first, at most `limit`; each exactly as stored and sent "
        "upstream (sync/schemas/event.schema.json). Poll with `since_seq` = the last `next_since_seq`. "
        "Needs the `read` right.",
        200, {"type": "object", "required": ["events", "next_since_seq"],
              "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                             "next_since_seq": {"type": "integer", "minimum": 0}}},
        params=(
            Param("since_seq", "query", {"type": "integer", "minimum": 0, "default": 0},
                  "only events with a seq above this"),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_EVENTS, "default": DEFAULT_EVENTS},
                  "at most this many events"),
        ),
        errors=(400,),
    ),
    Route(
        "POST", "/lanes/<lane>/open", "open_lane", "open",
        "Open a lane's door",
        "Unlocks the lane's door for `door.unlock_s`, as the guard's Open door does; recorded as an `override` "
        "event (action open_door) with who = `api:<token name>` and the reason. Needs the `open` right. "
        "409 when the lane has no relay, or its door mode is `locked` (a lockdown: only the guard opens then). "
        "202: the lane has been told (it acts within milliseconds; GET /lanes shows the lock).",
        202, {"type": "object", "required": ["ok", "lane", "who"],
              "properties": {"ok": {"const": True}, "lane": LANE_NAME, "who": {"type": "string"}}},
        params=(Param("lane", "path", LANE_NAME, "the lane's name", required=True),),
        body={"type": "object", "required": ["reason"], "additionalProperties": False,
              "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON,
                                        "description": "why (recorded with the event); no control characters"}}},
        errors=(400, 404, 409),
    ),
)


# ---------------------------------------------------------------- errors and auth


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    resp = jsonify(error=code, detail=detail)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


CHALLENGE = 'Bearer realm="gate"'


class Authority:
    """Who a request is: its bearer token checked against the tokens file, wrong ones
    throttled per client address."""

    def __init__(self, tokens: Callable[[str], Any], throttle: Throttle | None = None) -> None:
        self._check = tokens  # token -> gate.desk.api_tokens.Token | None
        self.throttle = throttle or Throttle()

    def __call__(self, right: str) -> tuple[Any, Response | None]:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.strip().partition(" ")
        given = given.strip()
        who = client()
        if scheme.lower() != "bearer" or not given:
            return None, error(401, "no_token", "send Authorization: Bearer <token> (gate tokens add NAME)",
                               {"WWW-Authenticate": CHALLENGE})
        wait = self.throttle.admit(who)  # counted before it is checked, as the page's PIN
        if wait > 0:
            return None, error(429, "throttled", f"too many wrong tokens from this address: wait {math.ceil(wait)} s",
                               {"Retry-After": str(math.ceil(wait))})
        tok = self._check(given)
        if tok is None:
            return None, error(401, "bad_token", "this token is not known here (removed, or mistyped)",
                               {"WWW-Authenticate": CHALLENGE + ', error="invalid_token"'})
        self.throttle.passed(who)
        if right != "any" and not tok.can(right):
            return None, error(403, "forbidden", f"token {tok.name!r} lacks the {right!r} right",
                               {"WWW-Authenticate": CHALLENGE + f', error="insufficient_scope", scope="{right}"'})
        return tok, None


# ---------------------------------------------------------------- the blueprint


def _int_arg(name: str, default: int, lo: int, hi: int | None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number") from None
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name} must be {lo} or more" + (f" and at most {hi}" if hi is not None else ""))
    return v


def _reason(data: Any) -> str:
    if not isinstance(data, dict):
        raise ValueError('send a JSON object: {"reason": "..."} (Content-Type: application/json)')
    extra = sorted(set(data) - {"reason"})
    if extra:
        raise ValueError(f"unknown field(s): {', '.join(extra)}")
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("reason is required: why the door is opened (recorded)")
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise ValueError(f"reason is at most {MAX_REASON} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in reason):
        raise ValueError("reason has a control character (a newline?)")
    return reason


def lane_view(app: Any, name: str, lane: Any, health: dict[str, Any]) -> dict[str, Any]:
    cfg = lane.cfg
    s = lane.door.s
    return {
        "name": name,
        "direction": cfg.direction,
        "label": getattr(cfg, "label", None),
        "door": {
            "lock": None if lane.relay is None else ("unlocked" if s.unlocked else "locked"),
            "contact": None if cfg.door_contact is None else ("open" if s.door_open else "closed"),
            "mode": s.mode,
        },
        "devices": health.get(name, {}),
        "alive": bool(lane.alive),
    }


def make_blueprint(page: Any, authority: Authority | None) -> Blueprint:
    """The API's blueprint, routes from ROUTES. ``page`` (a GuardPage) may be None to
    list the routes (the docs' generator and test) without a gate."""
    bp = Blueprint(BLUEPRINT, __name__, url_prefix=PREFIX)

    def health() -> Any:
        ok = bool(page.app.healthy())
        return jsonify(ok=ok), (200 if ok else 503)

    def lanes(_tok: Any) -> Any:
        app = page.app
        h = app.device_health()
        return jsonify(gate=app.config.gate.id, lanes=[lane_view(app, n, l, h) for n, l in app.lanes.items()])

    def events(_tok: Any) -> Any:
        try:
            since = _int_arg("since_seq", 0, 0, None)
            limit = _int_arg("limit", DEFAULT_EVENTS, 1, MAX_EVENTS)
        except ValueError as exc:
            return error(400, "bad_request", str(exc))
        store = page.app.open_store()
        try:
            rows = store.events(since_seq=since, limit=limit)
        finally:
            store.close()
        return jsonify(events=rows, next_since_seq=rows[-1]["seq"] if rows else since)

    def open_lane(tok: Any, lane: str) -> Any:
        target = page.app.lanes.get(lane)
        if target is None:
            return error(404, "not_found", f"no lane named {lane!r} (GET {PREFIX}/lanes lists them)")
        try:
            reason = _reason(request.get_json(silent=True))
        except ValueError as exc:
            return error(400, "bad_request", str(exc))
        if target.relay is None:
            return error(409, "no_relay", f"lane {lane!r} has no door relay to open")
        if target.door_mode == "locked":
            # A lockdown is a person's decision (the guard, central, a schedule): a client
            # of the API does not open through it; the guard still can, from the page.
            return error(409, "door_locked", f"lane {lane!r} is in door mode locked: only the guard opens it now")
        who = f"api:{tok.name}"
        if not page.app.open_door(lane, reason, who):
            return error(404, "not_found", f"no lane named {lane!r}")
        return jsonify(ok=True, lane=lane, who=who), 202

    handlers: dict[str, Callable[..., Any]] = {"health": health, "lanes": lanes, "events": events, "open_lane": open_lane}

    def guarded(route: Route) -> Callable[..., Any]:
        fn = handlers[route.endpoint]
        if route.right is None:
            return fn

        def view(**kw: Any) -> Any:
            assert authority is not None
            tok, refused = authority(route.right or "any")
            if refused is not None:
                return refused
            return fn(tok, **kw)

        return view

    for route in ROUTES:
        bp.add_url_rule(route.rule, route.endpoint, guarded(route), methods=[route.method])
    return bp


def register(app: Flask, page: Any) -> Authority:
    """Serve the API on the page's Flask app (only called with ``[guard] api = true``)."""
    from gate.desk.api_tokens import TokensFile

    tokens = TokensFile(page.app.config.tokens_path())
    authority = Authority(tokens.check)
    app.register_blueprint(make_blueprint(page, authority))

    def json_errors(exc: HTTPException) -> Any:
        # Unknown paths and methods under /api/v1 answer in the API's JSON; the page keeps Flask's.
        if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
            return exc
        code = {404: "not_found", 405: "method_not_allowed", 413: "bad_request"}.get(exc.code or 500, "error")
        resp = error(exc.code or 500, code, exc.description or exc.name)
        if exc.code == 405:
            resp.headers["Allow"] = ", ".join(exc.valid_methods or [])  # type: ignore[attr-defined]
        return resp

    for status in (404, 405, 413):
        app.register_error_handler(status, json_errors)
    return authority


def served_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, OpenAPI path) of every route the API blueprint serves on ``app``."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(BLUEPRINT + "."):
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<{arg}>", "{" + arg + "}").replace(f"<string:{arg}>", "{" + arg + "}")
            for m in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                out.append((m, path))
    return sorted(out)
