"""The reference central: the other end of the gates' MQTT sync.

    central = Central(load_central_config("CENTRAL.toml"), db_path=None).start()
    central.add_pass(id="P1", holder="Li", unit="3-2-501", category="resident")
    central.send_command("east-1", "open_door", lane="in", reason="ambulance")
    central.stop()

What it does (docs/mqtt.md is the contract):

* consumes ``{prefix}/+/events`` (and reports and snapshot requests) through MQTT
  v5 shared subscriptions ``$share/{group}/...``, so several instances split the
  load; status is a plain subscription (retained messages are not delivered to
  shared subscriptions);
* stores events idempotently by ``id`` (INSERT ... ON CONFLICT DO NOTHING) and
  acknowledges each message (paho ``manual_ack``) only after the transaction that
  stored it has committed: a crash before the commit means the broker delivers
  it again, and the id makes the second copy a no-op;
* holds the roster: every change bumps a version and goes to a change log, from
  which signed batches ``{from_version, to_version, changes}`` go out on
  ``{prefix}/passes``; answers snapshot requests with signed chunks;
* publishes the signed policy (retained) and signed commands with a nonce and an
  expiry.

Storage is SQLite by default, PostgreSQL for a ``postgresql://`` DSN (psycopg 3);
both run the same SQL (``?`` placeholders are rewritten for psycopg).

Threads: paho's network thread only queues what arrives; a writer thread stores
and acks in arrival order (batched: one commit per batch); a publisher thread
sends pass batches and policy; a snapshot thread builds and sends snapshots.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import queue
import re
import secrets
import sqlite3
import threading
import time
import tomllib
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gate.config import CATEGORIES, ConfigError, PolicyConfig, format_errors, load_policy
from gate.passes import load_private
from sync import codec, keylist
from sync.central import inbound, presence_relay, quarantine, tombstones
from sync.codec import PayloadError
from sync.central.hardening import share_group
from sync.link import no_delay
from sync.central.receipts import ReceiptBook
from sync.central.snapshot_limit import SnapshotLimiter
from sync.topics import DEFAULT_PREFIX, CentralTopics

log = logging.getLogger("sync.central")

COMMANDS = ("open_door", "resync", "report_now", "reload", "door_mode")
_NAME = r"^[A-Za-z0-9_-]{1,64}$"


# ---------------------------------------------------------------- config


class CentralConfig(BaseModel):
    """CENTRAL.toml (flat keys; see config/central.example.toml). Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field(pattern=_NAME)
    prefix: str = DEFAULT_PREFIX
    broker: str = Field("mqtt://127.0.0.1:1883", pattern=r"^mqtts?://[^:/\s]+(:\d{1,5})?/?$")
    instance: str = Field("1", pattern=r"^[A-Za-z0-9_-]{1,32}$")  # unique and stable per running instance
    client_id: str | None = None  # default: central-{site}-{instance}
    group: str | None = Field(None, pattern=_NAME)  # shared-subscription group; default: a secret from signing_key (sync/central/hardening.py)
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    signing_key: Path  # Ed25519 private key (PEM); gates trust its .pub
    name: str = "central"  # "by" on policy and commands
    policy_file: Path | None = None  # a TOML whose [policy] table is published (and re-published when it changes)
    db: str = "central.db"  # SQLite path, or postgresql://user:pw@host/db
    batch_size: int = Field(500, ge=1, le=100_000)  # changes per passes batch
    snapshot_chunk: int = Field(20_000, ge=1, le=200_000)  # passes per snapshot chunk
    snapshot_backlog: int = Field(100_000, ge=1)  # more unpublished changes than this: send only the head batch
    presence_heartbeat_s: float = Field(10.0, gt=0)
    gate_silent_alarm_s: float = Field(900.0, gt=0)  # a gate stale this long is an alarm in `gate central status`  # the retained presence head, re-sent this often (gates' "heard from the site")
    snapshot_interval_s: float = Field(60.0, ge=0)  # at most one snapshot a gate this often (later requests wait)
    retain_passes: bool = True  # keep the latest batch retained, so a (re)connecting gate learns the head version
    command_ttl_s: float = Field(300.0, gt=0)
    poll_s: float = Field(0.5, gt=0)  # how often the roster, policy file and DB are checked for changes
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(7 * 86400, ge=0)  # the broker queues for a stopped instance this long
    receive_maximum: int = Field(1000, ge=1, le=65535)  # unacked messages the broker may have in flight to us
    timezone: str = "Asia/Shanghai"  # dates in imported rosters
    pass_valid_days: int = Field(365, ge=0, le=36500)  # `passes add` without --valid-until: ends after this many days (0: never)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from gate.config import check_timezone

        return check_timezone(v)

    @property
    def topics(self) -> CentralTopics:
        return CentralTopics.for_site(self.site, self.prefix)

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"central-{self.site}-{self.instance}"

    def endpoint(self) -> tuple[str, int, bool]:
        tls = self.broker.startswith("mqtts://")
        rest = self.broker.split("://", 1)[1].rstrip("/")
        host, _, port = rest.partition(":")
        return host, int(port) if port else (8883 if tls else 1883), tls


