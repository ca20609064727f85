"""`gate central` as a real process, for the benchmarks and the fault harness: a
central in the benchmark's own process would share its interpreter lock with the
gate it measures."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class CentralProcess:
    """`gate central -c DIR/central.toml` for `site`, signing with DIR/central.key
    (made if missing), storing to DIR/central.db."""

    def __init__(self, directory: Path, broker: Any, *, site: str = "bench", extra: str = "",
                 user: str | None = None, password: str | None = None) -> None:
        from gate.core.tokens import KeyRing, load_public, new_keypair

        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.db = directory / "central.db"
        if not (directory / "central.key").exists():
            new_keypair(directory, "central")
        self.key = directory / "central.key"
        self.keyring = KeyRing([load_public(directory / "central.pub")])
        self.conf = directory / "central.toml"
        if user:
            (directory / "central.pw").write_text(f"{password}\n", encoding="utf-8")
            extra += f'username = "{user}"\npassword_file = "{directory / "central.pw"}"\n'
        self.conf.write_text(f'site = "{site}"\nbroker = "{broker.url}"\nsigning_key = "{self.key}"\ndb = "{self.db}"\n'
                             f'poll_s = 0.2\n{extra}', encoding="utf-8")
        # With use_username_as_clientid (docs/mosquitto.conf) the broker names it by its user.
        self.client_id = user or f"central-{site}-1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self, timeout: float = 30.0) -> "CentralProcess":
        self.runs += 1
        before = self.broker.log().count(f" as {self.client_id} (")
        log = open(self.dir / f"central{self.runs}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "gate.cli.main", "central", "-c", str(self.conf)],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + timeout
        while self.broker.log().count(f" as {self.client_id} (") <= before:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"central did not connect (log: {self.dir})")
            time.sleep(0.05)
        time.sleep(0.3)  # its SUBSCRIBE follows the CONNACK
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def stored(self, gate: str | None = None) -> list[tuple[str, str, int]]:
        """(id, gate, seq) of every stored event."""
        if not self.db.exists():
            return []
        con = sqlite3.connect(self.db, timeout=30)
        try:
            sql = "SELECT id, gate, seq FROM events" + (" WHERE gate = ?" if gate else "")
            return list(con.execute(sql, (gate,) if gate else ()))
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()
