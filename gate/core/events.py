"""What drivers, the guard page and sync post to a lane's queue.

The lane stamps each event with its clock when it is posted, so drivers need no
clock and a drill's simulated time reaches every decision the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QrSeen:
    text: str


@dataclass(frozen=True)
class CardRead:
    number: str
    bits: int


@dataclass(frozen=True)
class TemperatureRead:
    body_c: float  # after the lane's compensation
    object_c: float
    ambient_c: float


@dataclass(frozen=True)
class PresenceChanged:
    present: bool


@dataclass(frozen=True)
class DoorContactChanged:
    open: bool


@dataclass(frozen=True)
class ExitPressed:
    pass


@dataclass(frozen=True)
class GuardAnswer:
    answer: str  # confirm | reject
    challenge_id: str | None = None  # None: the oldest open challenge
    who: str = "guard"


@dataclass(frozen=True)
class ManualOpen:
    """Open the door by hand: logged and sent upstream as an override."""

    reason: str
    who: str = "guard"


@dataclass(frozen=True)
class AckAlarm:
    alarm_id: str
    kind: str = ""
    who: str = "guard"


@dataclass(frozen=True)
class SetDoorMode:
    """The guard or central sets the lane's door mode: normal | open | locked."""

    mode: str
    who: str
    why: str


@dataclass(frozen=True)
class FireAlarmChanged:
    """The fire-alarm contact of the gate went active or cleared (every lane hears it)."""

    active: bool


@dataclass(frozen=True)
class DeviceHealth:
    device: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class ApplyPolicy:
    """A new policy, applied between two decisions."""

    policy: Any  # gate.config.PolicyConfig


@dataclass(frozen=True)
class Tick:
    """Look at the timers (a drill posts it after moving the clock)."""


Event = (
    QrSeen | CardRead | TemperatureRead | PresenceChanged | DoorContactChanged | ExitPressed
    | GuardAnswer | ManualOpen | AckAlarm | DeviceHealth | ApplyPolicy | Tick | SetDoorMode | FireAlarmChanged
)
