"""The gate's other sections: [gate], [store], [keys], [door], [voice], [gpio],
[guard], [visitors], [sync], [roster], [retention], [demo]."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from gate.config.base import Strict, _check_span, check_timezone
from gate.core import attributes as pass_attributes

# ---------------------------------------------------------------- gate


class GateSection(Strict):
    id: str = Field("gate-01", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    site: str = Field("default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)


class StoreSection(Strict):
    path: Path = Path("/var/lib/gate/gate.db")


class KeysSection(Strict):
    trusted: list[Path] = []  # public keys whose passes this gate accepts
    signing: Path | None = None  # private key for passes issued here (visitor registration, `passes issue`)
    # A pass printed here for a table row with no end date ends this many days after
    # printing (0: never). A token that ends lets a removed pass's tombstone end too.
    pass_valid_days: int = Field(365, ge=0, le=36500)


class DoorModeSchedule(Strict):
    """A door mode in force while a schedule (policy.schedules) allows, e.g. the
    morning rush held open. The first entry whose schedule allows wins; else normal."""

    mode: Literal["open", "locked"]
    schedule: str
    lanes: list[str] = []  # empty: every lane


class DoorSection(Strict):
    modes: list[DoorModeSchedule] = []
    unlock_s: float = Field(5.0, gt=0)
    held_s: float = Field(30.0, gt=0)
    # Lock as soon as the door closes behind the person (one person through); false
    # keeps it unlocked for the whole unlock_s (a second push is then no intrusion).
    relock_on_close: bool = True


class VoiceSection(Strict):
    languages: list[Literal["zh", "en"]] = ["zh", "en"]
    engine: Literal["pyttsx3", "espeak"] = "pyttsx3"
    rate: int = Field(160, ge=80, le=400)
    volume: float = Field(1.0, ge=0.0, le=1.0)
    cache_dir: Path | None = None  # default: beside the store
    # Another espeak-ng voice for a language, e.g. {en = "en-us"}; defaults: zh
    # cmn-latn-pinyin (Debian's cmn/zh voices read Chinese as English), en en.
    voices: dict[Literal["zh", "en"], str] = {}


class GpioSection(Strict):
    backend: Literal["auto", "rpigpio", "lgpio"] = "auto"


class LcdConfig(Strict):
    """A 16x2 or 20x4 HD44780 character LCD on an I2C backpack (PCF8574)."""

    driver: Literal["hd44780", "sim"] = "hd44780"
    i2c_port: int = Field(1, ge=0, le=10)
    address: int = Field(0x27, ge=0x03, le=0x77)
    cols: Literal[16, 20] = 16
    rows: Literal[2, 4] = 2


class GuardSection(Strict):
    """The guard's page (served by the daemon) and the optional character LCD."""

    enabled: bool = True
    listen: str = Field("127.0.0.1:8080", pattern=r"^[^:\s]+:\d{1,5}$")
    language: Literal["zh", "en"] = "zh"
    # Needed to bind beyond localhost; actions take the password or the PIN.
    password_file: Path | None = None
    pin_file: Path | None = None
    # Named guards, each with a PIN of their own (`gate guards add NAME`): who is on duty,
    # and whose name goes with each override, acknowledgement and registration.
    guards_file: Path | None = None
    # The local HTTP API under /api/v1/ (gate/web/api.py), for intercoms, Home Assistant,
    # Node-RED: off unless true. Each client has a bearer token of its own (`gate tokens add`),
    # kept hashed in tokens_file (default: api-tokens.json beside guards_file, else beside the store).
    api: bool = False
    tokens_file: Path | None = None
    # Host names the page answers to besides localhost, the listen address and this
    # machine's name (a name it is reached by on the LAN; others are refused: DNS rebinding).
    allowed_hosts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.:\[\]_-]{1,253}$")]] = []
    stale_after_h: float = Field(24.0, gt=0)  # pass table or policy older than this: banner
    visitor_valid_until: str = "23:59"  # visitor passes end today at this local time
    lcd: LcdConfig | None = None  # an optional second display: last decision and any alarm
    manual_open_reasons: list[str] = ["快递/外卖 delivery", "救护/消防 emergency", "访客 visitor", "设备故障 device fault", "其他 other"]
    # Why the guard changes a lane's door mode (normal, held open, locked) from the page.
    mode_reasons: list[str] = ["早高峰 morning rush", "疏散 evacuation", "封控 lockdown", "可疑人员 suspicious person",
                               "恢复正常 back to normal", "其他 other"]

    @field_validator("visitor_valid_until")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        _check_span(f"{v}-{v}")
        return v


# The visit lengths the guard page offers (gate/desk/visitors.py): two hours, half a day
# (four hours) or today (until guard.visitor_valid_until).
VISIT_LENGTHS = ("2h", "half_day", "today")


