"""``Console``: the office console's Flask app served by waitress from a thread of the
running central, on central's own database (a connection per server thread; SQLite or
PostgreSQL). ``gate central -c CENTRAL.toml`` starts it when the config has a
``[console]`` section; beyond localhost it warns, and needs the Host names it answers to
(``allowed_hosts``) because DNS rebinding would otherwise let any web page read it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from flask import Flask
from waitress import wasyncore

from gate.webbase.hosts import HostCheck
from gate.webbase.throttle import is_loopback
from sync.central.config import CentralConfig, ConsoleConfig
from sync.central.console import board, roster_pages
from sync.central.console.guard import Guard
from sync.central.console.live import Live
from sync.central.console.map_pages import install as install_map
from sync.central.console.pages import install
from sync.central.console import policy_pages, report_pages
from sync.central.store import CentralStore

log = logging.getLogger("sync.central.console")
HERE = Path(__file__).resolve().parent


class ConsoleError(Exception):
    """The console cannot start as configured; the message is for the operator."""


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class Console:
    """``Console(conf).start()`` … ``stop()``. ``notify`` wakes central's publisher after
    a change (a running ``Central``'s); ``listen`` overrides the config's (tests: port 0)."""

    def __init__(self, conf: CentralConfig, *, db_url: str | None = None, notify: Callable[[], None] = lambda: None,
                 listen: str | None = None, board_every_s: float = 2.0) -> None:
        self.conf = conf
        self.cconf: ConsoleConfig = conf.console or ConsoleConfig()
        self.db_url = db_url or conf.db
        self.notify = notify
        self.tz = ZoneInfo(conf.timezone)
        self.host, self.port = parse_listen(listen or self.cconf.listen)
        if not is_loopback(self.host):
            if not self.cconf.allowed_hosts:
                raise ConsoleError(
                    f"[console] listen = {self.host}:{self.port} serves the console beyond this machine: name the host "
                    "names the office reaches it by in [console] allowed_hosts (and put TLS in front of it), or listen on 127.0.0.1")
            log.warning("console: listening on %s:%d, beyond this machine: passwords travel in clear unless TLS is in front",
                        self.host, self.port)
        self.hosts = HostCheck.build(self.host, self.cconf.allowed_hosts)
        self._local = threading.local()
        self._stores: list[CentralStore] = []
        self._stores_lock = threading.Lock()
        self.stopping = threading.Event()
        self.flask = self._make_flask()
        self.live = Live(self._render_board, every_s=board_every_s, max_streams=max(1, self.cconf.threads - 3))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ the database, per thread

    def store(self) -> CentralStore:
        st = getattr(self._local, "store", None)
        if st is None:
            st = self._local.store = CentralStore(self.db_url)
            with self._stores_lock:
                self._stores.append(st)
        return st

    def db(self) -> Any:
        return self.store().db

    # ------------------------------------------------------------ the board

    def board(self) -> dict[str, Any]:
        return board.board(self.store(), time.time(), self.tz, self.conf.gate_silent_alarm_s)

    def board_html(self) -> str:
        return self.flask.jinja_env.get_template("board.html").render(b=self.board())

    def _render_board(self) -> str:
        return self.board_html()

    # ------------------------------------------------------------ the app

    def _make_flask(self) -> Flask:
        app = Flask("sync.central.console", template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
        app.config.update(SECRET_KEY=os.urandom(32), SESSION_COOKIE_NAME="console", SESSION_COOKIE_SAMESITE="Strict",
                          SESSION_COOKIE_HTTPONLY=True, MAX_CONTENT_LENGTH=64 * 1024, SEND_FILE_MAX_AGE_DEFAULT=0)
        guard = Guard(app, self.hosts, self.db, idle_s=self.cconf.idle_min * 60, lifetime_s=self.cconf.session_h * 3600)
        install(app, self, guard)
        roster_pages.install(app, self, guard)
        report_pages.install(app, self, guard)  # the reports pages
        policy_pages.install(app, self, guard)  # the policy pages
        install_map(app, self, guard)  # the community map (map_pages.py)
        return app

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> "Console":
        from waitress.server import create_server

        self.store()  # the tables exist before the first page asks
        try:
            self._server = create_server(self.flask, host=self.host, port=self.port, threads=self.cconf.threads,
                                         ident="gate-console", channel_timeout=60)
        except OSError as exc:
            raise ConsoleError(f"console: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.port = self._server.effective_port
        self.live.start()
        self._thread = threading.Thread(target=self._serve, name="console-web", daemon=True)
        self._thread.start()
        log.info("console: %s", self.url)
        return self

    def _serve(self) -> None:
        try:
            self._server.run()
        except Exception:
            if not self.stopping.is_set():
                log.exception("console: the web server stopped")

    def stop(self) -> None:
        """Ends every stream, closes the port and the database connections; bounded."""
        self.stopping.set()
        self.live.stop()
        srv = self._server
        if srv is not None:
            logging.getLogger("waitress").setLevel(logging.CRITICAL)
            try:
                srv.trigger.pull_trigger(lambda: wasyncore.close_all(srv._map))
            except OSError:
                pass
            if self._thread is not None:
                self._thread.join(1.0)
                if self._thread.is_alive():
                    wasyncore.close_all(srv._map)
            srv.task_dispatcher.shutdown(timeout=1.0)
        with self._stores_lock:
            for st in self._stores:
                st.close()
            self._stores.clear()
