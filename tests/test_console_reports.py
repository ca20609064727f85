"""The office console's reports and policy pages (sync/central/console/report_pages.py,
policy_pages.py) in headless Chromium, against a real central on a real mosquitto with
simulated gates (drill rehearsals with [sync], as tests/test_console.py does), and their
queries on SQLite and PostgreSQL.

Screenshots: tests/screenshots/console-reports-*.png and console-policy-*.png.
"""
from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest

import tests.test_console as tc
from gate.drill.file import Step
from sync.central.console import audit, policy_data, report_data, users
from tests.test_central import postgres_dsn  # noqa: F401  (a fixture: a throwaway PostgreSQL)
from tests.test_console import Client, Site, office_page, shot, sign_in, wait_for
from tests.test_web import browser  # noqa: F401  (a fixture)

TZ = ZoneInfo("Asia/Shanghai")
ADMIN = ("张伟", "admin-pass-2")


def today_start() -> tuple[str, str]:
    """A drill start a minute ago, on today's date at the site (the pages' "today")."""
    now = datetime.now(TZ).replace(microsecond=0)
    start = now - timedelta(minutes=2)
    if start.date() != now.date():
        start = now.replace(hour=0, minute=0, second=1)
    return start.isoformat(), now.date().isoformat()


@pytest.fixture
def site(tmp_path: Path, broker: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, str]]:
    start, day = today_start()
    monkeypatch.setattr(tc, "DRILL", tc.DRILL.replace("2026-11-22T08:00:00+08:00", start))
    from contextlib import ExitStack

    with ExitStack() as stack:
        s = Site(tmp_path, broker, stack)
        users.add(s.central.store.db, ADMIN[0], "admin", ADMIN[1])
        yield s, day


def traffic(s: Site) -> tuple[Any, Any]:
    """East: a resident by QR, the resident's own card, an unknown card; west: one resident.
    Both drained to central; only east sends its report of the day."""
    east = s.gates["east"]
    west = s.add_gate("west")
    assert east.app.sync.link.wait_connected(10) and west.app.sync.link.wait_connected(10)
    wait_for(lambda: tc.passes_version(s, "east") == 2 and tc.passes_version(s, "west") == 2, 20, "the roster at both gates")
    east.step(Step(at=1, lane="in", qr="r1"))
    east.step(Step(at=1.5, lane="in", temperature=36.5))
    east.step(Step(at=20, lane="in", card="7777777"))
    east.step(Step(at=40, lane="in", card="1234567"))
    east.step(Step(at=40.5, lane="in", temperature=36.6))
    west.step(Step(at=5, lane="in", qr="r2"))
    west.step(Step(at=5.5, lane="in", temperature=36.4))
    assert [d[1:] for d in tc.decisions(east)] == [("allow", "ok"), ("deny", "unknown_card"), ("allow", "ok")]
    assert tc.decisions(west)[-1][1] == "allow"
    east.app.sync.heartbeat.report_now(None)  # today's report, now (a gate sends it the next morning)
    assert east.drain(30) and west.drain(30)
    day = east.clock.start.date().isoformat()
    wait_for(lambda: [r for r in s.central.store.reports("east") if r["date"] == day], 20, "east's report of today at central")
    return east, west


