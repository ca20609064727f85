"""The console's pages (Flask routes) and the words and times they show.

    /gates                   the gates board and the site's alarms, live over /events
    /passes?q=...            search by name, unit, card or id
    /passes/<id>             one pass: revoke or restore it (staff, admin), its history
    /audit                   every change made in the console, with who made it
    /users                   the staff accounts (admin)
    /login, /logout          signing in and out (sync/central/console/guard.py)

Every page is Chinese first with English beside it (gate/core/words.toml, [console]).
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, g, jsonify, redirect, render_template, request
from markupsafe import Markup, escape

from gate.config.policy import DEFAULT_CATEGORIES
from gate.core.words import ALARMS, CONSOLE, CONSOLE_EVENTS, DECISIONS, DEVICES, REASONS
from sync.central.console import audit, search, users
from sync.central.console.actions import ActionError, set_revoked
from sync.central.console.guard import Guard, need

TABLES = {"console": CONSOLE, "events": CONSOLE_EVENTS, "alarms": ALARMS, "reasons": REASONS,
          "decisions": DECISIONS, "devices": DEVICES}
PAGE_TABLES: list[Any] = []  # page modules' own sections ([console_roster], ...), read after [console]


def pair(key: str, table: str = "console") -> tuple[str, str]:
    got = TABLES[table].get(key)
    if got is None and table == "console":
        got = next((t[key] for t in PAGE_TABLES if key in t), None)
    return got or (key, key)


def words(key: str, table: str = "console", **fill: Any) -> Markup:
    """Both languages: Chinese first, English beside it (smaller, in the style sheet)."""
    zh, en = pair(key, table)
    if fill:
        zh, en = zh.format(**fill), en.format(**fill)
    return Markup('<span class="zh">{}</span> <span class="en">{}</span>').format(zh, en)


def plain(key: str, table: str = "console", **fill: Any) -> str:
    """Both languages as plain text (a placeholder, a title)."""
    zh, en = pair(key, table)
    if fill:
        zh, en = zh.format(**fill), en.format(**fill)
    return f"{zh} · {en}"


def ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def install(app: Flask, console: Any, guard: Guard) -> None:
    tz = console.tz

    def at(ts: float | str | None) -> str:
        """A time as the office reads it: local, to the second."""
        if ts is None or ts == "":
            return ""
        try:
            dt = datetime.fromtimestamp(float(ts), tz) if not isinstance(ts, str) else datetime.fromisoformat(ts).astimezone(tz)
        except (TypeError, ValueError):
            return str(ts)
        return dt.strftime("%m-%d %H:%M:%S")

    def category(code: str) -> Markup:
        c = DEFAULT_CATEGORIES.get(code, {})  # coloured by class in console.css (the CSP allows no inline style)
        return Markup('<span class="cat cat-{}"><span class="zh">{}</span> <span class="en">{}</span></span>').format(
            code if code in DEFAULT_CATEGORIES else "other", c.get("label_zh") or code, c.get("label_en") or code)

    app.jinja_env.globals.update(w=words, plain=plain, at=at, ago=ago, category=category, escape=escape,
                                 site=console.conf.site)

    @app.context_processor
    def page_globals() -> dict[str, Any]:
        return {"user": g.get("user"), "csrf": guard.csrf_token(), "path": request.path}

    # ------------------------------------------------------------ signing in and out

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "GET":
            return guard.login_page(200)
        user, error, wait = guard.sign_in(request.form)
        if user is None:
            return guard.login_page(401, error, wait, str(request.form.get("name", ""))[:32])
        nxt = str(request.form.get("next") or "/")
        return redirect(nxt if nxt.startswith("/") and not nxt.startswith("//") else "/", 303)

    @app.post("/logout")
    def logout() -> Any:
        guard.sign_out()
        return redirect("/login", 303)

    # ------------------------------------------------------------ gates

    @app.get("/")
    def index() -> Any:
        return redirect("/gates")

    @app.get("/gates")
    def gates() -> str:
        return render_template("gates.html", board_html=Markup(console.board_html()))

    @app.get("/api/board")
    def board_api() -> Any:
        return jsonify(html=console.board_html())

    @app.get("/events")
    def events() -> Response:
        q = console.live.subscribe()
        if q is None:
            return Response("busy\n", 503, mimetype="text/plain", headers={"Retry-After": "10"})
        return Response(console.live.stream(q, console.stopping), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------ passes

    @app.get("/passes")
    def passes() -> str:
        q = request.args.get("q", "")[: search.MAX_QUERY]
        t0 = time.perf_counter()
        found = search.search(console.db(), q) if q.strip() else []
        return render_template("passes.html", q=q, found=found, ms=(time.perf_counter() - t0) * 1000)

    @app.get("/passes/<path:pass_id>")
    def pass_page(pass_id: str) -> Any:
        return show_pass(pass_id)

    def show_pass(pass_id: str, error: str = "", reason: str = "", status: int = 200) -> Any:
        db = console.db()
        p = search.one(db, pass_id)
        if p is None:
            return Response(render_template("missing.html"), 404, mimetype="text/html")
        body = render_template(
            "pass.html", p=p, error=error, reason=reason, done=request.args.get("done", ""), version=request.args.get("v", ""),
            history=audit.recent(db, target=pass_id, limit=50), at_gates=search.gate_records(db, pass_id))
        return Response(body, status, mimetype="text/html")

    @app.post("/passes/<path:pass_id>/revoke")
    @need("staff")
    def revoke(pass_id: str) -> Any:
        what = request.form.get("action")
        if what not in ("revoke", "restore"):
            return show_pass(pass_id, "bad_request", status=400)
        reason = str(request.form.get("reason", ""))
        try:
            v = set_revoked(console.store(), pass_id, revoked=what == "revoke", who=g.user.name, reason=reason,
                            notify=console.notify)
        except ActionError as exc:
            return show_pass(pass_id, {"reason": "reason_needed"}.get(exc.code, exc.code), reason, 409 if exc.code == "already" else 400)
        return redirect(f"/passes/{quote(pass_id, safe='')}?done={what}&v={v}", 303)

    # ------------------------------------------------------------ audit, accounts

    @app.get("/audit")
    def audit_page() -> str:
        who = request.args.get("who") or None
        return render_template("audit.html", entries=audit.recent(console.db(), limit=500, who=who), who=who or "")

    @app.get("/users")
    @need("admin")
    def users_page() -> str:
        return render_template("users.html", accounts=users.all_users(console.db()))

    @app.errorhandler(404)
    def not_found(_: Any) -> Any:
        return Response(render_template("missing.html"), 404, mimetype="text/html")
