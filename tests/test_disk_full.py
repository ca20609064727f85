"""A full disk: decisions go on, an alarm is raised, the oldest delivered events
are purged first, and nothing undelivered is lost."""
from __future__ import annotations

import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest

from gate import drill_file
from gate.drill import Rehearsal
from gate.drill_file import Step


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_decisions_go_on_when_the_disk_fills(small_disk: Path) -> None:
    store = small_disk / "gate.db"
    d = drill_file.parse(textwrap.dedent("""
        name: disk full
        start: "2026-11-22T08:00:00+08:00"
        config: {policy: {passback: "off"}, door: {unlock_s: 1}}
        passes:
        """) + "".join(f"  - {{id: p{i}, holder: 住户{i}, unit: 1-1-{i}, category: resident}}\n" for i in range(50)))
    allowed = 0
    with Rehearsal(d, store_path=store) as r:
        lane = r.app.lanes["in"]
        t = 0.0
        for k in range(3000):
            r.step(Step(at=t, lane="in", qr=f"p{k % 50}"))
            r.step(Step(at=t + 0.5, lane="in", temperature=36.5))
            t += 2.0
            if k % 100 == 99:
                # Central acknowledges what it has (as the publisher would).
                c = sqlite3.connect(store, timeout=30)
                try:
                    c.execute("UPDATE outbox SET state = 'sent' WHERE seq <= (SELECT max(seq) - 50 FROM outbox)")
                    c.commit()
                except sqlite3.OperationalError:
                    pass
                c.close()
            if lane.counters.get("disk_full") and k > 1500:
                break
        allowed = sum(1 for l in r.lines if l["type"] == "decision" and l["decision"] == "allow")
        unlocks = sum(1 for l in r.lines if l["type"] == "door" and l["action"] == "unlock")
        alarms = [l for l in r.lines if l["type"] == "alarm" and l["kind"] == "disk_full"]
        full = lane.counters.get("disk_full")
        assert lane.alive and lane.counters.get("errors") == 0
    assert full > 0, "the disk never filled: make the tmpfs smaller"
    assert allowed == k + 1  # every person was decided and let in
    assert unlocks >= allowed - 1
    assert alarms
    c = sqlite3.connect(store)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    pending = c.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
    first = c.execute("SELECT min(seq) FROM events").fetchone()[0]
    # The oldest (delivered) events went; every undelivered one is still there.
    assert first > 1 and pending >= 1
