"""`gate run`: start the gate, show what it does, stop cleanly on SIGTERM/SIGINT. The
command reads its options here; `run` is the daemon's body (imported only when it runs)."""
from __future__ import annotations

import faulthandler
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gate.cli.common import broker_option, check_broker, config_option, fail, load_config, log_in_timezone, store_option

if TYPE_CHECKING:
    from gate.app.gate_app import GateApp
    from gate.config import Config
    from gate.core.records import LaneRecord

STOP_BUDGET_S = 4.0  # systemd's TimeoutStopSec=5 kills at 5 s; past this the stop is cut short


@click.command("run")
@config_option
@store_option
@broker_option
@click.option("--listen", default=None, metavar="HOST:PORT", help="where the guard page listens (overrides guard.listen)")
def run_cmd(config_path: str | None, store_path: str | None, broker: str | None, listen: str | None) -> None:
    """Run the gate: every lane, its drivers, and (in demo configs) scripted people."""
    check_broker(broker)
    conf = load_config(config_path, store_path)
    if listen is not None:
        if not re.fullmatch(r"[^:\s]+:\d{1,5}", listen):
            fail(f"--listen: expected HOST:PORT such as 127.0.0.1:8080, got {listen!r}")
        conf = conf.model_copy(update={"guard": conf.guard.model_copy(update={"listen": listen})})
    log_in_timezone(conf.gate.timezone)
    sys.exit(run(conf, broker=broker, config_path=Path(config_path) if config_path else None))


