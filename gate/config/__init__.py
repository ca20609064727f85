"""Typed configuration, loaded from one TOML file.

Every model forbids unknown keys, so a typo is an error that names the file, the
key path and what was expected, never a setting silently ignored.
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gate.schedules import BUILT_IN as BUILT_IN_SCHEDULES
from gate.schedules import Holidays, ScheduleEntry, parse_span

CATEGORIES = ("resident", "renter", "returnee", "visitor", "staff", "courier")


class ConfigError(Exception):
    """A configuration that cannot be used; the message is meant for the operator."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_span(value: str | None) -> str | None:
    """'HH:MM-HH:MM' (may wrap past midnight)."""
    if value is not None:
        parse_span(value)
    return value


def check_timezone(v: str) -> str:
    """An IANA zone name this machine knows (shared by every config that has one)."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(v)
    except Exception:
        raise ValueError(f"unknown time zone {v!r}, expected e.g. 'Asia/Shanghai'") from None
    return v


# ---------------------------------------------------------------- policy


class RulePrompt(Strict):
    zh: str = Field(min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=300)


class RuleConfig(Strict):
    """A check the community writes itself (DRILLS.md, Rules): CEL expressions over
    the pass, the lane and the time; compiled when the policy loads."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    when: str | None = Field(None, max_length=2000)  # omitted: every pass
    require: str = Field(min_length=1, max_length=2000)
    prompt: RulePrompt
    # Which way it applies: a rule is about letting people in unless it says otherwise
    # (leaving is lenient on purpose: free egress).
    direction: Literal["in", "out", "both"] = "in"

    @field_validator("when", "require")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        from gate.rules import RuleError, compile_expression

        if v is not None:
            try:
                compile_expression(v)
            except RuleError as exc:
                raise ValueError(str(exc)) from None
        return v


class CardSweepPolicy(Strict):
    """A burst of unknown cards or forged passes on one lane (someone trying numbers)."""

    count: int = Field(5, ge=2)
    window_s: float = Field(60.0, gt=0)
    throttle_s: float = Field(2.0, ge=0)  # one credential answered per this, until the guard acknowledges


class CategoryPolicy(Strict):
    colour: str = "#9e9e9e"
    label_zh: str = ""
    label_en: str = ""
    refused: bool = False
    hours: str | None = None  # "08:00-20:00": entry allowed only then
    schedule: str | None = None  # a named weekly schedule (policy.schedules) entries must fall in

    @field_validator("hours")
    @classmethod
    def _span(cls, v: str | None) -> str | None:
        return _check_span(v)


DEFAULT_CATEGORIES: dict[str, dict[str, Any]] = {
    "resident": {"colour": "#2e7d32", "label_zh": "常住", "label_en": "resident"},
    "renter": {"colour": "#1565c0", "label_zh": "租住", "label_en": "renter"},
    "returnee": {"colour": "#c62828", "label_zh": "返京", "label_en": "returnee"},
    "visitor": {"colour": "#ec407a", "label_zh": "访客", "label_en": "visitor"},
    "staff": {"colour": "#6a1b9a", "label_zh": "工作人员", "label_en": "staff"},
    "courier": {"colour": "#ef6c00", "label_zh": "快递", "label_en": "courier", "refused": True},
}


