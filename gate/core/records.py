"""The records the gate keeps and reports: a pass as the gate knows it, and what a
lane did (decisions, alarms, door actions, prompts)."""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class PassRecord:
    """A pass as the gate knows it: the token's claims merged with the local table,
    which adds what a token cannot say (revocation, observation, test time ...)."""

    id: str
    category: str
    holder: str | None = None
    unit: str | None = None
    phone_last4: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    observation_until: datetime | None = None
    pcr_at: datetime | None = None
    health_code: str | None = None
    revoked: bool = False
    listed: bool = True  # False: known only from its signature, not in the local table
    attributes: dict[str, Any] | None = field(default=None, compare=False)  # free fields that rules read


@dataclass(frozen=True)
class Verdict:
    decision: str  # allow | deny | retest | challenge | wait (internal: not decided yet)
    reason: str
    rule: str | None = None  # the community rule that refused (reason "rule")


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class LaneRecord:
    at: datetime
    lane: str
    # Globally unique; the event id upstream and what the guard page acknowledges.
    id: str = field(default_factory=new_id, kw_only=True)
    # "behind": the clock read below the gate's time floor, which was used instead.
    clock: str = field(default="ok", kw_only=True)

    type = "record"

    def fields(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("at")
        d.pop("id")
        d.pop("clock")
        return d

    def to_json(self, t: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if t is not None:
            out["t"] = round(t, 3)
        out["type"] = self.type
        out.update(self.fields())
        return out


@dataclass(frozen=True)
class DecisionRecord(LaneRecord):
    pass_id: str | None
    credential: str | None  # qr | card | None
    category: str | None
    decision: str
    reason: str
    temperature_c: float | None
    holder: str | None = None
    unit: str | None = None
    card: str | None = None
    challenge_id: str | None = None
    who: str | None = None  # the guard, for guard decisions
    step: int | None = None  # the time step of a dynamic QR code
    situation: dict[str, Any] | None = None  # the policy's inputs (for replay); stays on the gate
    rule: str | None = None  # the community rule that refused (reason "rule")
    presence: str | None = None  # "stale": decided without fresh news of the site
    policy_version: int | None = None  # the policy in force when it was decided

    type = "decision"

    def fields(self) -> dict[str, Any]:
        out = {
            "lane": self.lane,
            "pass": self.pass_id,
            "credential": self.credential,
            "category": self.category,
            "decision": self.decision,
            "reason": self.reason,
            "temperature_c": _round(self.temperature_c),
        }
        # Present only when they say something (DRILLS.md: absent otherwise).
        if self.rule is not None:
            out["rule"] = self.rule
        if self.presence is not None:
            out["presence"] = self.presence
        return out


@dataclass(frozen=True)
class AlarmRecord(LaneRecord):
    kind: str  # fever | door_forced | door_held | sensor_fault | passback | night_presence | card_sweep | disk_full | overstay
    detail: str = ""
    pass_id: str | None = None

    type = "alarm"

    def fields(self) -> dict[str, Any]:
        out = {"lane": self.lane, "kind": self.kind, "detail": self.detail}
        if self.kind == "overstay" and self.pass_id:
            out["pass"] = self.pass_id  # the visitor's pass: central's register and the page name it
        return out


@dataclass(frozen=True)
class DoorRecord(LaneRecord):
    action: str  # unlock | lock

    type = "door"


@dataclass(frozen=True)
class ModeRecord(LaneRecord):
    """The lane's door mode changed (normal | open | locked): who, and why."""

    mode: str
    previous: str
    who: str
    why: str

    type = "mode"


@dataclass(frozen=True)
class PromptRecord(LaneRecord):
    key: str
    text: str

    type = "prompt"


@dataclass(frozen=True)
class HealthRecord(LaneRecord):
    """A device went bad or came back (the alarm is raised separately when it goes bad)."""

    device: str
    ok: bool
    detail: str = ""

    type = "health"


@dataclass(frozen=True)
class OverrideRecord(LaneRecord):
    """The guard (or central) opened the door by hand: who, and why."""

    action: str  # open_door
    reason: str
    who: str

    type = "override"


@dataclass(frozen=True)
class AckRecord(LaneRecord):
    """The guard acknowledged an alarm."""

    alarm_id: str
    kind: str
    who: str

    type = "ack"


@dataclass(frozen=True)
class RegistrationRecord(LaneRecord):
    """The guard registered a visitor (访客登记): the visitor register's entry, sent
    upstream. The one event that carries a name, because the register is its purpose.
    `lane` is empty: registration happens at the guard's desk, not at a lane."""

    pass_id: str
    holder: str
    unit: str  # the host unit
    id_last4: str
    phone_last4: str
    valid_until: datetime
    who: str
    valid_from: datetime | None = None
    length: str | None = None  # 2h | half_day | today: what the guard chose

    type = "registration"

    def fields(self) -> dict[str, Any]:
        return {
            "lane": self.lane,
            "pass": self.pass_id,
            "category": "visitor",
            "holder": self.holder,
            "unit": self.unit,
            "id_last4": self.id_last4,
            "phone_last4": self.phone_last4,
            "valid_until": self.valid_until.isoformat(),
            "who": self.who,
            **({"valid_from": self.valid_from.isoformat()} if self.valid_from is not None else {}),
            **({"length": self.length} if self.length is not None else {}),
        }


@dataclass(frozen=True)
class AdminRecord(LaneRecord):
    """Something staff did at the desk rather than at a lane (`gate passes revoke`,
    `gate passes import`, `gate policy apply`): who did what and why, stored and sent
    upstream like any event. `lane` is empty."""

    action: str  # revoke | unrevoke | roster_import | policy_apply | config_change
    who: str
    reason: str = ""
    pass_id: str | None = None
    detail: str = ""

    type = "admin"

    def fields(self) -> dict[str, Any]:
        return {
            "lane": self.lane,
            "action": self.action,
            "pass": self.pass_id,
            "reason": self.reason,
            "who": self.who,
            "detail": self.detail,
        }
