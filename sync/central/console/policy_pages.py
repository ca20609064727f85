"""The console's policy pages (Flask routes). Every account reads; staff and admins
check and replay a document; only admins publish.

    /policy                    the published policy as a document to edit, and its summary
    POST /policy/check         the document checked: errors name the key and what was expected;
                               else what it changes from the published policy
    POST /policy/replay        the same, and the decisions central holds from every gate over
                               since..until re-decided under it (old -> new, with examples)
    POST /policy/publish       checked, signed, kept and sent to every gate (admin, a note)
    /policy/history            every published version: when, who, the note, its diff

A refused document is shown again as it was typed (nothing is lost). Words: gate/core/
words.toml [console_policy]; data: policy_data.py.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import Flask, Response, g, redirect, render_template, request

from gate.core.words import CONSOLE_POLICY
from sync.central.console import policy_data
from sync.central.console.guard import Guard, need
from sync.central.console.report_pages import parse_day, plain_of, words_of

MAX_DOCUMENT = 48 * 1024


def install(app: Flask, console: Any, guard: Guard) -> None:
    tz = console.tz
    app.jinja_env.globals.update(pw=words_of(CONSOLE_POLICY), pplain=lambda k, **f: plain_of(CONSOLE_POLICY, k, **f),
                                 show_value=lambda v: CONSOLE_POLICY["off"][0] if v is None else policy_data._show(v))

    def today() -> date:
        return datetime.now(tz).date()

    def page(status: int = 200, **extra: Any) -> Response:
        db = console.db()
        pub = policy_data.current(db)
        text = extra.pop("text", None)
        since = extra.pop("since", None) or (today() - timedelta(days=7)).isoformat()
        until = extra.pop("until", None) or today().isoformat()
        body = render_template("policy.html", pub=pub, text=text if text is not None else policy_data.document(pub),
                               since=since, until=until, next_version=(pub.version if pub else 0) + 1,
                               published=request.args.get("published", ""), **extra)
        return Response(body, status, mimetype="text/html")

    def checked() -> tuple[Any, dict[str, Any]]:
        """(the policy or None, what the page shows about the document sent)."""
        text = str(request.form.get("document", ""))[:MAX_DOCUMENT]
        view: dict[str, Any] = {"text": text, "note": str(request.form.get("note", ""))[:500],
                                "since": request.form.get("since"), "until": request.form.get("until")}
        try:
            policy = policy_data.parse(text)
        except policy_data.PolicyError as exc:
            return None, {**view, "errors": exc.lines}
        pub = policy_data.current(console.db())
        return policy, {**view, "valid": True, "changes": policy_data.changes(pub, policy)}

    @app.get("/policy")
    def policy_page() -> Response:
        return page()

    @app.post("/policy/check")
    @need("staff")
    def policy_check() -> Response:
        policy, view = checked()
        return page(200 if policy else 400, **view)

    @app.post("/policy/replay")
    @need("staff")
    def policy_replay() -> Response:
        policy, view = checked()
        if policy is None:
            return page(400, **view)
        d0 = parse_day(view["since"], today() - timedelta(days=7))
        d1 = parse_day(view["until"], today())
        if d0 is None or d1 is None or d1 < d0 or (d1 - d0).days >= policy_data.MAX_REPLAY_DAYS:
            return page(400, **view, period_error=True)
        result = policy_data.replay(console.db(), policy, d0, d1, tz)
        return page(**{**view, "since": d0.isoformat(), "until": d1.isoformat()}, replay=result)

    @app.post("/policy/publish")
    @need("admin")
    def policy_publish() -> Any:
        policy, view = checked()
        if policy is None:
            return page(400, **view)
        if not view["note"].strip():
            return page(400, **view, publish_error="note_needed")
        try:
            v = policy_data.publish(console.store(), console.conf, policy, view["text"], who=g.user.name, note=view["note"].strip())
        except policy_data.PolicyError as exc:
            return page(409, **{**view, "valid": False}, errors=exc.lines, publish_error=exc.code, publish_fill=exc.fill)
        except (OSError, ValueError) as exc:  # the signing key unreadable, a version below 1
            return page(500, **{**view, "valid": False}, errors=[f"policy: {exc}"])
        console.notify()  # central's publisher sends it now, retained
        return redirect(f"/policy?published={v}", 303)

    @app.get("/policy/history")
    def policy_history() -> str:
        return render_template("policy_history.html", entries=policy_data.history(console.db()))