class PolicyConfig(Strict):
    version: int = 0
    fever_c: float = Field(37.3, ge=35.0, le=42.0)
    temperature_wait_s: float = Field(10.0, gt=0)
    temperature_fresh_s: float = Field(5.0, ge=0)
    retest_window_s: float = Field(60.0, gt=0)
    human_min_c: float = 34.0
    human_max_c: float = 43.0
    admit_unlisted: bool = True
    passback: Literal["soft", "hard", "off"] = "soft"
    passback_reset_h: float = Field(12.0, gt=0)
    challenge_rate: float = Field(0.0, ge=0.0, le=1.0)
    pcr_within_h: float | None = Field(None, gt=0)
    health_codes: list[Literal["green", "yellow", "red"]] = ["green"]
    night: str = "22:00-06:00"
    reminder_after_s: float = Field(5.0, gt=0)
    challenge_timeout_s: float = Field(300.0, gt=0)  # an unanswered guard challenge ends as refused
    dynamic_skew_steps: int = Field(1, ge=0, le=10)  # 30-s steps a phone's clock may be off
    # A printed (static) QR pass of a holder who has a door card needs the card swiped too.
    static_qr_needs_card: bool = False
    # A pass refused for fever stays refused (fever_hold) until the guard acknowledges
    # the alarm or this many minutes pass: a lower reading a minute later is no cure.
    fever_hold_min: float = Field(60.0, ge=0)
    # A gate of a site that has heard nothing from it for this long still decides on
    # what it knows, and marks its entry decisions `presence: stale`.
    presence_stale_s: float = Field(60.0, gt=0)
    card_sweep: CardSweepPolicy = CardSweepPolicy()
    rules: list[RuleConfig] = Field(default_factory=list)
    # Named weekly schedules (gate/schedules.py) for categories, passes and lanes,
    # and the dates on which another schedule applies.
    schedules: dict[str, list[ScheduleEntry]] = Field(default_factory=dict)
    holidays: Holidays = Holidays()
    categories: dict[str, CategoryPolicy] = Field(default_factory=dict)

    @field_validator("schedules")
    @classmethod
    def _schedule_names(cls, v: dict[str, list[ScheduleEntry]]) -> dict[str, list[ScheduleEntry]]:
        for name in v:
            if name in BUILT_IN_SCHEDULES:
                raise ValueError(f"schedule name {name!r} is built in (closed: nobody, open: all day); choose another")
        return v

    @model_validator(mode="after")
    def _schedules_exist(self) -> "PolicyConfig":
        known = set(self.schedules) | set(BUILT_IN_SCHEDULES)
        wanted = [(f"categories.{n}.schedule", c.schedule) for n, c in self.categories.items() if c.schedule]
        wanted.append(("holidays.use", self.holidays.use))
        for where, name in wanted:
            if name not in known:
                raise ValueError(f"{where}: no schedule named {name!r} (known: {', '.join(sorted(known))})")
        return self

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, v: list[RuleConfig]) -> list[RuleConfig]:
        names = [r.name for r in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names repeat: {', '.join(dupes)}")
        return v

    @field_validator("night")
    @classmethod
    def _night(cls, v: str) -> str:
        return _check_span(v)  # type: ignore[return-value]

    @model_validator(mode="before")
    @classmethod
    def _merge_categories(cls, data: Any) -> Any:
        # A config names only the categories (and fields) it changes.
        if not isinstance(data, dict):
            return data
        given = data.get("categories") or {}
        if not isinstance(given, dict):
            return data
        merged = copy.deepcopy(DEFAULT_CATEGORIES)
        for name, fields in given.items():
            if name not in CATEGORIES:
                merged[name] = fields  # reported at policy.categories.<name> by _known
            elif isinstance(fields, dict):
                merged[name] = {**merged[name], **fields}
            else:
                merged[name] = fields
        return {**data, "categories": merged}

    @field_validator("categories", mode="wrap")
    @classmethod
    def _known(cls, value: Any, handler: Any) -> Any:
        from pydantic_core import InitErrorDetails, PydanticCustomError

        if isinstance(value, dict):
            unknown = [k for k in value if k not in CATEGORIES]
            if unknown:
                raise ValidationError.from_exception_data(
                    "categories",
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "unknown_category", "unknown category; expected one of {known}", {"known": ", ".join(CATEGORIES)}
                            ),
                            loc=(k,),
                            input=k,
                        )
                        for k in unknown
                    ],
                )
        return handler(value)

    def category(self, name: str) -> CategoryPolicy:
        return self.categories.get(name) or CategoryPolicy()


