"""`gate run` under systemd: ready only when the lanes run, watchdog pinged while they live."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT


def test_notify_ready_then_watchdog_then_stopping(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    cfg = tmp_path / "gate.toml"
    cfg.write_text(
        f'[store]\npath = "{tmp_path / "g.db"}"\n[guard]\nenabled = false\n[[lanes]]\nname = "in"\ndirection = "in"\n'
        'camera = { driver = "sim" }\nthermometer = { driver = "sim" }\n',
        encoding="utf-8",
    )
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "gate.cli.main", "run", "-c", str(cfg)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        messages = []
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert messages[0].startswith("READY=1"), messages
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        rc = proc.wait(timeout=30)
        stopped_in = time.monotonic() - t0
        while True:
            m = sock.recv(4096).decode()
            if m == "STOPPING=1":
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    print(f"stopped {stopped_in:.2f} s after SIGTERM")


def test_a_changed_config_is_an_event_at_start(tmp_path: Path) -> None:
    from gate import config as cfgmod
    from gate.app.gate_app import GateApp

    cfg = tmp_path / "gate.toml"
    body = f'[store]\npath = "{tmp_path / "g.db"}"\n[guard]\nenabled = false\n[[lanes]]\nname = "in"\ndirection = "in"\n'
    cfg.write_text(body, encoding="utf-8")

    def start_once() -> list[dict]:  # type: ignore[type-arg]
        app = GateApp(cfgmod.load(cfg), config_path=cfg, prerender=False)
        app.start()
        app.stop()
        s = app.open_store()
        try:
            return [e for e in s.events() if e["type"] == "admin" and e["action"] == "config_change"]
        finally:
            s.close()

    assert [e["reason"] for e in start_once()] == ["first start"]
    assert len(start_once()) == 1  # unchanged: nothing new
    cfg.write_text(body.replace('direction = "in"', 'direction = "in"\nexit_button = { driver = "sim", pin = 23 }'), encoding="utf-8")
    changes = start_once()
    assert [e["reason"] for e in changes] == ["first start", "the config file was edited"]
    assert "file owner" in changes[-1]["who"]