class VisitorsSection(Strict):
    """Visitor registration at the guard page."""

    default_length: str = "today"  # the length the form starts on: 2h | half_day | today

    @field_validator("default_length")
    @classmethod
    def _length(cls, v: str) -> str:
        if v not in VISIT_LENGTHS:
            raise ValueError(f"expected one of {', '.join(repr(x) for x in VISIT_LENGTHS)} "
                             f"(2 hours, half a day = 4 hours, or until guard.visitor_valid_until today)")
        return v


class SyncSection(Strict):
    """MQTT v5 to central. Without this section (and no --broker) the gate runs alone."""

    broker: str = Field("mqtt://127.0.0.1:1883", pattern=r"^mqtts?://[^:/\s]+(:\d{1,5})?/?$")
    prefix: str = "gate/v1/{site}"
    client_id: str | None = None  # default: the gate id
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None  # mqtts: the CA that signed the broker's certificate
    cert_file: Path | None = None  # mqtts: this gate's client certificate and key
    key_file: Path | None = None
    # Central's public keys: what may sign pass batches, snapshots, policy, commands and
    # the key list. REQUIRED with [sync]; [keys] trusted (QR passes) never stands in for it.
    central_keys: list[Path] = []
    # Share who is inside (and fever holds) with the site's other gates through central;
    # with it, entry decisions made without news from central for policy.presence_stale_s
    # are marked `presence: stale`.
    presence: bool = True
    window: int = Field(20, ge=1, le=1000)  # QoS 1 messages handed to paho at a time
    keepalive_s: int = Field(30, ge=5, le=3600)
    heartbeat_s: float = Field(30.0, gt=0)
    backoff_s: tuple[float, float] = (0.5, 30.0)
    outbox_max_rows: int = Field(2_000_000, ge=100)  # cap: alarm when reached, nothing dropped silently
    outbox_max_age_h: float = Field(24 * 30, gt=0)
    report_at: str = "00:05"  # each day's report goes up at this local time the morning after (and on request)
    # An event is delivered when central's signed receipt says it is stored, not when
    # the broker acked it; false only for a central that sends no receipts.
    receipts: bool = True
    receipt_timeout_s: float = Field(10.0, gt=0, le=3600)  # no receipt this long: send again (doubling, up to 5 min)
    receipt_window: int = Field(2000, ge=1, le=100_000)  # events handed over and waiting for a receipt, at most
    # Each decision goes up with its situation (the policy's inputs, without the pass's id
    # and unit: the event names the pass, central's roster has its unit), so that the
    # office console can replay a draft policy against it. false: situations stay on the
    # gate, and central counts these decisions as not replayable. TOML true/false only.
    send_situations: StrictBool = True
    # Home Assistant MQTT discovery (sync/homeassistant.py, docs/mqtt.md "Home Assistant"): each
    # lane's door, contact, last decision, temperature, decisions and alarms as entities, on a
    # second connection whose last will marks them unavailable. TOML true/false only.
    homeassistant: StrictBool = False
    # Home Assistant may open a lane's door ({prefix}/{gate}/{lane}/door/set, LOCK/UNLOCK); off,
    # its lock is read-only. The broker must let only Home Assistant's user write that topic.
    door_commands: StrictBool = False
    # The Home Assistant connection's broker login (default: username / password_file). With
    # use_username_as_clientid (docs/mosquitto.conf) it needs a user of its own, e.g. "east-1-ha".
    homeassistant_username: str | None = None
    homeassistant_password_file: Path | None = None

    @field_validator("report_at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        _check_span(f"{v}-{v}")
        return v

    @model_validator(mode="after")
    def _door_commands_need_homeassistant(self) -> "SyncSection":
        if self.door_commands and not self.homeassistant:
            raise ValueError("door_commands = true needs homeassistant = true (the commands come from Home Assistant)")
        return self

    def endpoint(self) -> tuple[str, int, bool]:
        """(host, port, tls) from the broker URL."""
        tls = self.broker.startswith("mqtts://")
        rest = self.broker.split("://", 1)[1].rstrip("/")
        host, _, port = rest.partition(":")
        return host, int(port) if port else (8883 if tls else 1883), tls


class RosterSection(Strict):
    """Roster columns that become pass attributes for the community's rules:
    header text -> attribute name, e.g. {"疫苗剂次" = "vaccine_doses"}. Other
    unknown columns (an ID number, notes) are never kept."""

    attributes: dict[Annotated[str, Field(min_length=1, max_length=64)],
                     Annotated[str, Field(pattern=pass_attributes.NAME)]] = Field({}, max_length=pass_attributes.MAX_KEYS)


class RetentionSection(Strict):
    days: int = Field(30, ge=1, le=3650)  # events older than this, once delivered upstream, are purged daily


class DemoSection(Strict):
    script: Path  # a drill file played in real time, on a loop
    loop: bool = True
    pause_s: float = Field(3.0, ge=0)  # between rounds