# ---------------------------------------------------------------- devices


class SimCameraConfig(Strict):
    driver: Literal["sim"]
    width: int = 640
    height: int = 480
    fps: float = Field(10.0, ge=0, le=120)  # empty frames a second when live (drills feed frames themselves)
    decoder: Literal["auto", "fast", "zxing", "pyzbar"] = "auto"


class V4L2CameraConfig(Strict):
    driver: Literal["v4l2"]
    device: str  # /dev/v4l/by-id/... survives re-plugging into another port
    width: int = 1280
    height: int = 720
    fps: int = 30
    # What the camera sends over USB: "mjpeg" is what most UVC cameras need for
    # 720p at 30 fps; "yuyv" (uncompressed) suits small frames or a camera without
    # MJPEG. Either way the decoder gets grey without a colour conversion.
    pixel_format: Literal["mjpeg", "yuyv"] = "mjpeg"
    decoder: Literal["auto", "fast", "zxing", "pyzbar"] = "auto"


class FileCameraConfig(Strict):
    driver: Literal["file"]
    path: Path  # a video file or a folder of images
    loop: bool = False
    decoder: Literal["auto", "fast", "zxing", "pyzbar"] = "auto"


class Picamera2CameraConfig(Strict):
    """A Raspberry Pi camera module (CSI) through picamera2 (the `pi` extra)."""

    driver: Literal["picamera2"]
    camera: int = Field(0, ge=0)  # which module, on boards with two
    width: int = 1280
    height: int = 720
    fps: int = 30
    decoder: Literal["auto", "fast", "zxing", "pyzbar"] = "auto"


CameraConfig = Annotated[
    Union[SimCameraConfig, V4L2CameraConfig, FileCameraConfig, Picamera2CameraConfig], Field(discriminator="driver")
]


class CompensationConfig(Strict):
    """Forehead skin to body temperature: body = object + offset_c + ambient_k * (ambient_ref_c - ambient)."""

    offset_c: float = 0.0
    ambient_ref_c: float = 25.0
    ambient_k: float = 0.0


class SimThermometerConfig(Strict):
    driver: Literal["sim"]
    ambient_c: float = 22.0
    compensation: CompensationConfig = CompensationConfig()


class SerialThermometerConfig(Strict):
    driver: Literal["serial"]
    port: str  # /dev/serial/by-id/...
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 9600
    protocol: Literal["gy-mcu90614", "ascii", "modbus"] = "gy-mcu90614"
    parity: Literal["N", "E", "O"] = "N"  # Modbus RTU's standard is "E"; most IR sensors ship "N"
    compensation: CompensationConfig = CompensationConfig()
    # No valid frame for this long while the port is open is a sensor fault. The
    # GY-MCU90614 streams at ~14 Hz and a Modbus sensor answers every poll; an ASCII
    # sensor that prints only when it measures needs "stale_s = 0" (off), which is
    # its default.
    stale_s: float | None = Field(None, ge=0)
    # Modbus RTU: the sensor's address and the holding registers (tenths of °C) of
    # the object and, if it has one, the ambient temperature; polls per second.
    slave: int = Field(1, ge=1, le=247)
    object_register: int = Field(0, ge=0, le=0xFFFF)
    ambient_register: int | None = Field(None, ge=0, le=0xFFFF)
    poll_hz: float = Field(10.0, gt=0, le=50)

    def stale_after(self) -> float | None:
        if self.stale_s is None:
            return 3.0 if self.protocol in ("gy-mcu90614", "modbus") else None
        return self.stale_s or None

    def modbus(self) -> dict[str, Any]:
        """SerialThermometer's Modbus arguments (none for the other protocols)."""
        if self.protocol != "modbus":
            return {}
        return {"slave": self.slave, "register": self.object_register,
                "ambient_register": self.ambient_register, "poll_hz": self.poll_hz}


