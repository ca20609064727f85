"""CENTRAL.toml: central's settings, checked (unknown keys are errors), with paths
relative to the file."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gate.config import ConfigError, format_errors
from gate.config.sections import RetentionSection, RosterSection
from sync.topics import DEFAULT_PREFIX, CentralTopics


_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class CentralRetention(RetentionSection):
    """[retention]: `days` as the gate's (default 30): events central received longer
    ago than that, and visitor registrations that long after the visit ended, are purged
    every `purge_every_s`, `chunk` rows a transaction (sync/central/privacy.py)."""

    purge_every_s: float = Field(3600.0, gt=0)
    chunk: int = Field(1000, ge=1, le=100_000)


class ConsoleConfig(BaseModel):
    """[console]: the office's web console (sync/central/console/), served by the running central."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = Field("127.0.0.1:8090", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$")
    # Host names it answers to beyond localhost, the listen address and (on 0.0.0.0) this
    # machine's name: required when it listens beyond localhost (gate/webbase/hosts.py).
    allowed_hosts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.:\[\]_-]{1,253}$")]] = []
    idle_min: float = Field(30.0, gt=0, le=24 * 60)  # signed out after this long without a request
    session_h: float = Field(12.0, gt=0, le=7 * 24)  # and at the latest after this long
    threads: int = Field(8, ge=4, le=64)
    # The community map's building boards (三色牌): green at or above map_green_pct of a
    # building's people meeting the chosen rule, yellow down to map_yellow_pct, red below.
    map_green_pct: float = Field(95.0, gt=0, le=100)
    map_yellow_pct: float = Field(90.0, gt=0, le=100)

    @model_validator(mode="after")
    def _thresholds(self) -> "ConsoleConfig":
        if self.map_yellow_pct > self.map_green_pct:
            raise ValueError(f"map_yellow_pct ({self.map_yellow_pct:g}) must not be above map_green_pct ({self.map_green_pct:g})")
        return self


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
    pass_key: Path | None = None  # Ed25519 key that signs the passes the console prints (never signing_key); gates list its .pub in keys.trusted
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
    retention: CentralRetention = CentralRetention()
    erase_resend_s: float = Field(60.0, gt=0)  # an erase a gate has not confirmed goes again this often while it is online
    pass_valid_days: int = Field(365, ge=0, le=36500)  # `passes add` without --valid-until: ends after this many days (0: never)
    console: ConsoleConfig | None = None  # [console]: the office console is served while central runs
    # [roster] attributes: roster columns that become pass attributes (header -> name), as a
    # gate's [roster]: kept in central's roster, sent to every gate, read by the map's rules.
    roster: RosterSection = RosterSection()

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


_TABLES = ("console", "retention", "roster")


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
    if isinstance(data.get("central"), dict) and set(data) <= {"central", *_TABLES}:
        # a [central] table too, beside the [console], [retention] and [roster] tables
        data = {**data["central"], **{k: data[k] for k in _TABLES if k in data}}
    base = path.resolve().parent
    for key in ("signing_key", "pass_key", "policy_file", "password_file", "ca_file", "cert_file", "key_file"):
        v = data.get(key)
        if isinstance(v, str) and v and not Path(v).is_absolute():
            data[key] = str(base / v)
    db = data.get("db")
    if isinstance(db, str) and db and not is_dsn(db) and not Path(db).is_absolute():
        data["db"] = str(base / db)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return CentralConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(str(path), exc, data)) from None


def is_dsn(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))
