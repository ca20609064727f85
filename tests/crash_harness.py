"""A gate daemon run as a real process with scripted traffic, to be killed."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.sync_helpers import central_pub


def write_fast_demo(directory: Path, *, people: int, interval_s: float) -> Path:
    """A demo script: `people` residents, one every interval_s, each scanning and measuring."""
    lines = ["name: fast traffic", 'start: "2026-11-22T08:00:00+08:00"', "passes:"]
    # Enough passes that none comes round again within the scanner's hold time
    # (a code seen again within 1.5 s is the same code still held up).
    for i in range(100):
        lines.append(f"  - {{id: p{i}, holder: 住户{i}, unit: 1-1-{100 + i}, category: resident}}")
    lines.append("steps:")
    for k in range(people):
        t = round(k * interval_s, 3)
        lines.append(f"  - {{at: {t}, lane: in, qr: p{k % 100}}}")
        lines.append(f"  - {{at: {round(t + interval_s / 2, 3)}, lane: in, temperature: 36.{k % 7}}}")
    path = directory / "traffic.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_config(directory: Path, *, store: Path, script: Path, broker: str | None, gate: str = "g1", site: str = "crash",
                 trusted: Path | None = None, sync_extra: str = "") -> Path:
    """trusted: central's public key: it signs the receipts ([sync] central_keys) and the
    demo's passes ([keys] trusted). Without it, a stranger's key: nothing from central
    can be checked, so delivery falls back to the broker's acknowledgement."""
    central = trusted or central_pub(directory / "keys")
    fallback = "" if trusted or "receipts" in sync_extra else "receipts = false\n"
    sync = (f'[sync]\nbroker = "{broker}"\nheartbeat_s = 2\ncentral_keys = ["{central}"]\n{fallback}{sync_extra}'
            if broker else "")
    keys = f'[keys]\ntrusted = ["{trusted}"]' if trusted else ""
    cfg = directory / f"{gate}.toml"
    cfg.write_text(
        textwrap_dedent(
            f"""
            [gate]
            id = "{gate}"
            site = "{site}"
            [store]
            path = "{store}"
            [policy]
            passback = "off"
            [door]
            unlock_s = 0.2
            [guard]
            enabled = false
            [demo]
            script = "{script}"
            loop = true
            pause_s = 0.2
            {keys}
            {sync}
            [[lanes]]
            name = "in"
            direction = "in"
            camera = {{ driver = "sim" }}
            thermometer = {{ driver = "sim" }}
            relay = {{ driver = "sim", pin = 22 }}
            """
        ),
        encoding="utf-8",
    )
    return cfg


def textwrap_dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text)


class Daemon:
    def __init__(self, config: Path, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.proc: subprocess.Popen[str] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        out = open(self.log_dir / f"run{self.runs}.out", "w", encoding="utf-8")
        err = open(self.log_dir / f"run{self.runs}.err", "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gate.cli.main", "run", "-c", str(self.config)],
            stdout=out, stderr=err, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def term(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def printed_decisions(self) -> int:
        return sum(
            1
            for f in self.log_dir.glob("run*.out")
            for line in f.read_text(encoding="utf-8").splitlines()
            if " ALLOW " in line or " DENY " in line or " RETEST " in line or " CHALLENGE " in line
        )


def copy_db(store: Path, dest: Path) -> Path:
    """The database files as they are on disk this instant (what a power cut leaves)."""
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(store) + suffix)
        if src.exists():
            shutil.copyfile(src, dest / (store.name + suffix))
    return dest / store.name


def wait_until(cond, timeout: float, step: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())
