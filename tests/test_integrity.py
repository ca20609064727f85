"""A corrupt store is moved aside, rebuilt from the last pass snapshot, and reported."""
from __future__ import annotations

import textwrap
from pathlib import Path

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from gate.store.integrity import check, save_snapshot

DRILL = drill_file.parse(
    textwrap.dedent(
        """
        name: integrity
        start: "2026-11-22T10:00:00+08:00"
        passes:
          - {id: r1, holder: 王芳, unit: 3-2-501, category: resident, card: "1234567"}
        """
    )
)


def test_a_corrupt_store_is_moved_aside_and_rebuilt_from_the_snapshot(tmp_path: Path) -> None:
    store_path = tmp_path / "gate.db"
    with Rehearsal(DRILL, store_path=store_path) as r:
        r.step(Step(at=0, lane="in", qr="r1"))
        r.step(Step(at=0.5, lane="in", temperature=36.5))
        s = r.app.open_store()
        try:
            save_snapshot(s.conn, store_path)
        finally:
            s.close()
    # Scribble over the middle of the database file, as a failing SD card might.
    with open(store_path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xde\xad\xbe\xef" * 2048)
    ok, detail = check(store_path)
    assert not ok
    with Rehearsal(DRILL, store_path=store_path) as r:
        result = r.app.integrity
        s = r.app.open_store()
        try:
            alarms = [e for e in s.events() if e["type"] == "alarm"]
            assert s.get_pass("r1") is not None and s.card_pass("1234567") == "r1"
        finally:
            s.close()
        # The lane works on the rebuilt store.
        r.step(Step(at=100, lane="in", card="1234567"))
        r.step(Step(at=100.5, lane="in", temperature=36.5))
    assert not result.ok and result.moved_to is not None and result.moved_to.exists()
    assert result.restored_passes >= 1
    assert [a["kind"] for a in alarms] == ["store_rebuilt"]
    assert [l["reason"] for l in r.lines if l["type"] == "decision"][-1] in ("ok", "passback")
    assert check(store_path)[0]


def test_not_a_database_at_all(tmp_path: Path) -> None:
    p = tmp_path / "gate.db"
    p.write_bytes(b"this is not sqlite" * 100)
    ok, detail = check(p)
    assert not ok and "not a database" in detail


def test_the_hourly_pass_snapshot_is_written_only_when_the_table_changed(tmp_path: Path) -> None:
    from gate.app.maintenance import Maintenance
    from gate.store.database import Store

    store = Store(tmp_path / "gate.db")
    try:
        store.upsert_passes([{"id": f"p{i}", "category": "resident"} for i in range(50)], {"900001": "p1"})
        m = Maintenance(lambda: store, retention_days=30, every_s=0)  # every pass is "an hour later"
        m.run_once(store)
        m.run_once(store)
        assert m.snapshots == 1  # nothing changed: the SD card is not written again
        store.upsert_passes([{"id": "p50", "category": "visitor"}])
        m.run_once(store)
        assert m.snapshots == 2
        with store.write() as c:  # only a card moves to another pass: still a change
            c.execute("UPDATE card_bindings SET pass_id = 'p2' WHERE number = '900001'")
        m.run_once(store)
        assert m.snapshots == 3
        store.remove_passes(["p3"])  # a tombstone
        m.run_once(store)
        m.run_once(store)
        assert m.snapshots == 4
    finally:
        store.close()
