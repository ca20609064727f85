"""The `gate` command as an operator uses it."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from gate.core.tokens import KeyRing, load_public
from tests.conftest import ROOT

GATE = [sys.executable, "-m", "gate.cli.main"]


def gate(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GATE, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def minimal_config(tmp_path: Path, trusted: Path | None = None) -> Path:
    cfg = tmp_path / "gate.toml"
    keys = f'[keys]\ntrusted = ["{trusted}"]\n' if trusted else ""
    cfg.write_text(
        f'[gate]\nid = "t1"\n[store]\npath = "{tmp_path / "gate.db"}"\n{keys}'
        '[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\n',
        encoding="utf-8",
    )
    return cfg


def test_keys_issue_scan_verify(tmp_path: Path) -> None:
    res = gate("keys", "new", "--name", "central", "--dir", str(tmp_path / "keys"))
    assert res.returncode == 0, res.stderr
    priv, pub = tmp_path / "keys" / "central.key", tmp_path / "keys" / "central.pub"
    assert priv.stat().st_mode & 0o777 == 0o600
    again = gate("keys", "new", "--name", "central", "--dir", str(tmp_path / "keys"))
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr

    png = tmp_path / "r1.png"
    res = gate("passes", "issue", "--id", "r1", "--category", "resident", "--unit", "3-2-501",
               "--valid-until", "2026-12-31", "--key", str(priv), "--out", str(png))
    assert res.returncode == 0, res.stderr
    scanned = gate("scan", str(png))
    assert scanned.returncode == 0, scanned.stderr
    path, text = scanned.stdout.rstrip("\n").split("\t")
    assert path == str(png)
    token = KeyRing([load_public(pub)]).verify(text)
    assert (token.pass_id, token.category, token.holder_ref) == ("r1", "resident", "3-2-501")
    assert token.valid_until is not None and token.valid_until.isoformat().startswith("2026-12-31T15:59:59")


def test_scan_prints_path_alone_for_an_image_without_code(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200), 255, np.uint8))
    res = gate("scan", str(blank))
    assert res.returncode == 0
    assert res.stdout == f"{blank}\n"


def test_report_daily_on_a_day_with_nothing(tmp_path: Path) -> None:
    cfg = minimal_config(tmp_path)
    res = gate("report", "daily", "--date", "2026-11-22", "--json", "-c", str(cfg), "--store", str(tmp_path / "other.db"))
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep == {
        "date": "2026-11-22", "gate": "t1", "events": 0, "allowed": {}, "denied": {}, "fevers": 0,
        "challenges": 0, "new_cards": [], "unknown_cards": [], "by_hour": [0] * 24,
    }
    assert (tmp_path / "other.db").exists() and not (tmp_path / "gate.db").exists()
    bad = gate("report", "daily", "--date", "22/11/2026", "-c", str(cfg))
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


def test_report_daily_defaults_to_yesterday_in_the_gates_time_zone(tmp_path: Path) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    cfg = minimal_config(tmp_path)
    before = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=1)).date().isoformat()
    res = gate("report", "daily", "--json", "-c", str(cfg))
    after = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=1)).date().isoformat()
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["date"] in {before, after}


def test_log_lines_carry_the_gates_local_time() -> None:
    import logging
    from zoneinfo import ZoneInfo

    from gate.cli.main import _LocalFormatter

    rec = logging.LogRecord("gate.core.lane", logging.WARNING, __file__, 1, "door forced", None, None)
    rec.created = 1_795_000_000.0  # 2026-11-18T11:06:40Z
    line = _LocalFormatter(ZoneInfo("Asia/Shanghai"), "%(asctime)s %(message)s").format(rec)
    assert line == "2026-11-18T19:06:40.000+08:00 door forced"


def test_demo_admits_and_refuses_visibly_and_stops_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "demo.toml"
    text = (ROOT / "config" / "demo.toml").read_text(encoding="utf-8")
    text = text.replace('"../var/demo.db"', f'"{tmp_path / "demo.db"}"').replace('script = "demo-people.yaml"', f'script = "{ROOT / "config" / "demo-people.yaml"}"')
    if "[guard]" not in text:
        text += "\n[guard]\nenabled = false  # the page has its own tests; keep port 8080 free\n"
    cfg.write_text(text, encoding="utf-8")
    proc = subprocess.Popen([*GATE, "run", "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "category_refused" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    out = "".join(seen)
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    assert "ALLOW" in out and "ok" in out and "pass=r1" in out
    assert "DENY" in out and "category_refused" in out
    assert "door     unlock" in out


def test_each_demo_round_is_a_new_day_at_the_gate(tmp_path: Path) -> None:
    """Round two of the demo tells the same story: last round's fever holds nobody and
    its alarms were acknowledged by the demo's guard (the page does not open covered)."""
    script = tmp_path / "people.yaml"
    script.write_text(textwrap.dedent("""
        name: a fever, every round
        start: "2026-11-22T08:00:00+08:00"
        passes:
          - {id: n1, holder: 李强, unit: 5-1-302, category: renter}
        steps:
          - {at: 0.2, lane: in, qr: n1}
          - {at: 0.6, lane: in, temperature: 37.8}
          - {at: 1.2, lane: in, temperature: 37.9}
    """), encoding="utf-8")
    cfg = tmp_path / "demo.toml"
    cfg.write_text(textwrap.dedent(f"""
        [store]
        path = "{tmp_path / 'demo.db'}"
        [guard]
        enabled = false
        [demo]
        script = "{script}"
        loop = true
        pause_s = 0.5
        [[lanes]]
        name = "in"
        direction = "in"
        camera = {{ driver = "sim" }}
        thermometer = {{ driver = "sim" }}
    """), encoding="utf-8")
    proc = subprocess.Popen([*GATE, "run", "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline and sum("fever" in line and "DENY" in line for line in seen) < 2:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    denials = [line.split()[3] for line in seen if " DENY " in line]
    assert denials[:2] == ["fever", "fever"], "".join(seen)  # never fever_hold from the round before
    import sqlite3

    con = sqlite3.connect(tmp_path / "demo.db")
    try:
        acks = con.execute("SELECT json_extract(body, '$.who') FROM events WHERE type = 'ack'").fetchall()
    finally:
        con.close()
    assert ("demo guard",) in acks


def test_key_commands_work_as_the_example_configs_write_them(tmp_path: Path) -> None:
    """Issue 16: config/central.example.toml said `gate keys new central`, which failed."""
    import re
    import shlex

    docs = "".join((ROOT / "config" / name).read_text(encoding="utf-8") for name in ("central.example.toml", "gate.example.toml"))
    written = re.findall(r"`(gate keys new [^`]*)`", docs)
    assert "gate keys new central --dir /etc/gate/keys" in written
    for i, cmd in enumerate(written):
        args = shlex.split(cmd.replace("/etc/gate/keys", str(tmp_path / f"k{i}")))[1:]
        args = [a if a != "NAME" else "desk" for a in args]
        if "--dir" not in args:
            args += ["--dir", str(tmp_path / f"k{i}")]
        res = gate(*args)
        assert res.returncode == 0, (cmd, res.stderr)
    assert (tmp_path / "k0" / "central.key").stat().st_mode & 0o777 == 0o600
    same = gate("keys", "new", "desk", "--name", "other", "--dir", str(tmp_path))
    assert same.returncode == 2 and "two names given" in same.stderr
    for sub in re.findall(r"`gate central keys (\w+)", docs):
        assert gate("central", "keys", sub, "--help").returncode == 0, sub


def test_gate_run_listen_and_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    cfg = tmp_path / "gate.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "g.db"}"\n[[lanes]]\nname = "in"\ndirection = "in"\ncamera = {{driver = "sim"}}\n',
                   encoding="utf-8")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = subprocess.run([*GATE, "run", "-c", str(cfg), "--listen", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 2, res.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "--listen" in res.stderr
    assert "lane(s) running" not in res.stdout  # no gate without its page
    bad = subprocess.run([*GATE, "run", "-c", str(cfg), "--listen", "8080"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr
    # A free port: the page comes up there.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    proc = subprocess.Popen([*GATE, "run", "-c", str(cfg), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert any(f"guard page: http://127.0.0.1:{port}/" in line for line in lines), lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
