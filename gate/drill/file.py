"""The drill file format of DRILLS.md, validated (unknown keys are errors)."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gate.config import ConfigError, format_errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DrillPass(_Strict):
    id: str = Field(min_length=1, max_length=128)
    holder: str | None = None
    unit: str | None = None
    category: Literal["resident", "renter", "returnee", "visitor", "staff", "courier"]
    phone_last4: str | None = Field(None, pattern=r"^\d{4}$")
    card: str | None = Field(None, pattern=r"^\d{1,10}$")
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    observation_until: datetime | None = None
    pcr_at: datetime | None = None
    health_code: Literal["green", "yellow", "red"] | None = None
    revoked: bool = False
    in_table: bool = True
    signed_by: Literal["central", "unknown"] = "central"
    removed: bool = False  # central deleted it from the roster after signing it
    attributes: dict[str, Any] = {}  # free attributes that policy rules read

    @field_validator("card")
    @classmethod
    def _card(cls, v: str | None) -> str | None:
        return None if v is None else card_number(v)

    @field_validator("valid_from", "valid_until", "observation_until", "pcr_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("times need a UTC offset, e.g. 2026-11-22T08:00:00+08:00")
        return v


def card_number(v: str) -> str:
    """A card number as the reader sends it: a Wiegand frame carries a number (no
    leading zeros) of at most 32 bits (34-bit cards)."""
    n = int(v)
    if n >= 1 << 32:
        raise ValueError(f"card {v} does not fit a Wiegand card's 32 data bits (at most {(1 << 32) - 1})")
    return str(n)


STIMULI = ("qr", "qr_text", "temperature", "card", "presence", "exit_button", "guard", "door", "link")


class Step(_Strict):
    at: float = Field(ge=0)
    gate: str | None = None  # with `gates:`, every step names its gate
    lane: str | None = None  # every step but `link` names its lane
    qr: str | None = None
    qr_text: str | None = None
    temperature: float | None = Field(None, ge=-40, le=120)
    card: str | None = Field(None, pattern=r"^\d{1,10}$")
    presence: bool | None = None
    exit_button: bool | None = None
    guard: Literal["confirm", "reject", "ack"] | None = None
    door: Literal["open", "closed"] | None = None
    link: Literal["up", "down"] | None = None  # the gate's connection to the rest of its site

    @field_validator("card")
    @classmethod
    def _card(cls, v: str | None) -> str | None:
        return None if v is None else card_number(v)

    @model_validator(mode="after")
    def _one(self) -> "Step":
        given = [k for k in STIMULI if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a step has exactly one of {', '.join(STIMULI)}; got {', '.join(given) or 'none'}")
        if self.link is not None and self.lane is not None:
            raise ValueError("a link step is about a whole gate: it names no lane")
        if self.link is None and self.lane is None:
            raise ValueError("a step needs a lane (in or out)")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STIMULI if getattr(self, k) is not None)

    @property
    def value(self) -> Any:
        return getattr(self, self.kind)


class Drill(_Strict):
    name: str
    start: datetime
    config: dict[str, Any] = {}
    passes: list[DrillPass] = []
    gates: list[str] = []  # several gates of one site (default: one gate)
    steps: list[Step] = []
    expect: list[dict[str, Any]] = []
    forbid: list[dict[str, Any]] = []  # objects that no output line may match

    @field_validator("gates")
    @classmethod
    def _gate_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or len(name) > 64 or not all(ch.isalnum() or ch in "-_" for ch in name):
                raise ValueError(f"gate name {name!r}: letters, digits, - and _ only")
        if len(set(v)) != len(v):
            raise ValueError("gate names repeat")
        return v

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start needs a UTC offset, e.g. 2026-11-22T08:00:00+08:00")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Drill":
        ids = [p.id for p in self.passes]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"pass ids repeat: {', '.join(dupes)}")
        for i, step in enumerate(self.steps):
            if self.gates and step.gate is None:
                raise ValueError(f"steps[{i}]: with gates: every step names its gate (one of {', '.join(self.gates)})")
            if self.gates and step.gate not in self.gates:
                raise ValueError(f"steps[{i}]: gate {step.gate!r} is not one of gates: {', '.join(self.gates)}")
            if not self.gates and step.gate is not None:
                raise ValueError(f"steps[{i}]: names gate {step.gate!r} but the drill has no gates: list")
            if not self.gates and step.link is not None:
                raise ValueError(f"steps[{i}]: link steps need several gates (gates:)")
            if step.qr is not None and step.qr not in ids:
                raise ValueError(f"steps[{i}]: qr {step.qr!r} is not a pass of this drill")
            if i and step.at < self.steps[i - 1].at:
                raise ValueError(f"steps[{i}]: steps must be ordered by 'at'")
        return self


def load(path: str | Path) -> Drill:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: drill file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read drill file: {exc}") from None
    return parse(text, str(path))


class _Loader(yaml.SafeLoader):
    """Safe YAML that leaves dates and times as text: pydantic parses them and names
    the key of a bad one (YAML's own parser dies on 2026-02-30 with a traceback)."""


# YAML 1.1 reads on/off/yes/no as booleans: `passback: off` (as DRILLS.md writes it)
# would be False. Only true and false are booleans here, as in YAML 1.2.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse(text: str, source: str = "<drill>") -> Drill:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a drill is a mapping with name, start, passes, steps and expect")
    try:
        return Drill.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(source, exc, data)) from None
