"""Typed configuration, loaded from one TOML file.

Every model forbids unknown keys, so a typo is an error that names the file, the
key path and what was expected, never a setting silently ignored.
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from gate.config.base import CATEGORIES, ConfigError, Strict, _check_span, check_timezone  # noqa: F401 - the package's names
from gate.config.devices import *  # noqa: F401,F403 - the package's names
from gate.config.devices import LaneConfig
from gate.config.policy import *  # noqa: F401,F403
from gate.config.policy import PolicyConfig
from gate.config.sections import *  # noqa: F401,F403
from gate.config.sections import (
    DemoSection,
    DoorSection,
    GateSection,
    GpioSection,
    GuardSection,
    KeysSection,
    RetentionSection,
    RosterSection,
    StoreSection,
    SyncSection,
    VisitorsSection,
    VoiceSection,
)
from gate.core.schedules import BUILT_IN as BUILT_IN_SCHEDULES


class Config(Strict):
    gate: GateSection = GateSection()
    store: StoreSection = StoreSection()
    keys: KeysSection = KeysSection()
    policy: PolicyConfig = PolicyConfig()
    door: DoorSection = DoorSection()
    voice: VoiceSection = VoiceSection()
    gpio: GpioSection = GpioSection()
    guard: GuardSection = GuardSection()
    visitors: VisitorsSection = VisitorsSection()
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

    def tokens_path(self) -> Path:
        """Where the HTTP API's tokens are kept: guard.tokens_file, else api-tokens.json
        beside the guards file, else beside the store."""
        g = self.guard
        if g.tokens_file is not None:
            return Path(g.tokens_file)
        beside = g.guards_file if g.guards_file is not None else self.store.path
        return Path(beside).parent / "api-tokens.json"

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
        for key in ("password_file", "ca_file", "cert_file", "key_file", "homeassistant_password_file"):
            fix(sync, key)
        if isinstance(sync.get("central_keys"), list):
            sync["central_keys"] = [
                str(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v for v in sync["central_keys"]
            ]
    if isinstance(data.get("guard"), dict):
        fix(data["guard"], "password_file")
        fix(data["guard"], "pin_file")
        fix(data["guard"], "guards_file")
        fix(data["guard"], "tokens_file")
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
