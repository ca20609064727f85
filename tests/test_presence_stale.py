"""An entry decided without fresh news of the site (`presence: stale`, issue 14) says so
beyond its event: the gate's daily report counts such decisions (and central's site report
sums them), and the guard page's tile says the gate decided on what it alone knew."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from gate.core.records import DecisionRecord
from tests.test_web import browser, guard_env, open_page, tile_text, wait_text  # noqa: F401 - the browser fixture

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["browser"]


def test_the_daily_report_counts_the_decisions_made_without_news_of_the_site() -> None:
    res = subprocess.run([sys.executable, "-m", "gate.cli.main", "drill", "--json", "--report",
                          str(ROOT / "tests" / "drills" / "two_gates_link_down.yaml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    stale = [x for x in lines if x.get("type") == "decision" and x.get("presence") == "stale"]
    assert [x["gate"] for x in stale] == ["west"]
    reports = {x["gate"]: x for x in lines if x.get("type") == "report"}
    assert reports["west"]["presence_stale"] == 1
    assert "presence_stale" not in reports["east"]  # present only when there were any


def test_central_sums_them_in_the_site_report(tmp_path: Path) -> None:
    import time

    from sync.central import CentralStore
    from sync.central.site_report import site_daily

    s = CentralStore(str(tmp_path / "central.db"))
    try:
        with s.db.tx():
            for gate, stale in (("east", 2), ("west", 3), ("north", 0)):
                rep = {"gate": gate, "date": "2026-11-22", "events": 5, "allowed": {"resident": 4}, "denied": {},
                       "fevers": 0, "challenges": 0, "new_cards": [], "unknown_cards": [], "by_hour": [0] * 24,
                       **({"presence_stale": stale} if stale else {})}
                s.upsert_report(rep, time.time())
        day = site_daily(s, "2026-11-22", "hill")
    finally:
        s.close()
    assert day["presence_stale"] == 5


def test_the_guard_page_tile_says_the_gate_decided_alone(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    with guard_env(tmp_path) as env, open_page(browser, env) as page:
        app = env.r.app
        rec = DecisionRecord(at=app.clock.now(), lane="in", pass_id="r1", credential="qr", category="resident",
                             decision="allow", reason="ok", temperature_c=36.5, holder="王芳", presence="stale")
        for sink in list(app.sinks):
            sink(rec)
        wait_text(page, "#tile", "未收到其他门岗的最新进出记录")
        assert "No recent news from the other gates" in tile_text(page)
        fresh = DecisionRecord(at=app.clock.now(), lane="in", pass_id="r2", credential="qr", category="resident",
                               decision="allow", reason="ok", temperature_c=36.4, holder="李雷")
        for sink in list(app.sinks):
            sink(fresh)
        wait_text(page, "#tile", "李雷")
        assert "未收到其他门岗" not in tile_text(page)
