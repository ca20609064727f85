"""The time floor: the latest time the gate knows has passed.

A gate without a real-time clock may boot in 1970 or last week, and a clock set
by hand may read 2030. Validity is judged by ``max(clock, floor)``, so a clock set
back never revives an expired pass; and the floor is only ever moved forward by a
source that is trusted, so a clock set ahead cannot lock everyone out for good.

- **Trusted sources**: central's signed timestamps, the system clock while the
  kernel says it is synchronised (NTP, systemd-timesyncd, chrony: adjtimex
  without STA_UNSYNC), and the operator (``gate clock floor --reset``). Event
  times from an unsynchronised clock never move the floor.
- **Jumps**: a trusted reading more than a day beyond the floor is held, not
  taken, until confirmed: by the other trusted source agreeing with it, or by the
  same source still agreeing with it an hour of monotonic time later.
- **The floor moves on**: it is an anchor (a trusted wall time and the monotonic
  reading at that moment), so while the clock is behind, judged time advances with
  monotonic time instead of standing still.
- **Across a restart** (same boot, same monotonic clock) the anchor continues
  exactly. **Across a reboot** without an RTC, nobody knows how long the gate was
  off: the floor continues from the last checkpoint (saved at least once a minute)
  plus the monotonic time of the new boot (its uptime), never counting the time
  the power was off. That keeps it a true lower bound: it may lag, never lead.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

log = logging.getLogger(__name__)

JUMP = timedelta(days=1)  # a trusted reading further ahead than this waits for confirmation
CONFIRM_S = 3600.0  # the same source agreeing with a jump this long after confirms it
AGREE = timedelta(minutes=10)  # how close two readings must be to agree (central's messages lag)
SLACK_S = 2.0  # an event stamped when posted is judged a little later: not a clock behind
SAVE_EVERY_S = 60.0  # checkpoint the moving floor this often, so a reboot loses little of it
STATE_KEY = "clock_floor"  # store meta key of the saved state (JSON)
LEGACY_KEY = "time_floor"  # central's signed time, as gates before this module kept it


@dataclass(frozen=True)
class Anchor:
    """``wall`` was true when the monotonic clock of boot ``boot`` read ``mono``."""

    wall: datetime
    mono: float
    boot: str
    source: str

    def at(self, mono: float, boot: str) -> datetime:
        # Another boot: its monotonic clock started near zero, so all of it has passed.
        elapsed = mono - self.mono if boot == self.boot else mono
        return self.wall + timedelta(seconds=max(0.0, elapsed))


def anchor_to_state(a: Anchor, gen: int, by: str = "") -> dict[str, Any]:
    return {"floor": a.wall.isoformat(), "mono": a.mono, "boot": a.boot, "source": a.source, "gen": gen, "by": by}


def anchor_from_state(state: dict[str, Any]) -> Anchor:
    wall = datetime.fromisoformat(str(state["floor"]))
    if wall.tzinfo is None:
        raise ValueError("floor without a UTC offset")
    return Anchor(wall.astimezone(timezone.utc), float(state.get("mono") or 0.0), str(state.get("boot") or ""),
                  str(state.get("source") or "saved"))


class TimeFloor:
    """Shared by the lanes and sync; every method is thread-safe.

    ``save`` stores a state dict and returns the stored state instead when that one
    is newer (a higher ``gen``: the operator reset the floor from the desk)."""

    def __init__(
        self,
        initial: datetime | None = None,
        *,
        monotonic: Callable[[], float] | None = None,
        synchronized: Callable[[], bool] = lambda: False,
        boot: str = "",
    ) -> None:
        import time

        self._mono = monotonic or time.monotonic
        self._synchronized = synchronized
        self._boot = boot
        self._lock = threading.Lock()
        self._anchor: Anchor | None = None
        self._pending: Anchor | None = None
        self._gen = 0
        self._by = ""
        self._saved_mono: float | None = None  # monotonic reading of the last checkpoint
        self._dirty = False
        if initial is not None:
            self._anchor = Anchor(initial.astimezone(timezone.utc), self._mono(), boot, "initial")

    # ------------------------------------------------------------ reading

    def _floor(self, mono: float) -> datetime | None:
        a = self._anchor
        return None if a is None else a.at(mono, self._boot)

    @property
    def value(self) -> datetime | None:
        """The floor now (UTC), or None when no trusted time was ever seen."""
        with self._lock:
            return self._floor(self._mono())

    @property
    def pending(self) -> datetime | None:
        """A jump ahead seen but not yet confirmed, as it would read now."""
        with self._lock:
            p = self._pending
            return None if p is None else p.at(self._mono(), self._boot)

    def apply(self, now: datetime) -> tuple[datetime, bool]:
        """(the time to judge by, whether the clock was behind the floor)."""
        floor = self.value
        if floor is None or now >= floor - timedelta(seconds=SLACK_S):
            return now, False
        return (floor.astimezone(now.tzinfo) if now.tzinfo else floor), True

    # ------------------------------------------------------------ moving it

    def raise_to(self, moment: datetime) -> None:
        """The clock read ``moment`` (a lane's event). Taken only from a synchronised clock."""
        if self._synchronized():
            self.trust(moment, "clock")

    def from_central(self, moment: datetime) -> None:
        """Central's signed timestamp."""
        self.trust(moment, "central")

    def trust(self, moment: datetime, source: str) -> bool:
        """A reading from a trusted source; True if the floor moved."""
        if moment.tzinfo is None:
            return False
        moment = moment.astimezone(timezone.utc)
        with self._lock:
            mono = self._mono()
            floor = self._floor(mono)
            if floor is not None and moment <= floor:
                return False  # never lower (the way down is the operator's reset)
            if floor is None or moment - floor <= JUMP:
                self._take(moment, mono, source, material=floor is None or moment - floor > timedelta(seconds=1))
                return True
            p = self._pending
            if p is not None and abs(moment - p.at(mono, self._boot)) <= AGREE:
                if p.source != source or mono - p.mono >= CONFIRM_S:
                    log.warning("time floor: jump to %s confirmed by %s (was %s); taken",
                                moment.isoformat(), source, floor.isoformat())
                    self._take(moment, mono, f"{source}+{p.source}", material=True)
                    return True
                return False  # the same source agrees: wait until it has for CONFIRM_S
            self._pending = Anchor(moment, mono, self._boot, source)
            log.warning("time floor: %s reads %s, more than %s beyond the floor %s; not taken until confirmed",
                        source, moment.isoformat(), JUMP, floor.isoformat())
            return False

    def _take(self, moment: datetime, mono: float, source: str, *, material: bool) -> None:
        self._anchor = Anchor(moment, mono, self._boot, source)
        self._pending = None
        # Every event of a synchronised clock re-anchors; only a real change needs saving now.
        self._dirty = self._dirty or material

    # ------------------------------------------------------------ persistence

    def load(self, state: dict[str, Any] | None, legacy: str | None = None) -> None:
        """The state a previous run saved; without one, the legacy key central's time went to."""
        with self._lock:
            if state:
                try:
                    self._anchor = anchor_from_state(state)
                    self._gen, self._by = int(state.get("gen") or 0), str(state.get("by") or "")
                except (KeyError, TypeError, ValueError) as exc:
                    log.error("time floor: saved state %r unusable (%s); starting without a floor", state, exc)
                    self._anchor = None
                return
        if legacy:
            try:
                self.trust(datetime.fromisoformat(legacy), "central")
            except ValueError:
                log.error("time floor: legacy value %r unusable", legacy)
            with self._lock:
                if self._anchor is not None:  # from an earlier boot: only its uptime has passed since
                    self._anchor = replace(self._anchor, boot="", mono=0.0)

    def state(self) -> dict[str, Any] | None:
        """The floor as it stands now, re-anchored here (a checkpoint a reboot continues from)."""
        with self._lock:
            mono = self._mono()
            floor = self._floor(mono)
            if floor is None or self._anchor is None:
                return None
            return anchor_to_state(Anchor(floor, mono, self._boot, self._anchor.source), self._gen, self._by)

    def save_due(self) -> bool:
        with self._lock:
            if self._anchor is None:
                return False
            return self._dirty or self._saved_mono is None or self._mono() - self._saved_mono >= SAVE_EVERY_S

    def checkpoint(self, save: Callable[[dict[str, Any]], dict[str, Any] | None], *, force: bool = False) -> None:
        """Save the state when due; adopt the stored one if the operator reset it meanwhile."""
        if not force and not self.save_due():
            return
        st = self.state()
        if st is None:
            return
        with self._lock:
            self._saved_mono, self._dirty = self._mono(), False
        try:
            newer = save(st)
        except Exception as exc:  # a full or failing disk: keep going, try again next time
            with self._lock:
                self._saved_mono, self._dirty = None, True
            log.warning("time floor: could not save (%s); will retry", exc)
            return
        if newer is not None:
            self.adopt(newer)

    def adopt(self, state: dict[str, Any]) -> None:
        """A reset made elsewhere (the desk): it replaces the floor, lower or not."""
        with self._lock:
            if int(state.get("gen") or 0) <= self._gen:
                return
            try:
                self._anchor = anchor_from_state(state)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("time floor: reset state %r unusable (%s)", state, exc)
                return
            self._gen, self._by, self._pending = int(state["gen"]), str(state.get("by") or ""), None
            log.warning("time floor reset by %s to %s", self._by, self._anchor.wall.isoformat())


def reset_state(stored: dict[str, Any] | None, to: datetime, by: str, mono: float, boot: str) -> dict[str, Any]:
    """The state `gate clock floor --reset` writes: the operator's time, a newer generation."""
    gen = int((stored or {}).get("gen") or 0) + 1
    return anchor_to_state(Anchor(to.astimezone(timezone.utc), mono, boot, "operator"), gen, by)