def test_the_days_report_names_a_silent_gate_exports_csv_and_lists_new_cards(browser: Any, site: tuple[Site, str]) -> None:  # noqa: F811
    s, day = site
    traffic(s)
    held = s.central.store.event_count()
    with office_page(browser, s) as page:
        sign_in(page, s, "li", path="reports?day=" + day)  # a viewer reads the reports
        page.wait_for_selector("#by-gate")
        east = page.locator("#by-gate tr[data-gate=east]")
        assert east.get_attribute("data-reported") == "yes"
        cells = east.locator("td.num").all_inner_texts()
        rep = [r for r in s.central.store.reports("east") if r["date"] == day][0]
        assert cells[:3] == [str(rep["events"]), "2", "1"]  # events, allowed, denied: the gate's own counts
        assert page.locator("#by-gate tr[data-gate=west]").get_attribute("data-reported") == "no"
        assert "west" in page.locator("#no-report").inner_text() and "未报告" in page.locator("#no-report").inner_text()
        assert page.locator("#chart-by-gate svg rect").count() >= 2 and page.locator("#chart-by-hour svg").count() == 1
        shot(page, "reports-day")
        # the silent gate's page says so, and what central holds from it
        page.click("#no-report a:text('west')")
        page.wait_for_selector("#gate-missing")
        assert "中心收到该日事件 2 条" in page.locator("#gate-missing").inner_text()
        page.goto(s.url + f"reports/gate/east?day={day}")
        page.wait_for_selector("#gate-totals")
        assert page.locator("#gate-allowed").inner_text() == "2"
        shot(page, "reports-gate")
        # the range export: a BOM, then one row per event central holds
        page.goto(s.url + f"reports?day={day}")
        page.fill("#export input[name=since]", day)
        with page.expect_download() as dl:
            page.click("#export-button")
        data = Path(dl.value.path()).read_bytes()
        assert data.startswith(b"\xef\xbb\xbf")
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        assert len(rows) == held and {r["gate"] for r in rows} == {"east", "west"}
        assert [r["reason"] for r in rows if r["gate"] == "east" and r["type"] == "decision"] == ["ok", "unknown_card", "ok"]
        assert {r["unit"] for r in rows if r["pass"] == "r1"} == {"3-2-501"}
        # cards first seen today: the unknown one, and the resident's, bound to her pass
        page.click("#report-tabs a[href='/reports/cards']")
        page.wait_for_selector("#cards")
        assert page.locator("#cards tr[data-card='7777777']").get_attribute("data-bound") == "no"
        assert "未登记" in page.locator("#cards tr[data-card='7777777']").inner_text()
        bound = page.locator("#cards tr[data-card='1234567']")
        assert bound.get_attribute("data-bound") == "yes" and "王芳" in bound.inner_text()
        shot(page, "reports-cards")
        page.click("#report-tabs a[href='/reports/missing']")
        page.wait_for_selector("#calendar")
        assert page.locator("#calendar tr[data-gate=west]").count() == 1
        shot(page, "reports-missing")
    with office_page(browser, s, tc.TABLET) as page:
        sign_in(page, s, "li", path="reports?day=" + day)
        page.wait_for_selector("#by-gate")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= tc.TABLET["width"]
        shot(page, "reports-tablet")


def test_policy_is_checked_replayed_published_to_the_gate_and_audited(browser: Any, site: tuple[Site, str]) -> None:  # noqa: F811
    s, day = site
    east, west = traffic(s)
    before = east.app.policy_version()
    with office_page(browser, s) as page:
        sign_in(page, s, ADMIN[0], ADMIN[1], path="policy")
        page.wait_for_selector("#policy-form")
        doc = page.locator("textarea[name=document]").input_value()
        assert "version = 1" in doc and "fever_c = 37.3" in doc
        # a bad key: refused, the message names it, nothing is published, the text is kept
        page.fill("textarea[name=document]", doc.replace("fever_c = 37.3", "fever_line = 37.5"))
        page.fill("#publish input[name=note]", "试一下")
        page.click("#publish-button")
        page.wait_for_selector("#policy-errors")
        assert "policy.fever_line: unknown key" in page.locator("#policy-errors").inner_text()
        assert "fever_line = 37.5" in page.locator("textarea[name=document]").input_value()
        assert s.central.store.latest_policy() is None
        shot(page, "policy-refused")
        # replay today's decisions from both gates under a lower fever line
        page.fill("textarea[name=document]", doc.replace("fever_c = 37.3", "fever_c = 37.0"))
        page.fill("#policy-form input[name=since]", day)
        page.fill("#policy-form input[name=until]", day)
        page.click("#replay-button")
        page.wait_for_selector("#replay")
        row = page.locator("#replay tr[data-old='deny unknown_card']")
        assert row.get_attribute("data-new") == "deny unknown_card" and row.get_attribute("data-count") == "1"
        assert "→" in row.inner_text()
        # every decision came up with its situation: all replayed. The gates run passback
        # "off"; the document has the default (soft), so 王芳's card, swiped while she was
        # inside since her QR entry, would have called the guard
        assert "无法重放 0 条" in page.locator("#replay-skipped").inner_text()
        assert page.locator("#replay tr[data-old='allow ok'][data-new='allow ok']").get_attribute("data-count") == "2"
        changed = page.locator("#replay tr[data-old='allow ok'][data-new='challenge passback']")
        assert changed.get_attribute("data-count") == "1" and "east" in changed.inner_text()
        assert page.locator("#not-replayable").count() == 0
        assert page.locator("#policy-diff").inner_text().count("fever_c") == 1
        shot(page, "policy-replay")
        # publish it, with a note
        page.fill("#publish input[name=note]", "发热线降到 37.0")
        page.click("#publish-button")
        page.wait_for_selector("#published")
        assert page.locator("#policy-current").get_attribute("data-version") == "1"
        shot(page, "policy")
        wait_for(lambda: east.app.policy_version() == 1 and west.app.policy_version() == 1, 20, "the policy to reach the gates")
        assert before != 1
        page.click("#policy-tabs a[href='/policy/history']")
        page.wait_for_selector("#policy-history")
        row = page.locator("#policy-history tr[data-version='1']")
        assert ADMIN[0] in row.inner_text() and "发热线降到 37.0" in row.inner_text()
        # a second version: its diff is in the history
        page.goto(s.url + "policy")
        doc2 = page.locator("textarea[name=document]").input_value()
        assert "version = 2" in doc2 and "fever_c = 37.0" in doc2
        page.fill("textarea[name=document]", doc2.replace("fever_c = 37.0", "fever_c = 37.2"))
        page.fill("#publish input[name=note]", "改回 37.2")
        page.click("#publish-button")
        page.wait_for_selector("#published")
        page.click("#policy-tabs a[href='/policy/history']")
        assert "fever_c" in page.locator("#policy-history tr[data-version='2']").inner_text()
        shot(page, "policy-history")
        page.click("#nav a[href='/audit']")
        page.wait_for_selector("#audit")
        assert ADMIN[0] in page.locator("#audit tr.audit-policy_publish").first.inner_text()
    wait_for(lambda: east.app.policy_version() == 2, 20, "version 2 at the gate")
    payload = s.central.store.latest_policy()
    assert payload["version"] == 2 and payload["policy"]["fever_c"] == 37.2 and payload["sig"]
    assert [(e.who, e.target, e.reason) for e in audit.recent(s.central.store.db) if e.action == "policy_publish"] == [
        (ADMIN[0], "v2", "改回 37.2"), (ADMIN[0], "v1", "发热线降到 37.0")]