def run(conf: Config, *, broker: str | None = None, config_path: Path | None = None) -> int:
    """The daemon: the app and its services started, the guard page, LCD and demo beside
    it, the watchdog pinged while every lane turns; everything stopped in order."""
    from gate.app import console
    from gate.app.gate_app import GateApp
    from gate.app.sdnotify import Notifier
    from gate.config import ConfigError
    from gate.drill import file as drill_file
    from sync.attach import services as sync_services

    stop = threading.Event()

    def show(rec: LaneRecord) -> None:
        if rec.type in ("decision", "prompt", "alarm", "door"):
            local = rec.at.astimezone(app.tz)
            console.print_line(rec.to_json(), clock=local.strftime("%H:%M:%S"))

    app = GateApp(conf, sinks=[show], config_path=config_path, services=sync_services(conf, broker))
    page = None
    if conf.guard.enabled:
        from gate.web import GuardPage, GuardPageError

        try:
            page = GuardPage(app)  # checks listen/password before anything starts
            page.check_port()  # a port already taken is an error now, not a gate without its page later
        except GuardPageError as exc:
            print(f"gate: guard page: {exc}", file=sys.stderr)
            return 2

    def on_signal(*_: object) -> None:
        if stop.is_set():  # a second signal: doors locked, out now (off the signal handler's thread)
            threading.Thread(target=_cut_short, args=(app, "a second signal"), daemon=True).start()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    player = None
    lcd = None
    notify = Notifier()
    said: list[str] = []
    waiting_page: list[Any] = []

    def waiting(err: Any) -> bool:
        # The store is kept, the relays held locked: the journal, systemd's status and
        # (on the guard page's address) a plain page say why.
        why = str(err)
        if not said or said[-1] != why:
            print(f"gate: waiting for the store: {why}", file=sys.stderr, flush=True)
            said.append(why)
        if page is not None and not waiting_page:
            from gate.web.waiting import WaitingPage

            try:
                waiting_page.append(WaitingPage(page.host, page.port))
                waiting_page[0].start()
            except OSError as exc:
                print(f"gate: the waiting page could not start: {exc}", file=sys.stderr)
                waiting_page.append(None)
        if waiting_page and waiting_page[0] is not None:
            waiting_page[0].kind = getattr(err, "kind", "io")
        notify.send(f"READY=1\nSTATUS=door locked, waiting for the store: {why[:300]}")
        notify.watchdog()
        return not stop.wait(5.0)

    try:
        try:
            app.start(waiting=waiting)
        finally:
            if waiting_page and waiting_page[0] is not None:
                waiting_page[0].stop()  # the guard page takes its port over
    except Exception as exc:  # a device that will not open: say which, do not trace
        app.stop()
        if stop.is_set():
            return 0  # asked to stop while waiting for the store
        print(f"gate: could not start: {exc}", file=sys.stderr)
        return 1
    print(
        f"gate {conf.gate.id}: {len(app.lanes)} lane(s) running ({', '.join(app.lanes)}); store {app.store_path}."
        " Ctrl-C stops.",
        flush=True,
    )
    notify.ready(f"{len(app.lanes)} lanes running")
    ping_every = Notifier.watchdog_interval()
    keydir = None
    try:
        if conf.demo is not None:
            try:
                script = drill_file.load(conf.demo.script)
            except ConfigError as exc:
                print(f"gate: demo script: {exc}", file=sys.stderr)
                return 2
            from gate.drill.demo import DemoPlayer

            keydir = tempfile.TemporaryDirectory(prefix="gate-demo-")
            player = DemoPlayer(app, script, Path(keydir.name), loop=conf.demo.loop, pause_s=conf.demo.pause_s)
            print(f"demo: playing {conf.demo.script.name} ({script.name}){' on a loop' if conf.demo.loop else ''}", flush=True)
            if page is not None and not page.visitors.ready:
                # No keys.signing in a demo: visitor passes are signed with the demo's throwaway central key.
                page.visitors.use_signer(player.keys.central, app.keyring, "demo key (keys.signing not set)")
            player.start()
        if conf.guard.lcd is not None:
            lcd = _start_lcd(conf, app)
        if page is not None:
            try:
                page.start()
                print(f"guard page: {page.url}", flush=True)
            except GuardPageError as exc:  # the lanes go on deciding without it: say so loudly
                print(f"gate: guard page NOT running: {exc}", file=sys.stderr)
                page = None
        next_policy_check = time.monotonic() + 5.0
        while not stop.wait(min(0.5, ping_every or 0.5)):
            if time.monotonic() >= next_policy_check:
                next_policy_check = time.monotonic() + 5.0
                try:
                    app.pick_up_stored_policy()  # `gate policy apply` at the desk takes effect here
                except Exception as exc:  # a busy or failing store must not stop the gate
                    print(f"gate: could not read the stored policy: {exc}", file=sys.stderr)
                app.save_floor()  # the floor's checkpoint; a desk reset taken up (never raises)
            if not all(lane.alive for lane in app.lanes.values()):
                print("gate: a lane stopped unexpectedly", file=sys.stderr)
                return 1
            # Ping the watchdog only while every engine thread is alive and turning.
            if ping_every is not None and app.healthy():
                notify.watchdog()
        return 0
    finally:
        began = time.monotonic()
        app.lock_doors()  # before anything else stops
        deadline = threading.Timer(STOP_BUDGET_S, _cut_short, args=(app, f"stopping took over {STOP_BUDGET_S:.0f} s"))
        deadline.daemon = True
        deadline.start()
        notify.stopping()
        took: list[str] = []
        for name, part in (("demo", player), ("page", page), ("lcd", lcd), ("lanes", app)):
            if part is not None:
                t0 = time.monotonic()
                part.stop()
                took.append(f"{name} {time.monotonic() - t0:.2f}")
        if keydir is not None:
            keydir.cleanup()
        deadline.cancel()
        print(f"gate: stopped in {time.monotonic() - began:.2f} s ({', '.join(took)})", flush=True)


def _cut_short(app: GateApp, why: str) -> None:
    """The stop cannot finish in time (systemd kills at TimeoutStopSec=5): say what
    still runs, lock the doors and exit. The store is safe against this (as against kill -9)."""
    print(f"gate: {why}: exiting now; still running:", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    app.lock_doors()
    os._exit(0)


def _start_lcd(conf: Config, app: GateApp):  # type: ignore[no-untyped-def]
    """The character LCD beside the gate; if it will not open, the lanes go on without it."""
    from drivers.display import make_display
    from gate.web.lcd import LcdPresenter

    c = conf.guard.lcd
    assert c is not None
    try:
        kw = {"cols": c.cols, "rows": c.rows, "address": c.address}
        if c.driver == "hd44780":
            kw["port"] = c.i2c_port
        presenter = LcdPresenter(make_display(c.driver, **kw), app.tz)
    except Exception as exc:
        print(f"gate: LCD NOT running: {exc}", file=sys.stderr)
        return None
    app.add_sink(presenter.sink)
    presenter.start()
    print(f"LCD: {c.cols}x{c.rows} ({c.driver}) at I2C {c.address:#04x}", flush=True)
    return presenter