def load_central_config(path: str | Path, overrides: dict[str, Any] | None = None) -> CentralConfig:
    """Read CENTRAL.toml; relative paths (and a SQLite db) are relative to the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if isinstance(data.get("central"), dict) and len(data) == 1:
        data = data["central"]  # a [central] table is accepted too
    base = path.resolve().parent
    for key in ("signing_key", "policy_file", "password_file", "ca_file", "cert_file", "key_file"):
        v = data.get(key)
        if isinstance(v, str) and v and not Path(v).is_absolute():
            data[key] = str(base / v)
    db = data.get("db")
    if isinstance(db, str) and db and not _is_dsn(db) and not Path(db).is_absolute():
        data["db"] = str(base / db)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return CentralConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(str(path), exc, data)) from None


def _is_dsn(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


# ---------------------------------------------------------------- time


def now_iso(t: float | None = None) -> str:
    dt = datetime.now(timezone.utc) if t is None else datetime.fromtimestamp(t, timezone.utc)
    return dt.isoformat(timespec="milliseconds")


def _iso(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError(f"time {v} has no time zone")
        return v.isoformat()
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=timezone.utc).isoformat()
    if isinstance(v, str):
        dt = datetime.fromisoformat(v)
        if dt.tzinfo is None:
            raise ValueError(f"time {v!r} has no time zone")
        return dt.isoformat()
    raise ValueError(f"not a time: {v!r}")


# ---------------------------------------------------------------- wire pass records

_WIRE_FIELDS = (
    "holder", "unit", "phone_last4", "card", "valid_from", "valid_until",
    "observation_until", "pcr_at", "health_code",
)
_TIME_FIELDS = {"valid_from", "valid_until", "observation_until", "pcr_at"}


def wire_pass(row: dict[str, Any]) -> dict[str, Any]:
    """A roster row (times as datetimes or ISO strings) as a wire pass record.

    Null fields are left out (a missing field means null to the gate), so a
    1,000,000-pass snapshot stays small; ``revoked`` is always present."""
    pid = row.get("id")
    if not isinstance(pid, str) or not pid or len(pid) > 128:
        raise ValueError(f"pass id must be 1-128 characters, got {pid!r}")
    cat = row.get("category")
    if cat not in CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, got {cat!r}")
    out: dict[str, Any] = {"id": pid, "category": cat}
    for f in _WIRE_FIELDS:
        v = row.get(f)
        if f in _TIME_FIELDS:
            v = _iso(v)
        elif v == "":
            v = None
        if v is not None:
            out[f] = v
    if "phone_last4" in out and not re.fullmatch(r"[0-9]{4}", str(out["phone_last4"])):
        raise ValueError(f"phone_last4 must be 4 digits, got {out['phone_last4']!r}")
    if "card" in out and not re.fullmatch(r"[0-9]{1,10}", str(out["card"])):
        raise ValueError(f"card must be 1-10 digits, got {out['card']!r}")
    if out.get("health_code") not in (None, "green", "yellow", "red"):
        raise ValueError(f"health_code must be green, yellow or red, got {out['health_code']!r}")
    for f, n in (("holder", 128), ("unit", 64)):
        if f in out and len(str(out[f])) > n:
            raise ValueError(f"{f} is longer than {n} characters")
    out["revoked"] = bool(row.get("revoked", False))
    return out


_WIRE_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _wire_text(wire: dict[str, Any]) -> str:
    return _WIRE_ENCODER.encode(wire)


# ---------------------------------------------------------------- database

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, gate TEXT NOT NULL, seq BIGINT NOT NULL,"
    " ts TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL, received DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_gate_seq ON events (gate, seq)",
    "CREATE TABLE IF NOT EXISTS status (gate TEXT PRIMARY KEY, online INTEGER NOT NULL, ts TEXT NOT NULL,"
    " body TEXT NOT NULL, received DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS reports (gate TEXT NOT NULL, date TEXT NOT NULL, body TEXT NOT NULL,"
    " received DOUBLE PRECISION NOT NULL, PRIMARY KEY (gate, date))",
    "CREATE TABLE IF NOT EXISTS passes (id TEXT PRIMARY KEY, category TEXT NOT NULL, holder TEXT, unit TEXT,"
    " card TEXT, revoked INTEGER NOT NULL, version BIGINT NOT NULL, wire TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS passes_card ON passes (card)",
    "CREATE TABLE IF NOT EXISTS changes (version BIGINT PRIMARY KEY, pass_id TEXT NOT NULL, op TEXT NOT NULL,"
    " change TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS policies (version BIGINT PRIMARY KEY, payload TEXT NOT NULL,"
    " ts DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS commands (nonce TEXT PRIMARY KEY, gate TEXT NOT NULL, cmd TEXT NOT NULL,"
    " payload TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "INSERT INTO meta (key, value) VALUES ('passes_version', '0') ON CONFLICT (key) DO NOTHING",
    "INSERT INTO meta (key, value) VALUES ('published_version', '0') ON CONFLICT (key) DO NOTHING",
]


class DB:
    """One connection (use it from one thread). SQLite or PostgreSQL, same SQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = _is_dsn(url)
        if self.pg:
            try:
                import psycopg
            except ImportError:
                raise ConfigError("a postgresql:// database needs psycopg: pip install 'psycopg[binary]'") from None
            self.conn: Any = psycopg.connect(url, autocommit=True)
        else:
            path = Path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=60.0, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")  # an acked event must survive a power cut
        self._in_tx = False

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def execute(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self.conn.execute(self._sql(sql), tuple(args))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        if self.pg:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), [tuple(r) for r in rows])
        else:
            self.conn.executemany(sql, rows)

    def one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        row = self.execute(sql, args).fetchone()
        return row

    def all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        return list(self.execute(sql, args).fetchall())

    @contextmanager
    def tx(self, write: bool = True) -> Iterator["DB"]:
        """A transaction: SQLite takes the write lock at once (BEGIN IMMEDIATE) for writes;
        PostgreSQL reads use REPEATABLE READ so a snapshot sees one version."""
        if self.pg:
            self.conn.execute("BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ")
        else:
            self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self._in_tx = False
            try:
                self.conn.execute("ROLLBACK")
            except Exception:  # the connection may be gone; the caller sees the first error
                pass
            raise
        self._in_tx = False
        self.conn.execute("COMMIT")

    def create_schema(self) -> None:
        with self.tx():
            if self.pg:
                self.execute("SELECT pg_advisory_xact_lock(7245001)")  # two instances starting at once
            for stmt in _SCHEMA + quarantine.schema(self.pg) + tombstones.SCHEMA + presence_relay.SCHEMA:
                self.execute(stmt)

    def lock_roster(self) -> int:
        """Inside a write tx: the current pass-table version, locked until commit."""
        sql = "SELECT value FROM meta WHERE key = 'passes_version'"
        row = self.one(sql + (" FOR UPDATE" if self.pg else ""))
        return int(row[0])

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


# ---------------------------------------------------------------- store


class RosterError(ValueError):
    pass


