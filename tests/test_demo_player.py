"""The live demo's scripted people start each round afresh, and only them: who entered
at the site's other gates (news in `inside`, `last_move`) is kept as it came."""
from __future__ import annotations

import textwrap
import time
from pathlib import Path

from gate.drill import file as drill_file
from gate.drill.demo import DemoPlayer
from gate.drill.runner import Rehearsal


def test_a_new_round_forgets_the_scripts_people_not_the_sites_news(tmp_path: Path) -> None:
    d = drill_file.parse(textwrap.dedent("""
        name: demo people
        start: "2026-11-22T08:00:00+08:00"
        passes:
          - {id: r1, holder: 王芳, unit: 3-2-501, category: resident}
        steps: []
    """))
    with Rehearsal(d) as r:
        store = r.app.open_store()
        try:
            with store.write() as c:
                for pid in ("r1", "x9"):  # r1: the script's; x9: entered at another gate of the site
                    c.execute("INSERT INTO inside (pass_id, since, lane) VALUES (?, ?, 'in')", (pid, time.time()))
                    c.execute("INSERT INTO last_move (pass_id, at, direction, gate) VALUES (?, ?, 'in', 'west')",
                              (pid, time.time()))
        finally:
            store.close()
        player = DemoPlayer(r.app, d, tmp_path, loop=False)
        player.load_passes()
        store = r.app.open_store()
        try:
            inside = [row[0] for row in store.conn.execute("SELECT pass_id FROM inside ORDER BY pass_id")]
            moved = [row[0] for row in store.conn.execute("SELECT pass_id FROM last_move ORDER BY pass_id")]
        finally:
            store.close()
    assert inside == ["x9"] and moved == ["x9"]
