"""A full disk: decisions go on, an alarm is raised, the oldest delivered events
are purged first, and nothing undelivered is lost."""
from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mnt)], capture_output=True, text=True)
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


PEOPLE = drill_file.parse(textwrap.dedent("""
    name: full disk
    start: "2026-11-22T08:00:00+08:00"
    config: {policy: {passback: "off"}, door: {unlock_s: 1}}
    passes:
    """) + "".join(f"  - {{id: p{i}, holder: 住户{i}, unit: 1-1-{i}, category: resident}}\n" for i in range(50)))

# A gate whose disk fills right after start (central offline: nothing to purge). It
# prints the id of each decision that opened the door, as the door opens.
CHILD = """
import sys
from pathlib import Path
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from tests.disk_helpers import fill
from tests.test_disk_full import PEOPLE

store = Path(sys.argv[1])

def sink(rec):
    if rec.type == "decision" and rec.decision == "allow":
        print("opened", rec.id, flush=True)

r = Rehearsal(PEOPLE, store_path=store)
r.app.add_sink(sink)
with r:
    fill(store.parent)
    print("full", flush=True)
    t = 0.0
    for k in range(100000):
        r.step(Step(at=t, lane="in", qr=f"p{k % 50}"))
        r.step(Step(at=t + 0.5, lane="in", temperature=36.5))
        t += 2.0
"""


def test_a_power_cut_on_a_full_disk_loses_no_decision_the_door_acted_on(tmp_path: Path) -> None:
    from tests.conftest import ROOT
    from tests.disk_helpers import tmpfs

    with tmpfs(tmp_path / "disk", "8m") as disk:
        store = disk / "gate.db"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(store)], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        opened: list[str] = []
        assert child.stdout is not None
        try:
            for line in child.stdout:
                if line.startswith("opened"):
                    opened.append(line.split()[1])
                if len(opened) >= 400:  # a few hundred people after the disk filled
                    break
        finally:
            child.kill()  # the power cut
            child.wait(30)
        assert len(opened) >= 400, "the child gate stopped early"
        c = sqlite3.connect(store)
        stored = {row[0] for row in c.execute("SELECT id FROM events WHERE type = 'decision'")}
        c.close()
        lost = [i for i in opened if i not in stored]
        assert lost == [], f"{len(lost)} of {len(opened)} decisions the door acted on were lost"


def test_past_the_reserve_the_alarm_says_how_many_events_wait_in_memory(tmp_path: Path) -> None:
    from tests.disk_helpers import fill, tmpfs

    with tmpfs(tmp_path / "disk", "8m") as disk:
        store = disk / "gate.db"
        with Rehearsal(PEOPLE, store_path=store) as r:
            lane = r.app.lanes["in"]
            reserve = store.with_name(store.name + ".reserve")
            assert reserve.stat().st_size >= 2 << 20
            fill(disk)
            t, k = 0.0, 0
            while not lane._unwritten:
                r.step(Step(at=t, lane="in", qr=f"p{k % 50}"))
                r.step(Step(at=t + 0.5, lane="in", temperature=36.5))
                t, k = t + 2.0, k + 1
                assert k < 5000, "the disk never filled"
            held_before = k - 1  # decisions made on the full disk, all stored
            for _ in range(20):
                r.step(Step(at=t, lane="in", qr=f"p{k % 50}"))
                r.step(Step(at=t + 0.5, lane="in", temperature=36.5))
                t, k = t + 2.0, k + 1
            held = len(lane._unwritten)
            told = [l["detail"] for l in r.lines if l["type"] == "alarm" and "in memory" in l.get("detail", "")]
            assert not reserve.exists()
            # Room again: every held event is written, in order.
            (disk / "fill").unlink()
            r.step(Step(at=t, lane="in", qr="p1"))
            assert not lane._unwritten
        c = sqlite3.connect(store)
        seqs = [row[0] for row in c.execute("SELECT seq FROM events ORDER BY seq")]
        decisions = c.execute("SELECT count(*) FROM events WHERE type = 'decision'").fetchone()[0]
        c.close()
    assert held_before >= 300, f"the reserve held only {held_before} decisions"
    counts = [int(re.search(r"(\d+) events held in memory", d).group(1)) for d in told]  # type: ignore[union-attr]
    assert held > 20 and counts and counts == sorted(counts) and counts[-1] <= held
    assert seqs == list(range(1, len(seqs) + 1)) and decisions == k  # the last one still waits to measure
