"""A clock set back (a Pi without an RTC boots in the past) never revives a pass."""
from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

from gate import drill_file
from gate.drill import Rehearsal
from gate.drill_file import Step

PASSES = """
passes:
  - {id: ex, holder: 乙, unit: 1-1-102, category: visitor, valid_until: "2026-11-21T23:59:59+08:00"}
"""


def drill(start: str) -> drill_file.Drill:
    return drill_file.parse(textwrap.dedent(f'name: floor\nstart: "{start}"\n') + textwrap.dedent(PASSES))


def test_clock_rollback_after_an_expired_pass_was_refused(tmp_path: Path) -> None:
    store = tmp_path / "g.db"
    with Rehearsal(drill("2026-11-22T10:00:00+08:00"), store_path=store) as r:
        r.step(Step(at=0, lane="in", qr="ex"))
    assert [l["reason"] for l in r.lines if l["type"] == "decision"] == ["expired"]
    # The gate reboots with its clock a week behind: the pass would look valid.
    with Rehearsal(drill("2026-11-15T10:00:00+08:00"), store_path=store) as r2:
        r2.step(Step(at=0, lane="in", qr="ex"))
    assert [l["reason"] for l in r2.lines if l["type"] == "decision"] == ["expired"]
    clocks = [row[0] for row in sqlite3.connect(store).execute("SELECT json_extract(body, '$.clock') FROM events ORDER BY seq")]
    assert clocks[0] == "ok" and clocks[-1] == "behind"