def test_a_viewer_cannot_publish_and_staff_may_only_replay(browser: Any, site: tuple[Site, str]) -> None:  # noqa: F811
    s, _day = site
    with office_page(browser, s) as page:
        sign_in(page, s, "li", path="policy")
        page.wait_for_selector("#view-only")
        assert page.locator("#publish-button").count() == 0 and page.locator("#replay-button").count() == 0
        shot(page, "policy-viewer")
    doc = policy_data.document(None)
    for name, replay_code in (("li", 403), ("王芳", 200)):
        c = Client(s.url)
        assert c.sign_in(name, tc.PASSWORDS[name])[0] == 200
        _, body = c.get("policy")
        tok = Client.csrf(body)
        code, body = c.post("policy/publish", {"csrf": tok, "document": doc, "note": "not mine to publish"})
        assert code == 403 and 'id="refused"' in body, name
        assert c.post("policy/replay", {"csrf": tok, "document": doc})[0] == replay_code, name
    assert s.central.store.latest_policy() is None
    assert not [e for e in audit.recent(s.central.store.db) if e.action == "policy_publish"]


# ---------------------------------------------------------------- without a browser


def _fill(st: Any) -> None:
    """Two gates' events of two days (east reports both, west neither), cards, a pass."""
    st.add_pass(id="r1", holder="王芳", unit="3-2-501", category="resident", card="1234567")
    now = time.time()
    evs = []
    for day, n in (("2026-11-21", 3), ("2026-11-22", 4)):
        for i in range(n):
            evs.append({"id": f"east-{day}-{i}", "gate": "east", "seq": len(evs) + 1, "ts": f"{day}T0{i}:00:00+08:00",
                        "type": "decision", "lane": "in", "clock": "ok", "decision": "deny" if i == 1 else "allow",
                        "reason": "unknown_card" if i == 1 else "ok", "card": "7777777" if i == 1 else "1234567",
                        "pass": None if i == 1 else "r1", "category": "resident"})
    evs.append({"id": "west-1", "gate": "west", "seq": 1, "ts": "2026-11-22T23:59:59+08:00", "type": "decision",
                "lane": "in", "clock": "ok", "decision": "deny", "reason": "forged"})
    with st.db.tx():
        st.insert_events([(e, now) for e in evs])
        for day, n in (("2026-11-21", 3), ("2026-11-22", 4)):
            st.upsert_report({"type": "report", "gate": "east", "date": day, "events": n, "allowed": {"resident": n - 1},
                              "denied": {"unknown_card": 1}, "fevers": 0, "challenges": 0, "new_cards": [],
                              "unknown_cards": ["7777777"], "by_hour": [1] * n + [0] * (24 - n)}, now)


