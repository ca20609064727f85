"""Who may use the guard's page and how its actions are protected, as Flask hooks.

- Host: only names the page answers to (gate.webbase.hosts), before anything else.
- Sign-in: beyond localhost, with a password set, a browser signs in first.
- CSRF: every POST (the sign-in form too) carries the page's token, and a same-origin
  ``Origin`` when the browser sends one.
- Actions: with a password or PIN set, the session must be unlocked; a guess is
  checked through the per-client throttle (gate.webbase.throttle). Sessions are kept on the
  server (gate.webbase.sessions): unlocking, signing in and Lock give the browser a new id.
"""
from __future__ import annotations

import math
import secrets
import time
from typing import Any

from flask import Flask, Response, jsonify, redirect, request, session, url_for

from gate.web.auth import UNLOCK_HOURS, Guardian, is_loopback
from gate.webbase.hosts import HostCheck
from gate.webbase.sessions import ServerSession, SessionStore

OPEN_ENDPOINTS = ("static", "login", "healthz")
API_PREFIX = "/api/v1"  # gate/web/api.py (not imported: the API imports this module)
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def client() -> str:
    """The address of the request's client: what throttling, sessions and streams are counted by."""
    return request.remote_addr or ""


def local() -> bool:
    return is_loopback(client())


def who() -> str:
    """The guard on duty in this browser when they unlocked it with their own PIN."""
    name = session.get("guard")
    if name:
        return str(name) if local() else f"{name}@{request.remote_addr}"
    return "guard" if local() else f"guard@{request.remote_addr}"


class Protection:
    def __init__(self, app: Flask, guardian: Guardian, hosts: HostCheck) -> None:
        self.guardian = guardian
        self.hosts = hosts
        # Kept in memory: Lock takes an unlock back; a restart ends them all.
        app.session_interface = SessionStore(UNLOCK_HOURS * 3600)
        app.before_request(self.gatekeeper)
        app.after_request(self.headers)

    # ------------------------------------------------------------ session

    @staticmethod
    def csrf_token() -> str:
        tok = session.get("csrf")
        if not tok:
            tok = session["csrf"] = secrets.token_urlsafe(32)
            session.permanent = True
        return tok

    @staticmethod
    def renew() -> None:
        assert isinstance(session, ServerSession)
        session.renew_id()

    def _unlock(self, name: str | None = None) -> None:
        if name:
            session["guard"] = name
        session["unlock_until"] = time.time() + UNLOCK_HOURS * 3600
        session.permanent = True
        self.renew()  # the unlocked session gets an id nobody has seen before

    def lock(self) -> None:
        """The record on the server forgets the unlock and the old id: a copy of the
        cookie is worth nothing now. The CSRF token carries over (the page keeps working)."""
        session.pop("unlock_until", None)
        self.renew()

    # ------------------------------------------------------------ hooks

    def gatekeeper(self) -> Any:
        if not self.hosts.allows(request.host):
            return Response("unknown host name: add it to guard.allowed_hosts\n", 400, mimetype="text/plain")
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
            # The HTTP API (gate/web/api.py, or 404 when it is off): a bearer token on every
            # call, never the page's session or sign-in; no cookie, so no CSRF to check.
            return None
        if self.guardian.password and not local() and not session.get("signed_in"):
            if request.path.startswith("/api/") or request.path == "/events":
                return jsonify(error="sign_in", message="sign in first"), 401
            return redirect(url_for("login"))
        if request.method == "POST":
            sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf") or ""
            if not self.csrf_ok(sent):
                return jsonify(error="csrf", message="the page is out of date: reload it"), 403
            origin = request.headers.get("Origin")
            if origin and origin != request.host_url.rstrip("/"):
                return jsonify(error="origin", message="cross-site request refused"), 403
        return None

    @staticmethod
    def csrf_ok(sent: str) -> bool:
        want = session.get("csrf") or ""
        return bool(want) and secrets.compare_digest(sent, want)

    @staticmethod
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        if request.path.startswith("/api/") or request.path == "/":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    # ------------------------------------------------------------ secrets

    def authorize(self, body: dict[str, Any]) -> Response | None:
        """None if the action may go ahead; otherwise the refusal to send."""
        if not self.guardian.required or session.get("unlock_until", 0) > time.time():
            return None
        secret = body.get("secret")
        attempt = self.guardian.check(str(secret), client()) if secret else None
        if attempt is not None and attempt.ok:
            self._unlock(attempt.name)
            return None
        wait = attempt.locked_for if attempt is not None else self.guardian.locked_for(client())
        resp = jsonify(error="locked", wrong=bool(attempt and attempt.wrong), locked_for=math.ceil(wait),
                       message="password or PIN needed")
        resp.status_code = 401
        return resp

    def sign_in(self, form: Any) -> tuple[str, int]:
        """The sign-in form posted: ("", 0) when signed in, else (error, seconds to wait)."""
        if not self.csrf_ok(form.get("csrf", "")):
            return "csrf", 0  # always: a form from another site must not sign this browser in
        attempt = self.guardian.check_password(form.get("password"), client())
        if attempt.ok:
            session["signed_in"] = True
            self._unlock()
            return "", 0
        return ("wrong" if attempt.wrong else "locked"), math.ceil(attempt.locked_for)
