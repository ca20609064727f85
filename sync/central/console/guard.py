"""Who may use the console, as Flask hooks.

- Host: only names the console answers to (gate/webbase/hosts.py), before anything else.
- Sign-in: every page but the sign-in form and its style sheet needs a signed-in, enabled
  account. Anything else gets the sign-in page itself (401), never a byte of the page
  asked for; a script's request (``/api/``, the live stream, ``X-Requested-With``) gets a
  bare 401. The account is read from the database at every request: a disabled one is
  signed out at once, a changed role counts at once.
- Guesses are throttled per client (gate/webbase/throttle.py): five wrong in a row and
  that client waits a minute before the next is even checked.
- Sessions live in the server's memory (gate/webbase/sessions.py): the cookie carries a
  random id only; they end after ``idle_min`` without a request, ``session_h`` at most,
  at sign-out, and when central restarts. Signing in gives a new id.
- CSRF: every POST carries the session's token and a same-origin ``Origin`` when the
  browser sends one.
"""
from __future__ import annotations

import math
import secrets
from typing import Any, Callable

from flask import Flask, Response, g, jsonify, render_template, request, session

from gate.webbase.hosts import HostCheck
from gate.webbase.sessions import ServerSession, SessionStore
from gate.webbase.throttle import Throttle
from sync.central.console import audit, users

OPEN_ENDPOINTS = ("static", "login")
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def client() -> str:
    return request.remote_addr or ""


def wants_data() -> bool:
    """A script's request, not a page a person opens."""
    return (request.path.startswith("/api/") or request.path == "/events"
            or "text/event-stream" in request.headers.get("Accept", "")
            or request.headers.get("X-Requested-With") == "XMLHttpRequest")


class Guard:
    def __init__(self, app: Flask, hosts: HostCheck, db: Callable[[], Any], *, idle_s: float, lifetime_s: float) -> None:
        self.hosts = hosts
        self.db = db  # this thread's database connection
        self.throttle = Throttle()
        self.sessions = SessionStore(lifetime_s, idle_s=idle_s)
        app.session_interface = self.sessions
        app.before_request(self.gatekeeper)
        app.after_request(self.headers)

    # ------------------------------------------------------------ session

    @staticmethod
    def csrf_token() -> str:
        tok = session.get("csrf")
        if not tok:
            tok = session["csrf"] = secrets.token_urlsafe(32)
        return tok

    @staticmethod
    def csrf_ok(sent: str) -> bool:
        want = session.get("csrf") or ""
        return bool(want) and secrets.compare_digest(sent or "", want)

    def login_page(self, status: int = 401, error: str = "", wait: int = 0, name: str = "") -> Response:
        nxt = request.full_path if request.endpoint != "login" else request.form.get("next", "/")
        body = render_template("login.html", csrf=self.csrf_token(), error=error, wait=wait, name=name,
                               next=nxt if nxt.startswith("/") and not nxt.startswith("//") else "/")
        return Response(body, status, mimetype="text/html")

    def sign_in(self, form: Any) -> tuple[users.User | None, str, int]:
        """(the user, "", 0) when signed in; else (None, error, seconds to wait)."""
        if not self.csrf_ok(form.get("csrf", "")):
            return None, "expired", 0
        wait = self.throttle.admit(client())  # counted before it is checked
        if wait > 0:
            return None, "locked", math.ceil(wait)
        user, error = users.verify(self.db(), str(form.get("name", "")), str(form.get("password", "")))
        if user is None:
            return None, error, math.ceil(self.throttle.locked_for(client()))
        self.throttle.passed(client())
        session.clear()
        session["user"] = user.name
        session["csrf"] = secrets.token_urlsafe(32)
        assert isinstance(session, ServerSession)
        session.renew_id()  # the signed-in session gets an id nobody has seen before
        audit.record(self.db(), user.name, "sign_in", user.name, detail=client())
        return user, "", 0

    @staticmethod
    def sign_out() -> None:
        session.clear()

    # ------------------------------------------------------------ hooks

    def gatekeeper(self) -> Any:
        if not self.hosts.allows(request.host):
            return Response("unknown host name: add it to [console] allowed_hosts\n", 400, mimetype="text/plain")
        if request.method == "POST":
            sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf") or ""
            origin = request.headers.get("Origin")
            if origin and origin != request.host_url.rstrip("/"):
                return jsonify(error="origin", message="cross-site request refused"), 403
            if request.endpoint != "login" and not self.csrf_ok(sent):
                return jsonify(error="csrf", message="the page is out of date: reload it"), 403
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        name = session.get("user")
        user = users.get(self.db(), name) if name else None
        if user is None or user.disabled:
            if name:
                session.clear()
            if wants_data():
                return jsonify(error="sign_in", message="sign in first"), 401
            return self.login_page()
        g.user = user
        return None

    @staticmethod
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: with no-referrer a browser posts a form with "Origin: null"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["X-Frame-Options"] = "DENY"
        if request.endpoint != "static":
            resp.headers["Cache-Control"] = "no-store"
        return resp


def need(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A route that only ``role`` (or more) may use: others get 403 and the page says so."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def inner(*a: Any, **kw: Any) -> Any:
            user = g.get("user")
            if user is None or not user.may(role):
                if wants_data():
                    return jsonify(error="role", message=f"needs a {role} account"), 403
                return Response(render_template("refused.html", needed=role), 403, mimetype="text/html")
            return fn(*a, **kw)
        inner.__name__ = fn.__name__
        inner.__doc__ = fn.__doc__
        return inner
    return wrap