class CentralStore:
    """Central's data: events, status, reports, the roster with its change log,
    policies and commands. One per thread."""

    def __init__(self, url: str) -> None:
        self.db = DB(url)
        self.db.create_schema()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ inbound
    def insert_event(self, ev: dict[str, Any], received: float) -> bool:
        """Inside a tx. True if new, False for a duplicate id."""
        cur = self.db.execute(
            "INSERT INTO events (id, gate, seq, ts, type, body, received) VALUES (?,?,?,?,?,?,?)"
            " ON CONFLICT (id) DO NOTHING",
            (ev["id"], ev["gate"], int(ev["seq"]), ev["ts"], ev["type"], codec.encode(ev).decode("utf-8"), received),
        )
        return cur.rowcount == 1

    def upsert_status(self, st: dict[str, Any], received: float) -> None:
        self.db.execute(
            "INSERT INTO status (gate, online, ts, body, received) VALUES (?,?,?,?,?) ON CONFLICT (gate) DO UPDATE"
            " SET online = excluded.online, ts = excluded.ts, body = excluded.body, received = excluded.received",
            (st["gate"], 1 if st["online"] else 0, st["ts"], codec.encode(st).decode("utf-8"), received),
        )

    def upsert_report(self, rep: dict[str, Any], received: float) -> None:
        self.db.execute(
            "INSERT INTO reports (gate, date, body, received) VALUES (?,?,?,?) ON CONFLICT (gate, date) DO UPDATE"
            " SET body = excluded.body, received = excluded.received",
            (rep["gate"], rep["date"], codec.encode(rep).decode("utf-8"), received),
        )

    def events(self, gate: str | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT body FROM events"
        args: list[Any] = []
        if gate:
            sql += " WHERE gate = ?"
            args.append(gate)
        sql += " ORDER BY gate, seq, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [json.loads(r[0]) for r in self.db.all(sql, args)]

    def event_count(self, gate: str | None = None) -> int:
        if gate:
            return int(self.db.one("SELECT count(*) FROM events WHERE gate = ?", (gate,))[0])
        return int(self.db.one("SELECT count(*) FROM events")[0])

    def statuses(self) -> dict[str, dict[str, Any]]:
        return {r[0]: json.loads(r[1]) for r in self.db.all("SELECT gate, body FROM status ORDER BY gate")}

    def liveness(self, now: float, alarm_after_s: float) -> dict[str, dict[str, Any]]:
        """Each gate's last status with what central makes of it: `online`, `offline`
        (it said so, or its will did), `stale` (three heartbeats missed) or `silent`
        (stale for longer than alarm_after_s: an alarm for the office)."""
        out = {}
        for gate, body, received in self.db.all("SELECT gate, body, received FROM status ORDER BY gate"):
            st = json.loads(body)
            quiet = max(0.0, now - float(received))
            every = float(st.get("heartbeat_s") or 30.0)
            state = "offline" if not st["online"] else "online"
            if st["online"] and quiet > 3 * every:
                state = "silent" if quiet > alarm_after_s else "stale"
            out[gate] = {**st, "state": state, "quiet_s": round(quiet, 1)}
        return out

    def reports(self, gate: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT body FROM reports", []
        if gate:
            sql += " WHERE gate = ?"
            args.append(gate)
        return [json.loads(r[0]) for r in self.db.all(sql + " ORDER BY gate, date", args)]

    # ------------------------------------------------------------ roster
    @property
    def passes_version(self) -> int:
        return int(self.db.one("SELECT value FROM meta WHERE key = 'passes_version'")[0])

    def get_meta(self, key: str) -> str | None:
        row = self.db.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db.tx():
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_pass(self, pass_id: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT wire FROM passes WHERE id = ?", (pass_id,))
        return json.loads(row[0]) if row else None

    def pass_count(self) -> int:
        return int(self.db.one("SELECT count(*) FROM passes")[0])

    def apply(self, changes: list[tuple[str, str, dict[str, Any] | None]]) -> tuple[int, int]:
        """Apply ("upsert", id, wire) / ("delete", id, None) changes in one transaction,
        one version each. Returns (from_version, to_version). Cards stay unique."""
        now = time.time()
        with self.db.tx():
            v0 = self.db.lock_roster()
            v = v0
            pass_rows, change_rows, deletes = [], [], []
            stones: list[tuple[int, dict[str, Any]]] = []  # removed passes stay refused (sync/central/tombstones.py)
            wires_in_batch: dict[str, dict[str, Any]] = {}
            cards_in_batch: dict[str, str] = {}
            preload: dict[str, str] | None = None
            if len(changes) > 1000:  # one query instead of one per row
                preload = {r[0]: r[1] for r in self.db.all("SELECT card, id FROM passes WHERE card IS NOT NULL")}
            for op, pid, wire in changes:
                v += 1
                if op == "upsert":
                    assert wire is not None
                    card = wire.get("card")
                    if card:
                        other = cards_in_batch.get(card)
                        if other is None and preload is not None:
                            other = preload.get(card)
                        elif other is None:
                            row = self.db.one("SELECT id FROM passes WHERE card = ? AND id <> ?", (card, pid))
                            other = row[0] if row else None
                        if other is not None and other != pid:
                            raise RosterError(f"card {card} is already bound to pass {other}")
                        cards_in_batch[card] = pid
                    text = _wire_text(wire)
                    wires_in_batch[pid] = wire
                    pass_rows.append(
                        (pid, wire["category"], wire.get("holder"), wire.get("unit"), card, 1 if wire["revoked"] else 0, v, text)
                    )
                    change_rows.append((v, pid, "upsert", '{"op":"upsert","pass":' + text + "}", now))
                elif op == "delete":
                    deletes.append((pid,))
                    change = tombstones.delete_change(pid, wires_in_batch.get(pid) or self.get_pass(pid))
                    stones.append((v, change))
                    change_rows.append((v, pid, "delete", json.dumps(change, ensure_ascii=False), now))
                else:
                    raise ValueError(f"unknown op {op!r}")
            # order matters when one batch upserts and deletes the same id: replay in order
            if deletes and pass_rows:
                by_version = {r[6]: r for r in pass_rows}
                for (vv, pid, op, _c, _t) in change_rows:
                    if op == "delete":
                        self.db.execute("DELETE FROM passes WHERE id = ?", (pid,))
                    else:
                        self._upsert_rows([by_version[vv]])
            else:
                if pass_rows:
                    self._upsert_rows(pass_rows)
                if deletes:
                    self.db.executemany("DELETE FROM passes WHERE id = ?", deletes)
            last_op = {pid: op for op, pid, _w in changes}
            tombstones.remember(self.db, [(vv, ch) for vv, ch in stones if last_op[ch["id"]] == "delete"], now)
            if pass_rows and self.db.one("SELECT 1 FROM tombstones LIMIT 1"):
                tombstones.lift(self.db, [pid for pid, op in last_op.items() if op == "upsert"])
            if change_rows:
                self.db.executemany("INSERT INTO changes (version, pass_id, op, change, ts) VALUES (?,?,?,?,?)", change_rows)
                self.db.execute("UPDATE meta SET value = ? WHERE key = 'passes_version'", (str(v),))
        return v0, v

    def _upsert_rows(self, rows: list[tuple[Any, ...]]) -> None:
        self.db.executemany(
            "INSERT INTO passes (id, category, holder, unit, card, revoked, version, wire) VALUES (?,?,?,?,?,?,?,?)"
            " ON CONFLICT (id) DO UPDATE SET category = excluded.category, holder = excluded.holder,"
            " unit = excluded.unit, card = excluded.card, revoked = excluded.revoked, version = excluded.version,"
            " wire = excluded.wire",
            rows,
        )

    def upsert_passes(self, rows: list[dict[str, Any]], cards: dict[str, str] | None = None, *, only_changed: bool = True) -> tuple[int, int]:
        """Roster rows (gate.roster format, times as datetimes) in; unchanged rows are skipped."""
        bind = {pid: card for card, pid in (cards or {}).items()}
        wires = []
        for r in rows:
            r = dict(r)
            if r["id"] in bind and not r.get("card"):
                r["card"] = bind[r["id"]]
            wires.append(wire_pass(r))
        if only_changed and wires:
            current = {}
            ids = [w["id"] for w in wires]
            for i in range(0, len(ids), 900):
                part = ids[i : i + 900]
                q = "SELECT id, wire FROM passes WHERE id IN (" + ",".join("?" * len(part)) + ")"
                current.update({r[0]: r[1] for r in self.db.all(q, part)})
            wires = [w for w in wires if current.get(w["id"]) != _wire_text(w)]
        return self.apply([("upsert", w["id"], w) for w in wires])

    def add_pass(self, **fields: Any) -> int:
        return self.apply([("upsert", fields["id"], wire_pass(fields))])[1]

    def revoke_pass(self, pass_id: str, revoked: bool = True) -> int:
        cur = self.get_pass(pass_id)
        if cur is None:
            raise RosterError(f"no pass {pass_id!r}")
        cur["revoked"] = revoked
        return self.apply([("upsert", pass_id, cur)])[1]

    def delete_pass(self, pass_id: str) -> int:
        if self.get_pass(pass_id) is None:
            raise RosterError(f"no pass {pass_id!r}")
        return self.apply([("delete", pass_id, None)])[1]

    def changes_after(self, version: int, limit: int) -> list[tuple[int, str]]:
        return [(int(r[0]), r[1]) for r in self.db.all(
            "SELECT version, change FROM changes WHERE version > ? ORDER BY version LIMIT ?", (version, limit)
        )]

    def snapshot_lines(self) -> tuple[int, list[str]]:
        """(version, wire JSON of every pass, ordered by id) at one consistent version."""
        with self.db.tx(write=False):
            v = int(self.db.one("SELECT value FROM meta WHERE key = 'passes_version'")[0])
            lines = [r[0] for r in self.db.all("SELECT wire FROM passes ORDER BY id")]
            lines += tombstones.snapshot_lines(self.db, time.time())  # removed passes, still refused
        return v, lines

    # ------------------------------------------------------------ policy / commands
    def store_policy(self, payload: dict[str, Any]) -> bool:
        """Keep a signed policy payload; False if that version is already stored."""
        with self.db.tx():
            cur = self.db.execute(
                "INSERT INTO policies (version, payload, ts) VALUES (?,?,?) ON CONFLICT (version) DO NOTHING",
                (payload["version"], codec.encode(payload).decode("utf-8"), time.time()),
            )
            return cur.rowcount == 1

    def latest_policy(self) -> dict[str, Any] | None:
        row = self.db.one("SELECT payload FROM policies ORDER BY version DESC LIMIT 1")
        return json.loads(row[0]) if row else None

    def policy_payload(self, version: int) -> dict[str, Any] | None:
        row = self.db.one("SELECT payload FROM policies WHERE version = ?", (version,))
        return json.loads(row[0]) if row else None

    def store_command(self, payload: dict[str, Any]) -> None:
        with self.db.tx():
            self.db.execute(
                "INSERT INTO commands (nonce, gate, cmd, payload, ts) VALUES (?,?,?,?,?)",
                (payload["nonce"], payload["gate"], payload["cmd"], codec.encode(payload).decode("utf-8"), time.time()),
            )


# ---------------------------------------------------------------- signed payloads


class Signer:
    """Builds the signed payloads central sends."""

    def __init__(self, key_path: Path | str, topics: CentralTopics, by: str = "central") -> None:
        self.key = load_private(Path(key_path))
        self.topics = topics
        self.by = by

    def passes_batch(self, from_version: int, to_version: int, changes: list[dict[str, Any]]) -> dict[str, Any]:
        return codec.sign(
            {"type": "passes", "from_version": from_version, "to_version": to_version, "ts": now_iso(), "changes": changes},
            self.key,
        )

    def policy(self, policy: PolicyConfig | dict[str, Any], version: int | None = None) -> dict[str, Any]:
        if isinstance(policy, dict):
            policy = PolicyConfig.model_validate(policy)
        body = policy.model_dump(mode="json")
        v = int(version if version is not None else policy.version)
        if v < 1:
            raise ValueError("a published policy needs version = N (N >= 1) in its [policy] table")
        body["version"] = v
        return codec.sign({"type": "policy", "version": v, "ts": now_iso(), "policy": body, "by": self.by}, self.key)

    def command(
        self, gate: str, cmd: str, *, lane: str | None = None, reason: str | None = None, day: str | None = None,
        ttl_s: float = 300.0, by: str | None = None, now: float | None = None, mode: str | None = None,
    ) -> dict[str, Any]:
        if cmd not in COMMANDS:
            raise ValueError(f"unknown command {cmd!r}; expected one of {', '.join(COMMANDS)}")
        if cmd == "open_door" and (not lane or not reason):
            raise ValueError("open_door needs a lane and a reason")
        if cmd == "door_mode" and (not lane or not reason or mode not in ("normal", "open", "locked")):
            raise ValueError("door_mode needs a lane (or 'all'), a mode (normal, open or locked) and a reason")
        t = time.time() if now is None else now
        body: dict[str, Any] = {
            "type": "cmd", "cmd": cmd, "gate": gate, "nonce": secrets.token_hex(16),
            "ts": now_iso(t), "expires": now_iso(t + ttl_s), "by": by or self.by,
        }
        if lane:
            body["lane"] = lane
        if reason:
            body["reason"] = reason[:200]
        if day:
            body["date"] = day
        if mode:
            body["mode"] = mode
        out = codec.sign(body, self.key)
        codec.decode(codec.encode(out), "cmd", _self_ring(self.key))  # our own output must pass our schema
        return out

    def snapshot_chunks(self, request_id: str, version: int, sha256: str, datas: list[str]) -> Iterator[dict[str, Any]]:
        count = len(datas)
        for i, data in enumerate(datas):
            yield codec.sign(
                {"type": "snapshot_chunk", "request_id": request_id, "version": version, "index": i, "count": count,
                 "sha256": sha256, "data": data, "ts": now_iso()},
                self.key,
            )


def _self_ring(key: Any) -> Any:
    from gate.passes import KeyRing

    return KeyRing([key.public_key()])


@dataclass(frozen=True)
class Snapshot:
    version: int
    sha256: str
    datas: tuple[str, ...]  # base64 of zlib-compressed JSON lines
    passes: int


def build_snapshot(version: int, lines: list[str], chunk: int, level: int = 3) -> Snapshot:
    """Chunks of `chunk` passes: each is zlib(JSON lines, '\\n' after each); sha256 over the
    concatenation of all decompressed chunks (= the whole JSON-lines table)."""
    h = hashlib.sha256()
    datas = []
    for i in range(0, max(len(lines), 1), chunk):
        part = lines[i : i + chunk]
        raw = ("\n".join(part) + "\n").encode("utf-8") if part else b""
        h.update(raw)
        datas.append(base64.b64encode(zlib.compress(raw, level)).decode("ascii"))
    return Snapshot(version, h.hexdigest(), tuple(datas), len(lines))


def read_snapshot(chunks: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """Reassemble verified chunks (any order) into (version, wire pass records); checks
    completeness, one version/request and the sha256. Raises PayloadError."""
    if not chunks:
        raise PayloadError("malformed", "no chunks")
    count = chunks[0]["count"]
    by_index = {c["index"]: c for c in chunks}
    if sorted(by_index) != list(range(count)):
        raise PayloadError("malformed", f"have chunks {sorted(by_index)[:10]}..., need 0..{count - 1}")
    keys = {(c["request_id"], c["version"], c["sha256"], c["count"]) for c in chunks}
    if len(keys) != 1:
        raise PayloadError("malformed", "chunks of different snapshots")
    h = hashlib.sha256()
    out: list[dict[str, Any]] = []
    for i in range(count):
        try:
            raw = zlib.decompress(base64.b64decode(by_index[i]["data"], validate=True))
        except (ValueError, zlib.error) as exc:
            raise PayloadError("malformed", f"chunk {i}: {exc}") from None
        h.update(raw)
        text = raw.decode("utf-8").strip("\n")
        if text:  # JSON escapes newlines inside strings, so a raw newline only ends a record
            try:
                out.extend(json.loads("[" + text.replace("\n", ",") + "]"))
            except json.JSONDecodeError as exc:
                raise PayloadError("malformed", f"chunk {i}: {exc}") from None
    if h.hexdigest() != chunks[0]["sha256"]:
        raise PayloadError("forged", "snapshot sha256 mismatch")
    return chunks[0]["version"], out


# ---------------------------------------------------------------- MQTT


class MqttPeer:
    """A paho v5 client with PUBACK reason codes tracked per mid."""

    def __init__(
        self, conf: CentralConfig, client_id: str, *, persistent: bool, manual_ack: bool = False,
        on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
        on_connect: Callable[[bool], None] | None = None,
    ) -> None:
        self.conf = conf
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack,
        )
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(50)
        self.client.reconnect_delay_set(0.2, 10)
        if conf.username:
            pw = None
            if conf.password_file:
                pw = Path(conf.password_file).read_text(encoding="utf-8").strip()
            self.client.username_pw_set(conf.username, pw)
        host, port, tls = conf.endpoint()
        if tls:
            self.client.tls_set(
                ca_certs=str(conf.ca_file) if conf.ca_file else None,
                certfile=str(conf.cert_file) if conf.cert_file else None,
                keyfile=str(conf.key_file) if conf.key_file else None,
            )
        self.host, self.port = host, port
        self.persistent = persistent
        self._acks: dict[int, Any] = {}
        self._cond = threading.Condition()
        self.connected = threading.Event()
        self.generation = 0  # bumped on every CONNACK: acks of an older connection are not sent
        self._user_on_message = on_message
        self._user_on_connect = on_connect
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        if on_message:
            self.client.on_message = lambda c, u, m: on_message(m)

    def start(self, *, wait: bool = False) -> None:
        """Connect in the background (reconnecting for ever); with wait, the first
        connect happens here and raises OSError if the broker cannot be reached."""
        props = Properties(PacketTypes.CONNECT)
        if self.persistent:
            props.SessionExpiryInterval = self.conf.session_expiry_s
        props.ReceiveMaximum = self.conf.receive_maximum
        kw = dict(keepalive=self.conf.keepalive_s, clean_start=not self.persistent, properties=props)
        if wait:
            self.client.connect(self.host, self.port, **kw)  # type: ignore[arg-type]
        else:
            self.client.connect_async(self.host, self.port, **kw)  # type: ignore[arg-type]
        self.client.loop_start()

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self.connected.clear()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("broker %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        self.generation += 1
        no_delay(client)  # acks and receipts go out between deliveries (sync/link.py)
        self.connected.set()
        log.info("connected to %s:%s (session present: %s)", self.host, self.port, flags.session_present)
        if self._user_on_connect:
            self._user_on_connect(flags.session_present)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        log.info("disconnected from %s:%s: %s", self.host, self.port, reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self._acks[mid] = reason_code
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes | dict[str, Any], *, retain: bool = False, qos: int = 1) -> int:
        if isinstance(payload, dict):
            payload = codec.encode(payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid

    def wait(self, mids: list[int], timeout: float) -> bool:
        """True when every mid got a non-failure PUBACK; False on a failure or timeout."""
        deadline = time.monotonic() + timeout
        ok = True
        with self._cond:
            for mid in mids:
                while mid not in self._acks:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, 0.5))
                rc = self._acks.pop(mid)
                if rc is not None and getattr(rc, "is_failure", False):
                    log.warning("publish refused by the broker: %s", rc)
                    ok = False
        return ok

    def publish_wait(self, topic: str, payload: bytes | dict[str, Any], *, retain: bool = False, timeout: float = 10.0) -> bool:
        return self.wait([self.publish(topic, payload, retain=retain)], timeout)

    def ack(self, mid: int, qos: int, generation: int) -> None:
        if qos > 0 and generation == self.generation:
            self.client.ack(mid, qos)


def publish_once(conf: CentralConfig, items: list[tuple[str, dict[str, Any], bool]], timeout: float = 15.0) -> bool:
    """Connect, publish (topic, payload, retain) items QoS 1, wait for the PUBACKs, disconnect."""
    peer = MqttPeer(conf, f"{conf.mqtt_client_id}-cli-{secrets.token_hex(3)}", persistent=False)
    peer.start(wait=True)
    try:
        if not peer.connected.wait(timeout):
            raise ConnectionError(f"cannot reach the broker at {conf.broker}")
        mids = [peer.publish(t, p, retain=r) for t, p, r in items]
        return peer.wait(mids, timeout)
    finally:
        peer.stop()


# ---------------------------------------------------------------- central


@dataclass
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    generation: int
    received: float


class Central:
    """The running central. ``Central(config, db_path)``: db_path (a path or a
    postgresql:// DSN) overrides ``config.db``."""

    def __init__(self, config: CentralConfig, db_path: str | Path | None = None, *, client_id: str | None = None) -> None:
        self.config = config
        self.db_url = str(db_path) if db_path is not None else config.db
        self.topics = config.topics
        self.signer = Signer(config.signing_key, self.topics, config.name)
        self.client_id = client_id or config.mqtt_client_id
        self.group = config.group or share_group(self.signer.key, config.site)
        self.receipts = ReceiptBook(self.signer.key, lambda g: self.topics.gate(g).receipt)  # the writer's
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._inbound: queue.Queue[_Inbound] = queue.Queue()
        self._snap_q: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._presence_q: queue.Queue[tuple[str, int]] = queue.Queue()  # (gate, from): replays asked for
        self._presence_wake = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._snapshot_cache: Snapshot | None = None
        self._published_policy = 0
        self._policy_mtime: float | None = None
        self._republish_head = threading.Event()
        self._keylist = keylist.Republisher()  # withdrawn keys (sync/keylist.py)
        self._writer_core = inbound.Writer(
            handle=self._handle, done=self._stored, open_store=lambda: CentralStore(self.db_url), stop=self._stop,
            count=self._count,
            # End-to-end receipts (sync/central/receipts.py): what each committed transaction stored,
            # and a quarantined event counts as held (the gate stops resending it).
            receipts=inbound.ReceiptHooks(begin=self.receipts.begin, saw=self.receipts.saw,
                                          flush=self.receipts.flush, send=self._send_receipts),
        )
        # the caller's thread (tests, CLI) gets its own store; threads open theirs
        self.store = CentralStore(self.db_url)
        self._subscribed = threading.Event()
        self.peer = MqttPeer(
            config, self.client_id, persistent=True, manual_ack=True,
            on_message=self._on_message, on_connect=self._on_connect,
        )
        self.peer.client.on_subscribe = self._on_subscribe

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: list[Any], properties: Any) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("subscriptions refused by the broker: %s (check the ACL for user %s)", bad, self.config.username)
            self._count("subscribe_refused")
        self._subscribed.set()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Central":
        if self.config.policy_file:
            self._load_policy_file(force=True)
        for name, fn in (("writer", self._writer), ("publisher", self._publisher), ("snapshots", self._snapshots),
                         ("presence", self._presence)):
            t = threading.Thread(target=self._guard(fn), name=f"central-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.peer.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        self.peer.stop()
        self.store.close()

    def __enter__(self) -> "Central":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Connected and subscribed (SUBACK received)."""
        deadline = time.monotonic() + timeout
        return self.peer.connected.wait(timeout) and self._subscribed.wait(max(0.0, deadline - time.monotonic()))

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    fn()
                    return
                except Exception:
                    log.exception("central %s failed; restarting it in 1 s", threading.current_thread().name)
                    self._count("thread_restarts")
                    self._stop.wait(1.0)
        return run

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    # ------------------------------------------------------------ inbound
    def _on_connect(self, session_present: bool) -> None:
        self._subscribed.clear()
        t, g = self.topics, self.group
        subs = [
            (t.shared_events(g), 1),
            (f"$share/{g}/{t.all_reports}", 1),
            (f"$share/{g}/{t.snapshot_requests}", 1),
            (f"$share/{g}/{t.presence_requests}", 1),
            (t.all_status, 1),
        ]
        self.peer.client.subscribe([(topic, mqtt.SubscribeOptions(qos=q)) for topic, q in subs])
        self._republish_head.set()
        self._wake.set()

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        # paho's network thread: queue only; the writer stores, then acks
        self._inbound.put(_Inbound(msg.topic, msg.payload, msg.mid, msg.qos, bool(msg.retain), self.peer.generation, time.time()))

    def _writer(self) -> None:
        store = CentralStore(self.db_url)
        ReceiptBook.create_schema(store.db)
        try:
            while not self._stop.is_set():
                try:
                    first = self._inbound.get(timeout=0.2)
                except queue.Empty:
                    self._send_receipts(self.receipts.tick(store.db))  # holes still open: ask again
                    continue
                batch = [first]
                while len(batch) < 2000:
                    try:
                        batch.append(self._inbound.get_nowait())
                    except queue.Empty:
                        break
                store = self._store_batch(store, batch)
        finally:
            store.close()

    def _store_batch(self, store: CentralStore, batch: list[_Inbound]) -> CentralStore:
        # Each message checked on its own; a bad one is quarantined, never retried (sync/central/inbound.py).
        checked, skipped = [], []
        for m in batch:
            c = inbound.check(m, self.topics.prefix)
            if c is None:  # a retained status someone cleared: nothing to store
                skipped.append(m)
            else:
                checked.append(c)
        if skipped:
            self._stored(Counter({"received": len(skipped), "status_cleared": len(skipped)}), [], skipped)
        return self._writer_core.store_batch(store, checked) if checked else store

    def _stored(self, counts: Counter[str], snaps: list[tuple[str, dict[str, Any]]], msgs: list[_Inbound]) -> None:
        """After a commit: count, queue snapshot requests, and let the broker forget them."""
        with self._lock:
            self.counters.update(counts)
        if counts.get("presence_items"):
            self._presence_wake.set()  # the other gates hear of it now, not at the next poll
        for s in snaps:
            self._snap_q.put(s)
        for m in msgs:
            self.peer.ack(m.mid, m.qos, m.generation)

    def _send_receipts(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        # Retained: a gate that (re)connects learns at once what central holds.
        for topic, payload in items:
            self.peer.publish(topic, payload, retain=True)
        if items:
            self._count("receipts", len(items))

    def _handle(self, store: CentralStore, a: inbound.Accepted, counts: Counter[str], snaps: list[tuple[str, dict[str, Any]]]) -> None:
        obj, gate, kind, m = a.obj, a.gate, a.kind, a.msg
        if kind == "event":
            if store.insert_event(obj, m.received):
                counts["events"] += 1
                counts["presence_items"] += presence_relay.record(store.db, obj)  # the site hears of it (sync/central/presence_relay.py)
            else:
                counts["duplicates"] += 1
            self.receipts.saw(gate, int(obj["seq"]))
        elif kind == "status":
            store.upsert_status(obj, m.received)
            counts["status"] += 1
        elif kind == "report":
            store.upsert_report(obj, m.received)
            counts["reports"] += 1
        elif kind == "snapshot_request":
            counts["snapshot_requests"] += 1
            snaps.append((gate, obj))
        elif kind == "presence_request":
            counts["presence_requests"] += 1
            self._presence_q.put((gate, int(obj["from"])))
            self._presence_wake.set()

    # ------------------------------------------------------------ roster API
    def _notify(self) -> None:
        self._wake.set()

    def add_pass(self, **fields: Any) -> int:
        v = self.store.add_pass(**fields)
        self._notify()
        return v

    def upsert_passes(self, rows: list[dict[str, Any]], cards: dict[str, str] | None = None) -> tuple[int, int]:
        r = self.store.upsert_passes(rows, cards)
        self._notify()
        return r

    def revoke_pass(self, pass_id: str) -> int:
        v = self.store.revoke_pass(pass_id)
        self._notify()
        return v

    def delete_pass(self, pass_id: str) -> int:
        v = self.store.delete_pass(pass_id)
        self._notify()
        return v

    def import_roster(self, path: str | Path, *, replace: bool = False) -> tuple[int, int]:
        rng = import_roster(self.store, Path(path), tz=self.config.timezone, replace=replace)
        self._notify()
        return rng

    @property
    def passes_version(self) -> int:
        return self.store.passes_version

    def events(self, gate: str | None = None) -> list[dict[str, Any]]:
        return self.store.events(gate)

    # ------------------------------------------------------------ publishing
    def _publisher(self) -> None:
        store = CentralStore(self.db_url)
        try:
            published = int(store.get_meta("published_version") or 0)
            last_policy_check = 0.0
            while not self._stop.is_set():
                self._wake.wait(self.config.poll_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                if not self.peer.connected.is_set():
                    continue
                if time.monotonic() - last_policy_check >= self.config.poll_s:
                    last_policy_check = time.monotonic()
                    if self.config.policy_file:
                        self._load_policy_file(store=store)
                    self._publish_policy(store)
                    self._keylist.poll(store, self._publish_keylist)
                if self._republish_head.is_set():
                    self._republish_head.clear()
                    self._publish_head(store)
                    self._keylist.poll(store, self._publish_keylist, again=True)
                # another instance (or the CLI) may have published further
                published = max(published, int(store.get_meta("published_version") or 0))
                head = store.passes_version
                while head > published and not self._stop.is_set() and self.peer.connected.is_set():
                    if head - published > self.config.snapshot_backlog:
                        log.warning("%d unpublished changes: sending only the head; gates will ask for a snapshot", head - published)
                        self._count("skipped_ahead")
                        published = head - min(self.config.batch_size, head)
                    sent = self._publish_batch(store, published)
                    if sent is None:
                        self._wake.set()  # retry at the next poll
                        break
                    published = sent
                    store.set_meta("published_version", str(published))
                    head = store.passes_version
        finally:
            store.close()

    def _publish_batch(self, store: CentralStore, after: int) -> int | None:
        rows = store.changes_after(after, self.config.batch_size)
        if not rows:
            return None
        first, last = rows[0][0], rows[-1][0]
        from_v = after if first == after + 1 else first - 1  # a compacted log: gates behind see a gap
        payload = self.signer.passes_batch(from_v, last, [json.loads(c) for _, c in rows])
        ok = self.peer.publish_wait(self.topics.passes, payload, retain=self.config.retain_passes, timeout=30)
        if not ok:
            self._count("publish_failures")
            return None
        self._count("batches")
        self._count("changes_published", len(rows))
        return last

    def _publish_head(self, store: CentralStore) -> None:
        """On (re)connect: resend the latest batch (retained), so gates learn the head
        even if the broker lost its retained messages."""
        published = int(store.get_meta("published_version") or 0)
        if published <= 0 or not self.config.retain_passes:
            return
        start = max(0, published - self.config.batch_size)
        rows = [r for r in store.changes_after(start, self.config.batch_size) if r[0] <= published]
        if rows:
            from_v = rows[0][0] - 1
            payload = self.signer.passes_batch(from_v, rows[-1][0], [json.loads(c) for _, c in rows])
            self.peer.publish(self.topics.passes, payload, retain=True)
        latest = store.latest_policy()
        if latest:
            self.peer.publish(self.topics.policy, latest, retain=True)
            self._published_policy = max(self._published_policy, latest["version"])

    def _publish_keylist(self, payload: dict[str, Any]) -> bool:
        return self.peer.publish_wait(self.topics.keys, payload, retain=True, timeout=10)

    def _load_policy_file(self, force: bool = False, store: CentralStore | None = None) -> None:
        path = self.config.policy_file
        assert path is not None
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            if force:
                raise ConfigError(f"{path}: {exc}") from None
            return
        if not force and mtime == self._policy_mtime:
            return
        self._policy_mtime = mtime
        try:
            policy = load_policy(path)
            payload = self.signer.policy(policy)
        except (ConfigError, ValueError) as exc:
            if force:
                raise ConfigError(f"{path}: {exc}") from None
            log.error("policy file %s not published: %s", path, exc)
            return
        st = store or self.store
        latest = st.latest_policy()
        if latest and latest["version"] >= payload["version"]:
            if latest["version"] == payload["version"] and latest["policy"] != payload["policy"]:
                log.error("policy file %s changed but keeps version %d: bump the version to publish it", path, payload["version"])
            return
        st.store_policy(payload)
        self._wake.set()

    def set_policy(self, policy: PolicyConfig | dict[str, Any] | str | Path, version: int | None = None) -> dict[str, Any]:
        """Sign and keep a policy; the publisher sends it (retained) at once."""
        if isinstance(policy, (str, Path)):
            policy = load_policy(policy)
        payload = self.signer.policy(policy, version)
        self.store.store_policy(payload)
        self._wake.set()
        return payload

    def _publish_policy(self, store: CentralStore) -> None:
        latest = store.latest_policy()
        if latest is None or latest["version"] <= self._published_policy:
            return
        if self.peer.publish_wait(self.topics.policy, latest, retain=True, timeout=10):
            self._published_policy = latest["version"]
            self._count("policies")
            log.info("policy version %d published", latest["version"])

    def send_command(
        self, gate: str, cmd: str, *, lane: str | None = None, reason: str | None = None, day: str | None = None,
        ttl_s: float | None = None, by: str | None = None, wait: float = 10.0,
    ) -> dict[str, Any]:
        """Sign and publish a command to one gate (QoS 1). Returns the payload."""
        payload = self.signer.command(gate, cmd, lane=lane, reason=reason, day=day, ttl_s=ttl_s or self.config.command_ttl_s, by=by)
        self.store.store_command(payload)
        mid = self.peer.publish(self.topics.gate(gate).cmd, payload)
        if wait and not self.peer.wait([mid], wait):
            self._count("publish_failures")
            raise ConnectionError(f"command {cmd} to {gate} not acknowledged by the broker within {wait} s")
        self._count("commands")
        return payload

    # ------------------------------------------------------------ snapshots
    def snapshot(self, store: CentralStore | None = None) -> Snapshot:
        """The current table as compressed chunks (cached per version)."""
        st = store or self.store
        cached = self._snapshot_cache
        if cached is not None and cached.version == st.passes_version:
            return cached
        version, lines = st.snapshot_lines()
        snap = build_snapshot(version, lines, self.config.snapshot_chunk)
        self._snapshot_cache = snap
        return snap

    def _snapshots(self) -> None:
        store = CentralStore(self.db_url)
        limiter = SnapshotLimiter(self.config.snapshot_interval_s)  # one a gate per interval (sync/central/snapshot_limit.py)
        try:
            while not self._stop.is_set():
                answer: list[tuple[str, dict[str, Any]]] = []
                try:
                    gate, req = self._snap_q.get(timeout=0.2)
                    if limiter.offer(gate, req, time.monotonic()):
                        answer.append((gate, req))
                    else:
                        self._count("snapshot_requests_held")
                except queue.Empty:
                    pass
                for gate, req in answer + limiter.due(time.monotonic()):
                    self._send_snapshot(store, gate, req)
        finally:
            store.close()

    def _presence(self) -> None:
        """Presence to every gate as it is stored, the retained head as a heartbeat, and
        replays to a gate that missed some (sync/central/presence_relay.py)."""
        store = CentralStore(self.db_url)
        relay = presence_relay.Relay(self.signer.key, self.signer.by, self.topics, self.config.presence_heartbeat_s)
        try:
            while not self._stop.is_set():
                self._presence_wake.wait(min(1.0, self.config.presence_heartbeat_s))
                self._presence_wake.clear()
                if self._stop.is_set() or not self.peer.connected.is_set():
                    continue
                relay.publish(store, self.peer.publish_wait)
                while not self._presence_q.empty():
                    gate, start = self._presence_q.get_nowait()
                    self._count("presence_replays")
                    relay.replay(store, gate, start, self.peer.publish_wait)
        finally:
            store.close()

    def _send_snapshot(self, store: CentralStore, gate: str, req: dict[str, Any]) -> None:
        t0 = time.monotonic()
        snap = self.snapshot(store)
        topic = self.topics.gate(gate).snapshot
        mids = [
            self.peer.publish(topic, chunk)
            for chunk in self.signer.snapshot_chunks(req["request_id"], snap.version, snap.sha256, list(snap.datas))
        ]
        ok = self.peer.wait(mids, 120)
        self._count("snapshots" if ok else "publish_failures")
        log.info("snapshot v%d (%d passes, %d chunks) to %s in %.2f s%s", snap.version, snap.passes,
                 len(snap.datas), gate, time.monotonic() - t0, "" if ok else " (not all acknowledged)")


# ---------------------------------------------------------------- roster import


def import_roster(store: CentralStore, path: Path, *, tz: str = "Asia/Shanghai", replace: bool = False) -> tuple[int, int]:
    """A CSV roster (gate.roster format) into the roster: changed rows become changes;
    with replace, passes missing from the file are deleted. All or nothing."""
    from gate.roster import RosterError as CsvError, read_roster

    try:
        roster = read_roster(path, tz=tz)
    except CsvError as exc:
        raise RosterError(str(exc)) from None
    bind = {pid: card for card, pid in roster.cards.items()}
    wires = []
    for r in roster.rows:
        r = dict(r)
        r["card"] = bind.get(r["id"])
        wires.append(wire_pass(r))
    current = {row[0]: row[1] for row in store.db.all("SELECT id, wire FROM passes")}
    changes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("upsert", w["id"], w) for w in wires if current.get(w["id"]) != _wire_text(w)
    ]
    if replace:
        keep = {w["id"] for w in wires}
        changes += [("delete", pid, None) for pid in sorted(current) if pid not in keep]
    return store.apply(changes)