ThermometerConfig = Annotated[
    Union[SimThermometerConfig, SerialThermometerConfig], Field(discriminator="driver")
]


class WiegandConfig(Strict):
    driver: Literal["sim", "gpio"]
    d0: int = Field(ge=0, le=53)
    d1: int = Field(ge=0, le=53)


class RelayConfig(Strict):
    driver: Literal["sim", "gpio"]
    pin: int = Field(ge=0, le=53)
    active_high: bool = True


class InputConfig(Strict):
    driver: Literal["sim", "gpio"]
    pin: int = Field(ge=0, le=53)
    active_high: bool = False  # most contacts and buttons pull the line low
    debounce_ms: float = Field(30.0, ge=0)
    pull: Literal["up", "down", "none"] | None = None  # default: idle at the inactive level


class SpeakerConfig(Strict):
    driver: Literal["sim", "aplay"] = "sim"
    device: str | None = None  # ALSA device, e.g. "plughw:1,0"


class LaneConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    direction: Literal["in", "out"]
    camera: CameraConfig | None = None
    thermometer: ThermometerConfig | None = None
    card_reader: WiegandConfig | None = None
    relay: RelayConfig | None = None
    door_contact: InputConfig | None = None
    exit_button: InputConfig | None = None
    pir: InputConfig | None = None
    speaker: SpeakerConfig = SpeakerConfig()
    schedule: str | None = None  # a named schedule (policy.schedules) this lane admits entries in
    label: str | None = Field(None, max_length=32)  # what the guard page calls it ("东门 进 East gate in")
    # A fire-alarm contact: while active, every lane of the gate is held open (and it is an alarm).
    fire_alarm: InputConfig | None = None

    def devices(self) -> dict[str, Any]:
        names = ("camera", "thermometer", "card_reader", "relay", "door_contact", "exit_button", "pir", "fire_alarm")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


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

    @field_validator("report_at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        _check_span(f"{v}-{v}")
        return v

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

    attributes: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]] = {}


class RetentionSection(Strict):
    days: int = Field(30, ge=1, le=3650)  # events older than this, once delivered upstream, are purged daily


class DemoSection(Strict):
    script: Path  # a drill file played in real time, on a loop
    loop: bool = True
    pause_s: float = Field(3.0, ge=0)  # between rounds


class Config(Strict):
    gate: GateSection = GateSection()
    store: StoreSection = StoreSection()
    keys: KeysSection = KeysSection()
    policy: PolicyConfig = PolicyConfig()
    door: DoorSection = DoorSection()
    voice: VoiceSection = VoiceSection()
    gpio: GpioSection = GpioSection()
    guard: GuardSection = GuardSection()
    sync: SyncSection | None = None
    retention: RetentionSection = RetentionSection()
    roster: RosterSection = RosterSection()
    lanes: list[LaneConfig] = Field(min_length=1)
    demo: DemoSection | None = None

    @field_validator("sync")
    @classmethod
    def _central_keys(cls, sync: SyncSection | None) -> SyncSection | None:
        # Separate roles: a key trusted for printed passes must never be able to open a
        # door or pin a policy version, so the gate takes no default here.
        if sync is not None and not sync.central_keys:
            from pydantic_core import InitErrorDetails, PydanticCustomError

            raise ValidationError.from_exception_data("sync", [InitErrorDetails(
                type=PydanticCustomError(
                    "central_keys", "required with [sync]: the public key(s) central signs pass batches, policy, "
                    "commands and key lists with, e.g. [\"/etc/gate/keys/central.pub\"] ([keys] trusted is for QR "
                    "passes only; list a key in both if it does both)"),
                loc=("central_keys",), input=[])])
        return sync

    @field_validator("lanes")
    @classmethod
    def _unique_lanes(cls, lanes: list[LaneConfig]) -> list[LaneConfig]:
        names = [lane.name for lane in lanes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"lane names must be unique, repeated: {', '.join(dupes)}")
        return lanes

    @model_validator(mode="after")
    def _lane_schedules_exist(self) -> "Config":
        known = set(self.policy.schedules) | set(BUILT_IN_SCHEDULES)
        for lane in self.lanes:
            if lane.schedule is not None and lane.schedule not in known:
                raise ValueError(f"lanes.{lane.name}.schedule: no schedule named {lane.schedule!r} in policy.schedules")
        names = {lane.name for lane in self.lanes}
        for i, m in enumerate(self.door.modes):
            if m.schedule not in known:
                raise ValueError(f"door.modes[{i}].schedule: no schedule named {m.schedule!r} in policy.schedules")
            for name in m.lanes:
                if name not in names:
                    raise ValueError(f"door.modes[{i}].lanes: no lane named {name!r}")
        return self

    def lane(self, name: str) -> LaneConfig:
        for lane in self.lanes:
            if lane.name == name:
                return lane
        raise KeyError(name)


