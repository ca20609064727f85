"""Judged time never goes below the floor; the floor moves on with monotonic time
while the clock is behind, and only trusted time (a synchronised clock, central's
signed time, the operator) moves it forward: a clock set back never revives a pass,
a clock set ahead never locks everyone out for good."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gate.drill import file as drill_file

from gate.store import time_floor as floor_admin
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from gate.core.floor import CONFIRM_S, TimeFloor
from gate.store.database import Store
from tests.conftest import ROOT

PASSES = """
passes:
  - {id: ex, holder: 乙, unit: 1-1-102, category: visitor, valid_until: "2026-11-21T23:59:59+08:00"}
  - {id: res, holder: 甲, unit: 1-1-101, category: resident, valid_until: "2027-12-31T23:59:59+08:00"}
"""
DAY = 86400.0


def drill(start: str) -> drill_file.Drill:
    return drill_file.parse(
        textwrap.dedent(f'name: floor\nstart: "{start}"\nconfig: {{policy: {{passback: "off"}}}}\n') + textwrap.dedent(PASSES)
    )


def visit(r: Rehearsal, at: float, pass_id: str) -> None:
    r.step(Step(at=at, lane="in", qr=pass_id))
    r.step(Step(at=at + 1, lane="in", temperature=36.5))


def decisions(r: Rehearsal) -> list[str]:
    return [l["reason"] if l["decision"] != "allow" else "allow" for l in r.lines if l["type"] == "decision"]


def clocks(store: Path) -> list[str]:
    c = sqlite3.connect(store)
    try:
        return [r[0] for r in c.execute("SELECT json_extract(body, '$.clock') FROM events WHERE type = 'decision' ORDER BY seq")]
    finally:
        c.close()


def rehearsal(start: str, store: Path, *, synced: bool = True) -> Rehearsal:
    r = Rehearsal(drill(start), store_path=store)
    r.clock.synced = synced
    return r


def test_clock_rollback_after_an_expired_pass_was_refused(tmp_path: Path) -> None:
    store = tmp_path / "g.db"
    with rehearsal("2026-11-22T10:00:00+08:00", store) as r:
        r.step(Step(at=0, lane="in", qr="ex"))
    assert decisions(r) == ["expired"]
    # The gate reboots with its clock a week behind: the pass would look valid.
    with rehearsal("2026-11-15T10:00:00+08:00", store, synced=False) as r2:
        r2.step(Step(at=0, lane="in", qr="ex"))
    assert decisions(r2) == ["expired"]
    got = clocks(store)
    assert got[0] == "ok" and got[-1] == "behind"


def test_a_clock_behind_moves_on_instead_of_standing_still(tmp_path: Path) -> None:
    """A Pi without RTC or network after a power cut: its clock reads five weeks ago. The
    visitor pass that ends tomorrow is good right after the reboot, not 3 or 30 days on."""
    store = tmp_path / "g.db"
    with rehearsal("2026-11-20T10:00:00+08:00", store) as r:
        visit(r, 0, "ex")
    assert decisions(r) == ["allow"]
    with rehearsal("2026-10-13T10:00:00+08:00", store, synced=False) as r2:
        visit(r2, 60, "ex")  # a minute after boot: the floor (20 Nov) says still valid
        visit(r2, 3 * DAY, "ex")
        visit(r2, 30 * DAY, "ex")
        floor = r2.app.floor.value
    assert decisions(r2) == ["allow", "expired", "expired"]
    assert clocks(store)[1:] == ["behind"] * 3
    # The floor went on with the gate's running time: 20 Nov 10:00 + 30 days and a bit.
    assert floor is not None and floor >= datetime(2026, 12, 20, 2, 0, tzinfo=timezone.utc)


def test_a_restart_continues_the_floor_with_this_boots_running_time(tmp_path: Path) -> None:
    store = tmp_path / "g.db"
    with rehearsal("2026-11-20T10:00:00+08:00", store) as r:
        visit(r, 0, "res")
    # Days behind, unsynchronised: it ran 2 days, was cut off, and rebooted behind again.
    with rehearsal("2026-11-10T10:00:00+08:00", store, synced=False) as r2:
        visit(r2, 2 * DAY, "res")
    with rehearsal("2026-11-10T10:00:00+08:00", store, synced=False) as r3:
        visit(r3, 3 * DAY, "ex")  # 2 + 3 days after 20 Nov at least: expired
        floor = r3.app.floor.value
    assert decisions(r3) == ["expired"]
    assert floor is not None and floor >= datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)


def test_a_clock_set_ahead_by_hand_does_not_pin_the_floor(tmp_path: Path) -> None:
    """One decision while the clock read 2030 used to refuse every valid pass for good."""
    store = tmp_path / "g.db"
    with rehearsal("2026-11-22T08:00:00+08:00", store) as r:
        visit(r, 0, "res")
    with rehearsal("2030-01-01T08:00:00+08:00", store, synced=False) as r2:
        visit(r2, 0, "res")  # what that clock says: expired
    assert decisions(r2) == ["expired"]
    with rehearsal("2026-11-22T09:00:00+08:00", store) as r3:  # the clock corrected
        visit(r3, 0, "res")
    assert decisions(r3) == ["allow"]
    assert clocks(store)[-1] == "ok"


def test_a_synchronised_jump_waits_for_confirmation(tmp_path: Path) -> None:
    """A wrong time server says 2030: more than a day beyond the last trusted time, so
    the floor waits; the clock put right again, the passes are good."""
    store = tmp_path / "g.db"
    with rehearsal("2026-11-22T08:00:00+08:00", store) as r:
        visit(r, 0, "res")
    with rehearsal("2030-01-01T08:00:00+08:00", store) as r2:
        visit(r2, 0, "res")
        visit(r2, 600, "res")  # ten minutes on, still the same story: not yet confirmed
        assert r2.app.floor.pending is not None
        floor = r2.app.floor.value
    assert floor is not None and floor < datetime(2026, 11, 23, tzinfo=timezone.utc)
    with rehearsal("2026-11-22T09:00:00+08:00", store) as r3:
        visit(r3, 0, "res")
    assert decisions(r3) == ["allow"]


def test_a_confirmed_jump_is_taken_and_the_operator_resets_it(tmp_path: Path) -> None:
    store = tmp_path / "g.db"
    with rehearsal("2026-11-22T08:00:00+08:00", store) as r:
        visit(r, 0, "res")
    with rehearsal("2030-01-01T08:00:00+08:00", store) as r2:
        visit(r2, 0, "res")
        visit(r2, CONFIRM_S + 60, "res")  # an hour on and still agreeing: confirmed
        floor = r2.app.floor.value
    assert floor is not None and floor.year == 2030
    with rehearsal("2026-11-22T09:00:00+08:00", store) as r3:
        visit(r3, 0, "res")
    assert decisions(r3) == ["expired"] and clocks(store)[-1] == "behind"

    cfg = tmp_path / "gate.toml"
    cfg.write_text(f'[gate]\nid = "t1"\n[store]\npath = "{store}"\n'
                   '[[lanes]]\nname = "in"\ndirection = "in"\n', encoding="utf-8")
    gate = [sys.executable, "-m", "gate.cli.main", "clock", "floor", "-c", str(cfg)]
    refused = subprocess.run([*gate, "--reset"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert refused.returncode != 0 and "--by" in refused.stderr
    res = subprocess.run([*gate, "--reset", "--by", "王师傅", "--to", "2026-11-22T09:30:00+08:00", "--reason", "NTP wrong"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "2030" in res.stdout and "2026-11-22T01:30:00+00:00" in res.stdout
    shown = subprocess.run(gate, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert shown.returncode == 0 and '"source": "operator"' in shown.stdout

    with rehearsal("2026-11-22T09:40:00+08:00", store) as r4:
        visit(r4, 0, "res")
    assert decisions(r4) == ["allow"] and clocks(store)[-1] == "ok"
    c = sqlite3.connect(store)
    admin = c.execute("SELECT json_extract(body, '$.who'), json_extract(body, '$.detail') FROM events"
                      " WHERE type = 'admin' AND action = 'clock_floor_reset'").fetchall()
    c.close()
    assert len(admin) == 1 and admin[0][0] == "王师傅" and "2030" in admin[0][1]


class Mono:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


T0 = datetime(2026, 11, 22, tzinfo=timezone.utc)


def test_central_and_the_clock_confirm_each_other() -> None:
    mono = Mono()
    synced = {"v": True}
    floor = TimeFloor(monotonic=mono, synchronized=lambda: synced["v"], boot="b1")
    floor.raise_to(T0)
    assert floor.value == T0
    mono.t += 60
    floor.raise_to(T0 + timedelta(days=400, seconds=60))  # the clock jumps ahead
    assert floor.value == T0 + timedelta(seconds=60) and floor.pending is not None
    floor.from_central(T0 + timedelta(days=400, seconds=120))  # central agrees (a minute of lag)
    assert floor.value == T0 + timedelta(days=400, seconds=120)
    # An unsynchronised clock reading further ahead moves nothing.
    synced["v"] = False
    floor.raise_to(T0 + timedelta(days=900))
    assert floor.value == T0 + timedelta(days=400, seconds=120) and floor.pending is None


def test_the_floor_never_goes_down_but_a_reset_at_the_desk_is_taken_up(tmp_path: Path) -> None:
    mono = Mono()
    floor = TimeFloor(monotonic=mono, synchronized=lambda: True, boot="b1")
    floor.raise_to(T0)
    floor.raise_to(T0 - timedelta(days=3))
    assert floor.value == T0
    judged, behind = floor.apply(T0 - timedelta(days=3))
    assert judged == T0 and behind
    mono.t += 5
    judged, behind = floor.apply(T0 - timedelta(days=3))
    assert judged == T0 + timedelta(seconds=5) and behind  # moves on, does not stand still
    path = tmp_path / "g.db"
    save = floor_admin.saver(lambda: Store(path))
    floor.checkpoint(save, force=True)
    s = Store(path)
    try:
        floor_admin.reset(s, "desk", T0 - timedelta(days=1))
    finally:
        s.close()
    floor.checkpoint(save, force=True)  # what `gate run` does every few seconds
    assert floor.value is not None and floor.value < T0


def test_a_running_gate_takes_up_a_reset_from_the_desk(tmp_path: Path) -> None:
    store = tmp_path / "g.db"
    with rehearsal("2030-01-01T08:00:00+08:00", store) as r:
        visit(r, 0, "res")  # the first trusted time this gate sees: taken
        assert r.app.floor.value is not None and r.app.floor.value.year == 2030
        desk = Store(store)
        try:
            floor_admin.reset(desk, "王师傅", datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc), "wrong NTP server")
        finally:
            desk.close()
        r.app.save_floor()  # what `gate run` does every 5 s
        assert r.app.floor.value is not None and r.app.floor.value.year == 2026
