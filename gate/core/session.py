"""One person at a lane, from the credential to the decision (a Session), an open
guard check (a Challenge), and a temperature read before anyone showed a pass."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from gate.core.records import PassRecord


@dataclass
class Session:
    """One person at the lane, from the credential to the decision."""

    credential: str  # qr | card
    pass_: PassRecord | None
    problem: str | None
    card: str | None
    started: datetime
    draw: float
    step: int | None = None  # a dynamic QR code's time step
    needs_card: bool = False  # a printed pass whose holder has a door card (policy.static_qr_needs_card)
    card_ok: bool = False
    temps: list[float] = field(default_factory=list)
    deadline: datetime | None = None
    retesting: bool = False
    waiting_for: str = ""


@dataclass
class Challenge:
    id: str
    session: Session
    reason: str
    temperature_c: float | None
    expires: datetime


@dataclass
class Reading:
    body_c: float
    at: datetime
    used: bool = False


def narrow(rec: PassRecord, vfrom: datetime | None, vuntil: datetime | None) -> PassRecord:
    if vfrom is not None and (rec.valid_from is None or vfrom > rec.valid_from):
        rec = replace(rec, valid_from=vfrom)
    if vuntil is not None and (rec.valid_until is None or vuntil < rec.valid_until):
        rec = replace(rec, valid_until=vuntil)
    return rec