# ---------------------------------------------------------------- loading


def _loc(loc: tuple[Any, ...], data: Any) -> str:
    """('lanes', 0, 'camera', 'v4l2', 'device') -> 'lanes[0].camera.device'.

    Pydantic puts the union member's tag into the path; a reader wants the key."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if isinstance(node, dict) and part not in node and part in {"sim", "v4l2", "file", "serial", "picamera2"}:
            continue  # discriminator tag, not a key of the file
        if part.startswith("function-") or part in {"function-after", "function-before"}:
            continue
        out += ("." if out else "") + str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if "input" in err and kind not in {"missing"} and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    return msg


def format_errors(source: str, exc: ValidationError, data: Any) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        lines.append(f"  {source}: {_loc(err['loc'], data)}: {_describe(err)}")
    return "\n".join(lines)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in a config file are relative to the file, not the cwd."""
    data = copy.deepcopy(data)

    def fix(d: dict[str, Any], key: str) -> None:
        v = d.get(key)
        if isinstance(v, str) and v and not Path(v).is_absolute():
            d[key] = str(base / v)

    if isinstance(data.get("store"), dict):
        fix(data["store"], "path")
    if isinstance(data.get("keys"), dict):
        keys = data["keys"]
        fix(keys, "signing")
        if isinstance(keys.get("trusted"), list):
            keys["trusted"] = [
                str(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v for v in keys["trusted"]
            ]
    if isinstance(data.get("voice"), dict):
        fix(data["voice"], "cache_dir")
    if isinstance(data.get("demo"), dict):
        fix(data["demo"], "script")
    if isinstance(data.get("sync"), dict):
        sync = data["sync"]
        for key in ("password_file", "ca_file", "cert_file", "key_file"):
            fix(sync, key)
        if isinstance(sync.get("central_keys"), list):
            sync["central_keys"] = [
                str(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v for v in sync["central_keys"]
            ]
    if isinstance(data.get("guard"), dict):
        fix(data["guard"], "password_file")
        fix(data["guard"], "pin_file")
        fix(data["guard"], "guards_file")
    for lane in data.get("lanes", []) if isinstance(data.get("lanes"), list) else []:
        if isinstance(lane, dict) and isinstance(lane.get("camera"), dict) and lane["camera"].get("driver") == "file":
            fix(lane["camera"], "path")
    return data


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def from_dict(data: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(source, exc, data)) from None


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    path = Path(path)
    data = _resolve_paths(read_toml(path), path.resolve().parent)
    if overrides:
        data = deep_merge(data, overrides)
    return from_dict(data, str(path))


def load_policy(path: str | Path) -> PolicyConfig:
    """A policy document on its own: a TOML file whose [policy] table (or top level) is the policy."""
    path = Path(path)
    data = read_toml(path)
    body = data.get("policy", data)
    try:
        return PolicyConfig.model_validate(body)
    except ValidationError as exc:
        raise ConfigError(format_errors(str(path), exc, body)) from None
