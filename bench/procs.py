"""`gate central` as a real process, for the benchmarks and the fault harness: a
central in the benchmark's own process would share its interpreter lock with the
gate it measures."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class CentralProcess:
    """`gate central -c DIR/central.toml` for `site`, signing with DIR/central.key
    (made if missing), storing to DIR/central.db (or to ``db``: another SQLite path or
    a postgresql:// DSN, which several instances may share)."""

    def __init__(self, directory: Path, broker: Any, *, site: str = "bench", extra: str = "",
                 user: str | None = None, password: str | None = None, instance: str = "1",
                 db: str | None = None, conf_name: str = "central") -> None:
        from gate.core.tokens import KeyRing, load_public, new_keypair

        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.db = directory / "central.db"
        if not (directory / "central.key").exists():
            new_keypair(directory, "central")
        self.key = directory / "central.key"
        self.keyring = KeyRing([load_public(directory / "central.pub")])
        self.db_url = db or str(self.db)
        self.conf = directory / f"{conf_name}.toml"
        if user:
            (directory / "central.pw").write_text(f"{password}\n", encoding="utf-8")
            extra += f'username = "{user}"\npassword_file = "{directory / "central.pw"}"\n'
        self.conf.write_text(f'site = "{site}"\nbroker = "{broker.url}"\nsigning_key = "{self.key}"\n'
                             f'db = "{self.db_url}"\ninstance = "{instance}"\npoll_s = 0.2\n{extra}', encoding="utf-8")
        # With use_username_as_clientid (docs/mosquitto.conf) the broker names it by its user.
        self.client_id = user or f"central-{site}-{instance}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self, timeout: float = 30.0) -> "CentralProcess":
        self.runs += 1
        before = self.broker.log().count(f" as {self.client_id} (")
        self.log_path = self.dir / f"{self.conf.stem}{self.runs}.log"
        log = open(self.log_path, "wb")
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


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    return None


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL to measure against: its binaries or psycopg are missing, or it did not start."""


class Postgres:
    """A throwaway PostgreSQL cluster on a Unix socket (no TCP listener). By default
    with the server's defaults (fsync and synchronous_commit on: a stored event
    survives a power cut, as with SQLite's synchronous=FULL), what the benchmarks
    measure; ``durable=False`` (fsync off) for tests, which need it fast, not safe.
    ``with Postgres() as pg: pg.create_database("x")`` gives a DSN. Its directory is a
    temp dir of its own (run as root, the server runs as user postgres, who must be
    able to reach it), removed when it stops."""

    def __init__(self, *, durable: bool = True) -> None:
        self.durable = durable
        self.dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        self.data, self.sock = self.dir / "data", self.dir / "sock"
        self.port = 0
        self.version = ""
        self._prefix: list[str] = []
        self._pg_ctl: str | None = None

    def start(self) -> "Postgres":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PostgresUnavailable("psycopg is not installed (pip install 'psycopg[binary]')") from None
        initdb, self._pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not self._pg_ctl:
            raise PostgresUnavailable("PostgreSQL server binaries not found (apt install postgresql)")
        from tests.mqtt_broker import free_port

        self.sock.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # postgres refuses to run as root
            runuser = shutil.which("runuser")
            if not runuser:
                raise PostgresUnavailable("running as root without runuser: cannot start PostgreSQL as another user")
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.sock, "postgres")
            self._prefix = [runuser, "-u", "postgres", "--"]
        self.port = free_port()
        try:
            subprocess.run(self._prefix + [initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                           check=True, capture_output=True, timeout=120)
            subprocess.run(self._prefix + [self._pg_ctl, "-D", str(self.data), "-l", str(self.dir / "pg.log"), "-w", "-t", "60",
                                           "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=''"
                                           + ("" if self.durable else " -c fsync=off"), "start"],
                           check=True, capture_output=True, timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, KeyError, LookupError) as exc:
            detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")[:300]
            raise PostgresUnavailable(f"could not start a local PostgreSQL: {exc} {detail}") from None
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as con:
            self.version = str(con.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        return self

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.sock}&port={self.port}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}"')
            con.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            if self._pg_ctl and self.data.exists():
                subprocess.run(self._prefix + [self._pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"],
                               capture_output=True, timeout=60)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Postgres":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
