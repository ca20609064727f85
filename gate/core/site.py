"""What one gate learns from the rest of its site, and tells it: movements (who
entered or left where) and fever holds, so that anti-passback and a fever refusal
count at every gate once the news has reached it.

A gate decides on what it knows. The site view only says how fresh that knowledge
is; news is applied to the store by whoever carries it (the drill's in-process
site, or sync from central), in the carrier's own thread and store connection.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from gate.core.records import AckRecord, AlarmRecord, DecisionRecord, LaneRecord
from gate.store.database import Store, to_ts


@dataclass(frozen=True)
class Move:
    """A pass went in or out at a gate."""

    pass_id: str
    direction: str  # in | out
    at: datetime
    gate: str


@dataclass(frozen=True)
class Hold:
    """A pass was refused for fever at a gate: held until that alarm is acknowledged."""

    pass_id: str
    alarm_id: str
    since: datetime
    gate: str


@dataclass(frozen=True)
class Release:
    """The guard acknowledged a fever alarm."""

    alarm_id: str


News = Move | Hold | Release


def news_of(rec: LaneRecord, direction: str, gate: str) -> News | None:
    """What a record of this gate tells the rest of the site, if anything."""
    if isinstance(rec, DecisionRecord) and rec.decision == "allow" and rec.pass_id and direction in ("in", "out"):
        return Move(rec.pass_id, direction, rec.at, gate)
    if isinstance(rec, AlarmRecord) and rec.kind == "fever" and rec.pass_id:
        return Hold(rec.pass_id, rec.id, rec.at, gate)
    if isinstance(rec, AckRecord):
        return Release(rec.alarm_id)
    return None


def apply(store: Store, items: list[News]) -> int:
    """Apply news from other gates in one transaction; older news than what the
    store already knows of a pass changes nothing. Returns how many items counted."""
    applied = 0
    with store.write() as c:
        for n in items:
            if isinstance(n, Move):
                if not store.note_move(c, n.pass_id, to_ts(n.at), n.direction, n.gate, f"{n.gate}:", news=True):
                    continue
            elif isinstance(n, Hold):
                store.note_hold(c, n.pass_id, n.alarm_id, to_ts(n.since), n.gate)
            else:
                c.execute("DELETE FROM fever_holds WHERE alarm_id = ?", (n.alarm_id,))
            applied += 1
    return applied


class SiteView:
    """How fresh this gate's news of its site is. Thread-safe: the carrier of the
    news calls `heard`, the lanes call `stale`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heard: datetime | None = None

    def heard(self, at: datetime) -> None:
        with self._lock:
            if self._heard is None or at > self._heard:
                self._heard = at

    @property
    def last_heard(self) -> datetime | None:
        with self._lock:
            return self._heard

    def stale(self, now: datetime, stale_s: float) -> bool:
        heard = self.last_heard
        return heard is None or now - heard >= timedelta(seconds=stale_s)
