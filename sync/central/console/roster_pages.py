"""The console's roster pages (Flask routes), beside sync/central/console/pages.py:

    /roster                          upload a roster (staff, admin): its check runs as a job
    /roster/jobs/<id>                the job: progress, then the dry-run diff; apply on confirmation
    /api/roster/jobs/<id>            the job's progress, polled by the page (static/roster.js)
    /roster/print                    a building's, an entrance's or a unit's pass cards as a PDF
    /roster/visitors                 visitors today, and visitors who overstayed
    /passes/<id>/edit                edit one pass, bind a card to it (staff, admin)

A viewer sees every page and changes nothing (the forms are not shown, and the routes
refuse). Words: gate/core/words.toml [console_roster].
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, g, jsonify, redirect, render_template, request

from gate.config import CATEGORIES
from gate.core.words import CONSOLE_ROSTER
from sync.central import visitors
from sync.central.console import audit, pages, search
from sync.central.console.actions import ActionError
from sync.central.console.cards_pdf import PrintError, cards_pdf
from sync.central.console.guard import Guard, need
from sync.central.console.pass_edit import bind_card, edit_pass, local_day
from sync.central.console.roster_jobs import SHOWN, Jobs

MAX_UPLOAD = 64 * 1024 * 1024  # a 100,000-row roster is ~6 MB as CSV, less as XLSX
UPLOAD_ENDPOINTS = ("roster_upload",)


def install(app: Flask, console: Any, guard: Guard) -> None:
    pages.TABLES["roster"] = CONSOLE_ROSTER
    if CONSOLE_ROSTER not in pages.PAGE_TABLES:  # once, however many consoles a process starts
        pages.PAGE_TABLES.append(CONSOLE_ROSTER)
    jobs = Jobs(console.db_url, console.conf.timezone, console.notify, console.conf.roster.attributes)
    tz = console.tz

    def bigger_body() -> None:
        """The upload may be larger than the other forms (before the guard reads the form for its CSRF token)."""
        if request.endpoint in UPLOAD_ENDPOINTS:
            request.max_content_length = MAX_UPLOAD

    app.before_request_funcs.setdefault(None, []).insert(0, bigger_body)

    def r(key: str, **fill: Any) -> Any:
        return pages.words(key, "roster", **fill)

    app.jinja_env.globals.update(rw=r, rplain=lambda key, **fill: pages.plain(key, "roster", **fill),
                                 day=lambda iso: local_day(iso, tz))

    # ------------------------------------------------------------ upload, check, apply

    @app.get("/roster")
    def roster_page() -> str:
        return render_template("roster.html", jobs=jobs.recent(), tab="import", error=request.args.get("error", ""))

    @app.post("/roster/upload")
    @need("staff")
    def roster_upload() -> Any:
        f = request.files.get("file")
        data = f.read() if f is not None else b""
        if not data:
            return Response(render_template("roster.html", jobs=jobs.recent(), tab="import", error="no_file"), 400,
                            mimetype="text/html")
        job = jobs.check(g.user.name, f.filename or "roster.csv", data, replace=request.form.get("replace") == "yes")
        return redirect(f"/roster/jobs/{job.id}", 303)

    def job_page(job_id: str, error: str = "", status: int = 200) -> Response:
        job = jobs.get(job_id)
        if job is None:
            return Response(render_template("missing.html"), 404, mimetype="text/html")
        return Response(render_template("roster_job.html", job=job, shown=SHOWN, error=error, tab="import"), status,
                        mimetype="text/html")

    @app.get("/roster/jobs/<job_id>")
    def roster_job(job_id: str) -> Response:
        return job_page(job_id)

    @app.get("/api/roster/jobs/<job_id>")
    def roster_job_api(job_id: str) -> Any:
        job = jobs.get(job_id)
        if job is None:
            return jsonify(error="no_job"), 404
        return jsonify(job.progress())

    @app.post("/roster/jobs/<job_id>/apply")
    @need("staff")
    def roster_apply(job_id: str) -> Any:
        job = jobs.get(job_id)
        if job is None:
            return job_page(job_id)
        try:
            jobs.apply(job, str(request.form.get("token", "")), g.user.name)
        except ActionError as exc:
            return job_page(job_id, exc.code, 409)
        return redirect(f"/roster/jobs/{job.id}", 303)

    @app.post("/roster/jobs/<job_id>/recheck")
    @need("staff")
    def roster_recheck(job_id: str) -> Any:
        job = jobs.get(job_id)
        if job is None:
            return job_page(job_id)
        return redirect(f"/roster/jobs/{jobs.recheck(job, g.user.name).id}", 303)

    # ------------------------------------------------------------ printing

    @app.get("/roster/print")
    def roster_print_page() -> str:
        return render_template("roster_print.html", tab="print", unit=request.args.get("unit", ""), error="",
                               has_key=console.conf.pass_key is not None)

    @app.post("/roster/print")
    @need("staff")
    def roster_print() -> Any:
        unit = str(request.form.get("unit", "")).strip()[:64]
        t0 = time.perf_counter()
        try:
            pdf, n, skipped = cards_pdf(console.db(), console.conf, unit)
        except PrintError as exc:
            body = render_template("roster_print.html", tab="print", unit=unit, error=exc.code, message=str(exc),
                                   has_key=console.conf.pass_key is not None)
            return Response(body, 400 if exc.code != "no_key" else 503, mimetype="text/html")
        audit.record(console.db(), g.user.name, "cards_print", unit, "",
                     f"{n} cards; {len(skipped)} skipped (revoked or expired); {time.perf_counter() - t0:.1f} s")
        name = f"passes-{unit}.pdf"
        return Response(pdf, mimetype="application/pdf", headers={
            "Content-Disposition": f"attachment; filename=\"passes.pdf\"; filename*=UTF-8''{quote(name)}",
            "X-Cards": str(n)})

    # ------------------------------------------------------------ visitors

    @app.get("/roster/visitors")
    def roster_visitors() -> str:
        now = time.time()
        midnight = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        db = console.db()
        return render_template("roster_visitors.html", tab="visitors", today=visitors.listing(db, now, since=midnight),
                               over=visitors.overstays(db, now))

    # ------------------------------------------------------------ one pass: edit, bind a card

    def edit_page(pass_id: str, *, error: str = "", fill: dict[str, Any] | None = None, form: Any = None,
                  status: int = 200) -> Response:
        p = search.one(console.db(), pass_id)
        if p is None:
            return Response(render_template("missing.html"), 404, mimetype="text/html")
        body = render_template("pass_edit.html", p=p, error=error, fill=fill or {}, form=form, categories=CATEGORIES,
                               done=request.args.get("done", ""), version=request.args.get("v", ""))
        return Response(body, status, mimetype="text/html")

    @app.get("/passes/<path:pass_id>/edit")
    def pass_edit_page(pass_id: str) -> Response:
        return edit_page(pass_id)

    @app.post("/passes/<path:pass_id>/edit")
    @need("staff")
    def pass_edit(pass_id: str) -> Any:
        try:
            v, _ = edit_pass(console.store(), pass_id, request.form, who=g.user.name, tz=tz, notify=console.notify)
        except ActionError as exc:
            return edit_page(pass_id, error=exc.code, fill={"message": str(exc)}, form=request.form,
                             status=404 if exc.code == "no_pass" else 400)
        return redirect(f"/passes/{quote(pass_id, safe='')}/edit?done=edited&v={v}", 303)

    @app.post("/passes/<path:pass_id>/card")
    @need("staff")
    def pass_card(pass_id: str) -> Any:
        try:
            v = bind_card(console.store(), pass_id, str(request.form.get("card", "")), who=g.user.name,
                          reason=str(request.form.get("reason", "")), notify=console.notify)
        except ActionError as exc:
            fill = getattr(exc, "fill", None) or {"message": str(exc)}
            return edit_page(pass_id, error=exc.code, fill=fill, status=409 if exc.code == "card_taken" else 400)
        return redirect(f"/passes/{quote(pass_id, safe='')}/edit?done=bound&v={v}", 303)
