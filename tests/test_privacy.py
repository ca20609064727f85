"""Least data, retention and a resident's export and erasure."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from gate.desk.privacy import purge
from tests.conftest import ROOT

DRILL = drill_file.parse(
    textwrap.dedent(
        """
        name: privacy
        start: "2026-11-22T10:00:00+08:00"
        config: {policy: {passback: "off"}}
        passes:
          - {id: r1, holder: 王芳, unit: 3-2-501, category: resident, phone_last4: "1234", card: "1234567"}
          - {id: v1, holder: 访客刘, unit: 3-2-501, category: visitor, valid_until: "2026-11-22T23:59:00+08:00"}
        """
    )
)


def run(store: Path) -> None:
    with Rehearsal(DRILL, store_path=store) as r:
        r.step(Step(at=0, lane="in", card="1234567"))
        r.step(Step(at=0.5, lane="in", temperature=36.5))
        r.step(Step(at=10, lane="in", qr="v1"))
        r.step(Step(at=10.5, lane="in", temperature=36.6))
        r.finish()


def test_events_name_passes_by_id_only(tmp_path: Path) -> None:
    store = tmp_path / "g.db"
    run(store)
    bodies = [r[0] for r in sqlite3.connect(store).execute("SELECT body FROM events")]
    assert bodies and all("王芳" not in b and "访客刘" not in b for b in bodies)
    cols = {r[1] for r in sqlite3.connect(store).execute("PRAGMA table_info(passes)")}
    assert "phone_last4" in cols and not {"phone", "id_number", "id_card"} & cols


def test_purge_keeps_undelivered_events_and_deletes_expired_visitors(tmp_path: Path) -> None:
    store = tmp_path / "g.db"
    run(store)
    from gate.store.database import Store

    s = Store(store)
    try:
        total = s.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        later = time.time() + 400 * 86400  # far in the future: every event is past retention
        # Nothing was delivered: no event may go, whatever its age; the expired visitor pass does.
        first = purge(s, retention_days=30, now=later)
        assert first.events == 0 and first.visitor_passes == 1
        assert s.get_pass("v1") is None and s.get_pass("r1") is not None
        # Half delivered: only those go.
        with s.write() as c:
            c.execute("UPDATE outbox SET state = 'sent' WHERE seq <= ?", (total // 2,))
        res = purge(s, retention_days=30, now=later)
        left = s.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        assert res.events == total // 2 and left == total - total // 2
    finally:
        s.close()


def test_export_and_erase_cli(tmp_path: Path) -> None:
    store = tmp_path / "g.db"
    run(store)
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[store]\npath = "{store}"\n[[lanes]]\nname = "in"\ndirection = "in"\n', encoding="utf-8")
    gate = [sys.executable, "-m", "gate.cli.main"]
    out = subprocess.run([*gate, "privacy", "export", "--pass", "r1", "-c", str(cfg)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["pass"]["holder"] == "王芳" and data["cards"][0]["number"] == "1234567"
    assert any(e["type"] == "decision" and e["pass"] == "r1" for e in data["events"])
    er = subprocess.run([*gate, "privacy", "erase", "--pass", "r1", "--yes", "-c", str(cfg)], capture_output=True, text=True, cwd=ROOT)
    assert er.returncode == 0, er.stderr
    c = sqlite3.connect(store)
    assert c.execute("SELECT count(*) FROM passes WHERE id='r1'").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM cards WHERE number='1234567'").fetchone()[0] == 0
    assert all("r1" not in b and "1234567" not in b for (b,) in c.execute("SELECT body FROM events"))
    assert all("r1" not in (s or "") for (s,) in c.execute("SELECT situation FROM events"))
    # The daily counts survive the erasure.
    assert c.execute("SELECT count(*) FROM events WHERE type='decision' AND decision='allow'").fetchone()[0] == 2
    again = subprocess.run([*gate, "privacy", "export", "--pass", "r1", "-c", str(cfg)], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 1