def _check_queries(st: Any) -> None:
    from datetime import date

    from gate.config import PolicyConfig

    _fill(st)
    db = st.db
    rep = report_data.site_day(st, "2026-11-22", "s")
    assert rep["missing"] == ["west"] and rep["by_gate"]["west"] == {"reported": False, "events_held": 1}
    assert rep["by_gate"]["east"]["allowed"] == 3 and rep["events"] == 4
    rows = list(report_data.range_rows(db, "2026-11-21", "2026-11-22", TZ))
    assert len(rows) == 8 == report_data.range_count(db, "2026-11-21", "2026-11-22")
    assert [r["gate"] for r in rows] == ["east"] * 7 + ["west"] and rows[0]["unit"] == "3-2-501"
    assert len(list(report_data.range_rows(db, "2026-11-22", "2026-11-22", TZ, "east"))) == 4
    assert report_data.refresh_cards(db) and report_data.refresh_cards(db)  # a second reading changes nothing
    assert report_data.cards_first_seen(db, "2026-11-22") == []
    first = report_data.cards_first_seen(db, "2026-11-21")
    assert [(c["card"], c["pass"] and c["pass"]["id"]) for c in first] == [("7777777", None), ("1234567", "r1")]
    cal = report_data.missing_days(db, "2026-11", date(2026, 11, 23))
    by = {g["gate"]: g for g in cal["gates"]}
    assert by["east"]["missing"] == [] and by["west"]["missing"] == ["2026-11-22"]
    assert [c for c in by["west"]["days"] if c["day"] == "2026-11-22"][0]["held"] == 1
    r = policy_data.replay(db, PolicyConfig(fever_c=37.0), date(2026, 11, 21), date(2026, 11, 22), TZ)
    assert (r.decisions, r.replayed, r.unchanged, r.changed, r.skipped) == (8, 3, 3, 0, 5)
    assert {(t.old, t.count) for t in r.transitions} == {(("deny", "unknown_card"), 2), (("deny", "forged"), 1)}


def _check_policy(st: Any, tmp: Path) -> None:
    from gate.core.tokens import new_keypair
    from sync.central.config import load_central_config

    new_keypair(tmp, "central")
    (tmp / "c.toml").write_text('site = "s"\nsigning_key = "central.key"\n', encoding="utf-8")
    conf = load_central_config(tmp / "c.toml")
    with pytest.raises(policy_data.PolicyError) as bad:
        policy_data.parse("[policy]\nversion = 1\nfever_c = 'hot'\n[policy.categories.resident]\nhours = 5\n")
    assert [ln.split(":")[0] for ln in bad.value.lines] == ["policy.fever_c", "policy.categories.resident.hours"]
    v1 = policy_data.publish(st, conf, policy_data.parse(policy_data.document(None)), "doc", who="张伟", note="first")
    assert v1 == 1 and policy_data.current(st.db).who == "张伟"
    with pytest.raises(policy_data.PolicyError) as low:
        policy_data.publish(st, conf, policy_data.parse(policy_data.document(None)), "doc", who="张伟", note="again")
    assert low.value.code == "version_low" and "policy.version" in low.value.lines[0]
    doc = policy_data.document(policy_data.current(st.db)).replace("fever_c = 37.3", "fever_c = 37.5")
    assert policy_data.publish(st, conf, policy_data.parse(doc), doc, who="李雷", note="higher") == 2
    h = policy_data.history(st.db)
    assert [(e["version"], e["who"], [c["key"] for c in e["changes"]]) for e in h] == [(2, "李雷", ["fever_c"]), (1, "张伟", [])]


def test_the_reports_and_policy_queries_on_sqlite_use_their_indexes(tmp_path: Path) -> None:
    from sync.central.store import CentralStore

    st = CentralStore(str(tmp_path / "c.db"))
    try:
        _check_queries(st)
        _check_policy(st, tmp_path)
        cond, bounds = report_data.day_range(st.db, "2026-11-22")
        plan = " ".join(str(r) for r in st.db.all(f"EXPLAIN QUERY PLAN SELECT count(*) FROM events WHERE gate = ? AND {cond}",
                                                  ("east", *bounds)))
        assert "events_gate_ts" in plan
    finally:
        st.close()


def test_the_reports_and_policy_queries_run_on_postgresql(postgres_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    from sync.central.store import CentralStore

    st = CentralStore(postgres_dsn)
    try:
        for table in ("events", "reports", "passes", "changes", "status", "policies", "console_cards", "console_policy_log",
                      "console_audit", "tombstones"):
            st.db.execute(f"DELETE FROM {table}")
        st.db.execute("UPDATE meta SET value = '0' WHERE key = 'passes_version'")
        st.db.execute("DELETE FROM meta WHERE key = 'console_cards_through'")
        _check_queries(st)
        _check_policy(st, tmp_path)
        assert st.db.one("SELECT indexdef FROM pg_indexes WHERE indexname = 'events_gate_ts'")[0].count('"C"') == 1
    finally:
        st.close()


def test_the_page_words_have_both_languages() -> None:
    from gate.core.words import CONSOLE_POLICY, CONSOLE_REPORTS

    for table in (CONSOLE_REPORTS, CONSOLE_POLICY):
        for key, (zh, en) in table.items():
            assert zh and en and not re.search("[\u4e00-\u9fff]", en), key
    assert json.dumps(sorted(CONSOLE_POLICY)) and "nav" in CONSOLE_REPORTS and "nav" in CONSOLE_POLICY
