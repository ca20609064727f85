"""Footprint of the daemon: time to ready, resident memory at rest and under
traffic. Each is measured on a real `gate run` process with two simulated lanes.
The CPU it costs idle (``cpu.idle_30fps_720p``) is the scan group's now
(``bench/scan_phone.py``), beside the scan path figures it depends on."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.core import Context, Figure

TITLE = "footprint: ready time, memory, idle CPU"
ROOT = Path(__file__).resolve().parents[1]


def _config(d: Path, *, traffic: bool, fps: float = 10.0, size: tuple[int, int] = (640, 480)) -> Path:
    demo = ""
    if traffic:
        # 10 decisions a second: a person every 0.1 s on the in lane.
        lines = ["name: load", 'start: "2026-11-22T08:00:00+08:00"', "passes:"]
        lines += [f"  - {{id: p{i}, holder: 住户{i}, unit: 1-1-{i}, category: resident}}" for i in range(100)]
        lines.append("steps:")
        for k in range(600):
            lines.append(f"  - {{at: {k / 10:.2f}, lane: in, qr: p{k % 100}}}")
            lines.append(f"  - {{at: {k / 10 + 0.05:.2f}, lane: in, temperature: 36.5}}")
        (d / "load.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        demo = f'[demo]\nscript = "{d / "load.yaml"}"\nloop = true\npause_s = 0\n'
    cam = f'{{ driver = "sim", width = {size[0]}, height = {size[1]}, fps = {fps} }}'
    cfg = d / f"gate-{traffic}-{fps}.toml"
    cfg.write_text(
        f'[store]\npath = "{d / f"g-{traffic}-{fps}.db"}"\n[policy]\npassback = "off"\n[guard]\nenabled = false\n{demo}'
        f'[[lanes]]\nname = "in"\ndirection = "in"\ncamera = {cam}\nthermometer = {{ driver = "sim" }}\n'
        'relay = { driver = "sim", pin = 22 }\ncard_reader = { driver = "sim", d0 = 5, d1 = 6 }\n'
        f'[[lanes]]\nname = "out"\ndirection = "out"\ncamera = {cam}\ncard_reader = {{ driver = "sim", d0 = 12, d1 = 13 }}\n',
        encoding="utf-8",
    )
    return cfg


def _start(cfg: Path, sock_path: Path) -> tuple[subprocess.Popen[bytes], float]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gate.cli.main", "run", "-c", str(cfg)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        msg = sock.recv(4096).decode()
        if msg.startswith("READY=1"):
            break
    ready = time.perf_counter() - t0
    sock.close()
    return proc, ready


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM, and the seconds until the process has exited (inf if it had to be killed)."""
    t0 = time.perf_counter()
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return float("inf")
    return time.perf_counter() - t0


def _written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def _disk_at_rest(d: Path, passes: int) -> tuple[float, float]:
    """Bytes an hour's housekeeping writes for a gate at rest with `passes` passes:
    (as it is now: skipped when nothing changed, as it was: the snapshot rewritten)."""
    import os as _os

    from gate.store.integrity import save_snapshot
    from gate.app.maintenance import Maintenance
    from gate.store.database import Store

    store = Store(d / "rest.db")
    try:
        store.upsert_passes([{"id": f"p{i:06d}", "holder": "住户", "unit": f"{i % 30}-1-{i % 900}", "category": "resident"}
                             for i in range(passes)])
        m = Maintenance(lambda: store, retention_days=30, every_s=0)
        m.run_once(store)  # the first snapshot
        _os.sync()
        before = _written()
        m.run_once(store)  # an hour later, nothing changed
        _os.sync()
        now = _written() - before
        before = _written()
        save_snapshot(store.conn, store.path)  # what every hour cost before
        _os.sync()
        old = _written() - before
    finally:
        store.close()
    return float(now), float(old)


def run(ctx: Context) -> list[Figure]:
    figures: list[Figure] = []
    hold = ctx.reps(5.0, 20.0)
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        d = Path(tmp)
        readies = []
        proc, ready = _start(_config(d, traffic=False), d / "n1.sock")
        readies.append(ready)
        time.sleep(hold / 2)
        rest = _rss_mb(proc.pid)
        _stop(proc)
        proc, ready = _start(_config(d, traffic=True), d / "n2.sock")
        readies.append(ready)
        peak = 0.0
        end = time.monotonic() + hold
        while time.monotonic() < end:
            peak = max(peak, _rss_mb(proc.pid))
            time.sleep(0.25)
        stop = _stop(proc)  # under load: 10 decisions a second when the signal comes
    import statistics

    r = statistics.median(readies)
    figures.append(Figure("ready_s", r, "s", note="process start → systemd READY (two lanes running); target ≤ 3 s", pi4=True))
    figures.append(Figure("rss_mb", peak, "MB", note=f"resident memory under 10 decisions/s (at rest {rest:.0f} MB); target ≤ 150 MB"))
    figures.append(Figure("rss_rest_mb", rest, "MB", note="two simulated lanes, at rest"))
    with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
        now, old = _disk_at_rest(Path(tmp), 50_000)
    figures.append(Figure("disk.bytes_written_per_hour", now, "B", old, (now / old) if old else None,
                          note="housekeeping of a gate at rest with 50,000 passes, from /proc/self/io (target <= 1 MB); "
                               "baseline: the hourly pass snapshot rewritten as before"))
    figures.append(Figure("stop_s", stop, "s", note="SIGTERM under 10 decisions/s → process gone (relays locked first); "
                          "the unit allows 5 s, target < 1 s", pi4=True))
    ctx.implications.append(f"ready in {r:.1f} s here, {rest:.0f}→{peak:.0f} MB RSS")
    return figures
