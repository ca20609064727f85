"""The guard's page: a Flask app served by waitress from a thread of the daemon.

Live changes reach the page by server-sent events (``/events``), never by polling.
Actions post to ``/api/...`` with the page's CSRF token, and with the password or
PIN when one is configured (see gate.web.auth). Everything the page loads comes
from this server (a Content-Security-Policy of 'self' says so to the browser).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, redirect, render_template, request, url_for
from waitress import wasyncore

from gate.config.sections import VISIT_LENGTHS
from gate.core.events import AckAlarm, GuardAnswer, ManualOpen
from gate.core.records import AckRecord
from gate.web import i18n
from gate.web.auth import UNLOCK_HOURS, AuthConfigError, Guardian, is_loopback, read_secret
from gate.webbase.hosts import HostCheck
from gate.web.live import LiveState
from gate.web.protect import Protection, who
from gate.web.status import Monitor

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
HEARTBEAT_S = 15.0


class GuardPageError(Exception):
    """The page cannot start as configured; the message is for the operator."""


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class GuardPage:
    """The page's parts (live state, monitor, visitor desk, web server) around a GateApp.

    Create it before or after ``app.start()``; ``start()`` needs the lanes running.
    """

    def __init__(
        self,
        app: Any,
        *,
        listen: str | None = None,
        signer: Any = None,
        signer_note: str | None = None,
        monitor_every_s: float = 5.0,
        threads: int = 8,
    ) -> None:
        from gate.desk.visitors import VisitorDesk

        self.app = app
        self.conf = app.config.guard
        self.host, self.port = parse_listen(listen or self.conf.listen)
        try:
            password = read_secret(self.conf.password_file, "password")
            pin = read_secret(self.conf.pin_file, "pin")
        except AuthConfigError as exc:
            raise GuardPageError(str(exc)) from None
        if not is_loopback(self.host) and not password:
            raise GuardPageError(
                f"guard.listen = {self.host}:{self.port} serves the guard page beyond this machine; "
                "that needs a guard password: set guard.password_file (a file holding the password, mode 0600), "
                "or listen on 127.0.0.1"
            )
        from gate.desk.guards import GuardsFile

        self.guards_file = GuardsFile(self.conf.guards_file)
        self.guardian = Guardian(password, pin, guards=self.guards_file.current)
        self.on_duty: str | None = None  # the named guard whose shift it is (gate/web/shifts.py)
        self.hosts = HostCheck.build(self.host, self.conf.allowed_hosts)
        if not self.guardian.required:
            log.warning("guard page: no guard.pin_file or password_file: any program here can open the door through it")
        self.lang = self.conf.language
        self.live = LiveState(tz=app.tz, open_store=app.open_store, max_subscribers=max(1, threads - 3))
        app.add_sink(self.live.sink)
        self.monitor = Monitor(app, self.live.publish, every_s=monitor_every_s)
        self.live.on_change = self.monitor.changed
        if signer is None:
            signer, note = VisitorDesk.load_signer(app.config.keys.signing)
            signer_note = signer_note or note
        self.visitors = VisitorDesk(
            signer=signer,
            open_store=app.open_store,
            now=app.clock.now,
            tz=app.tz,
            valid_until=self.conf.visitor_valid_until,
            default_length=app.config.visitors.default_length,
            keyring=app.keyring,
            no_key_reason=signer_note or "no signing key is configured (keys.signing)",
        )
        self.threads = threads
        self.api: Any = None  # the HTTP API's Authority when [guard] api = true (gate/web/api.py)
        self.flask = create_flask(self)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}/"

    def check_port(self) -> None:
        """Can the page listen where it is told to? (Another gate, or another program,
        on the port: say so before the lanes start, naming the way to change it.)"""
        import socket

        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(infos[0][4])
        except OSError as exc:
            raise GuardPageError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc} "
                "(another gate or program there? set guard.listen, or gate run --listen HOST:PORT)"
            ) from None

    def start(self) -> None:
        from waitress.server import create_server

        store = self.app.open_store()
        try:
            self.live.load_history(store, self.app.clock.now())
        finally:
            store.close()
        self.live.start()
        self.monitor.start()
        try:
            self._server = create_server(
                self.flask, host=self.host, port=self.port, threads=self.threads, ident="gate", channel_timeout=60
            )
        except OSError as exc:
            self.live.stop()
            self.monitor.stop()
            raise GuardPageError(f"guard page: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.port = self._server.effective_port
        self._thread = threading.Thread(target=self._serve, name="guard-web", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.run()
        except Exception:
            if not self.stopping.is_set():
                log.exception("guard page: the web server stopped")

    def stop(self) -> None:
        """Ends every stream, closes every connection and the port; bounded (well under a second)."""
        self.stopping.set()
        self.live.end_streams()  # the streams' worker threads return at once
        self.monitor.stop(timeout=0)
        srv = self._server
        if srv is not None:
            logging.getLogger("waitress").setLevel(logging.CRITICAL)
            # Closed on the server loop's own thread (asyncore is not thread-safe), woken at
            # once by its trigger: the loop ends without waiting out its poll timeout.
            try:
                srv.trigger.pull_trigger(lambda: wasyncore.close_all(srv._map))
            except OSError:  # woken by something else first, the loop already ran it (and closed the trigger)
                pass
            assert self._thread is not None
            self._thread.join(1.0)
            if self._thread.is_alive():
                log.warning("guard page: the web server did not stop in 1 s; closing its sockets from here")
                wasyncore.close_all(srv._map)
            srv.task_dispatcher.shutdown(timeout=1.0)  # workers end with their streams
        self.live.stop()
        # A refresh under way only reads the store (its own connection): at exit it need not finish.
        self.monitor.stop(timeout=0.5)

    # ------------------------------------------------------------ what the page starts from

    def boot(self) -> dict[str, Any]:
        conf = self.app.config
        cats = {
            name: {"colour": c.colour, "zh": c.label_zh or name, "en": c.label_en or name}
            for name, c in conf.policy.categories.items()
        }
        return {
            "gate": conf.gate.id,
            "timezone": conf.gate.timezone,
            "lang": self.lang,
            "categories": cats,
            "words": i18n.bundle(),
            "lanes": [{"name": l.name, "direction": l.direction, "relay": l.relay is not None, "label": l.label}
                      for l in conf.lanes],
            "open_reasons": list(self.conf.manual_open_reasons),
            "mode_reasons": list(self.conf.mode_reasons),
            "named_guards": bool(self.guardian.guards),
            "on_duty": self.on_duty,
            "auth_required": self.guardian.required,
            "visitor_ready": self.visitors.ready,
            "visitor_note": "" if self.visitors.ready else self.visitors.no_key_reason,
            "visitor_until": self.conf.visitor_valid_until,
            "visitor_lengths": list(VISIT_LENGTHS),  # the form's choices (words: [ui] visit_<length>)
            "visitor_default_length": self.app.config.visitors.default_length,
            "stale_after_h": self.conf.stale_after_h,
        }

    def search(self, q: str, limit: int = 50) -> list[dict[str, Any]]:
        from gate.web.search import search

        return search(self.app, q, limit)


# ---------------------------------------------------------------- the Flask app


def create_flask(page: GuardPage) -> Flask:
    app = Flask("gate.web", template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
    app.config.update(
        SECRET_KEY=os.urandom(32),
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=UNLOCK_HOURS),
        MAX_CONTENT_LENGTH=16 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=0,
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    guard = Protection(app, page.guardian, page.hosts)

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}

    def lane_or_404(name: str) -> Any:
        lane = page.app.lanes.get(name)
        if lane is None:
            abort(404)
        return lane

    # ------------------------------------------------------------ pages

    @app.get("/")
    def index() -> str:
        return render_template(
            "index.html", lang=page.lang, boot=json.dumps(page.boot(), ensure_ascii=False).replace("</", "<\\/"), csrf=guard.csrf_token(),
            title=i18n.UI["title"][0 if page.lang == "zh" else 1],
        )

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error, wait = "", 0
        if request.method == "POST":
            error, wait = guard.sign_in(request.form)
            if not error:
                return redirect(url_for("index"))
        return render_template("login.html", lang=page.lang, csrf=guard.csrf_token(), error=error, locked_for=wait)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(ok=all(l.alive for l in page.app.lanes.values()))

    @app.get("/api/state")
    def state() -> Any:
        return jsonify(page.live.snapshot())

    @app.get("/api/search")
    def search() -> Any:
        q = request.args.get("q", "")[:64]
        return jsonify(q=q, results=page.search(q))

    # ------------------------------------------------------------ actions

    @app.post("/api/unlock")
    def unlock() -> Any:
        refused = guard.authorize(body())
        if refused is not None:
            return refused
        return jsonify(ok=True, unlocked=True)

    @app.post("/api/lock")
    def lock() -> Any:
        guard.lock()
        return jsonify(ok=True)

    @app.post("/api/challenge")
    def answer() -> Any:
        data = body()
        refused = guard.authorize(data)
        if refused is not None:
            return refused
        answer = data.get("answer")
        if answer not in ("confirm", "reject"):
            return jsonify(error="bad_answer", message="answer must be confirm or reject"), 400
        ch = page.live.challenge(str(data.get("challenge_id", "")))
        if ch is None:
            return jsonify(error="gone", message="this check is no longer open"), 409
        lane = lane_or_404(ch["lane"])
        lane.post(GuardAnswer(answer=answer, challenge_id=ch["challenge_id"], who=who()))
        if ch.get("alarm_id"):
            lane.post(AckAlarm(ch["alarm_id"], "passback", who()))
        return jsonify(ok=True), 202

    @app.post("/api/ack")
    def ack() -> Any:
        data = body()
        refused = guard.authorize(data)
        if refused is not None:
            return refused
        alarm = page.live.alarm(str(data.get("alarm_id", "")))
        if alarm is None:
            return jsonify(error="gone", message="this alarm is no longer active"), 409
        lane = page.app.lanes.get(alarm["lane"])
        if lane is not None:
            lane.post(AckAlarm(alarm["id"], alarm["kind"], who()))
        else:  # a gate-wide alarm (e.g. the upload backlog): the ack is a gate event
            page.app.record_gate_event(
                AckRecord(at=page.app.clock.now(), lane=alarm["lane"], alarm_id=alarm["id"], kind=alarm["kind"], who=who())
            )
        return jsonify(ok=True), 202

    @app.post("/api/open")
    def manual_open() -> Any:
        data = body()
        refused = guard.authorize(data)
        if refused is not None:
            return refused
        reason = data.get("reason")
        if reason not in page.conf.manual_open_reasons:
            return jsonify(error="reason", message="choose a reason from the list"), 400
        lane = lane_or_404(str(data.get("lane", "")))
        if lane.relay is None:
            return jsonify(error="no_relay", message="this lane has no door relay"), 400
        lane.post(ManualOpen(reason=reason, who=who()))
        return jsonify(ok=True), 202

    @app.post("/api/visitor")
    def visitor() -> Any:
        from gate.desk.visitors import RegistrationError

        data = body()
        refused = guard.authorize(data)
        if refused is not None:
            return refused
        try:
            vp = page.visitors.register(
                str(data.get("name", "")), str(data.get("id_last4", "")), str(data.get("phone_last4", "")),
                str(data.get("unit", "")), who=who(), length=str(data.get("length") or "") or None,
            )
        except RegistrationError as exc:
            return jsonify(error=exc.code, field=exc.field, message=str(exc)), 400
        for sink in list(page.app.sinks):  # the page itself, the terminal, the LCD ...
            try:
                sink(vp.record)
            except Exception:
                log.exception("a display sink failed on a registration")
        local = vp.valid_until.astimezone(page.app.tz)
        return jsonify(
            ok=True, pass_id=vp.pass_id, holder=vp.holder, unit=vp.unit, phone_last4=vp.phone_last4,
            valid_until=vp.valid_until.isoformat(), valid_until_local=local.strftime("%Y-%m-%d %H:%M"), length=vp.length,
            qr=vp.qr_data_uri(), event_id=vp.record.id,
        )

    from gate.web import modes, shifts, stream

    stream.register(app, page)  # /events: the live stream (gate/web/stream.py)
    modes.register(app, page, guard)  # /api/mode: the door modes (gate/web/modes.py)
    shifts.register(app, page, guard)  # /api/shift: a named guard takes over (gate/web/shifts.py)
    if page.conf.api:
        from gate.desk.api_tokens import TokensError
        from gate.web import api

        try:
            page.api = api.register(app, page)  # /api/v1/: the bearer-token HTTP API (gate/web/api.py)
        except TokensError as exc:
            raise GuardPageError(f"guard.tokens_file: {exc}") from None
    return app
