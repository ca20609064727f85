"""The office console's community map (sync/central/console/map_pages.py, community.py,
seen.py) in headless Chromium against a real central on a real mosquitto, with a
simulated gate where events are needed (tests/test_console.py's Site).

Screenshots: tests/screenshots/console-map-*.png (home observation on an office PC, a
fever today, the building boards by a rule's share, the tablet, a unit's people).
"""
from __future__ import annotations

import json
import re
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gate.drill import file as drill_file
from gate.drill.file import Step
from gate.drill.runner import Rehearsal
from sync.central import presence_relay, visitors
from sync.central.config import ConsoleConfig
from sync.central.console import community, seen
from sync.central.store import CentralStore
from sync.central.wire import wire_pass
from tests.sync_helpers import trust_central
from tests.test_central import postgres_dsn  # noqa: F401  (a fixture: a throwaway PostgreSQL)
from tests.test_console import OFFICE, PASSWORDS, passes_version, TABLET, Client, Site, office_page, shot, sign_in, site, wait_for  # noqa: F401
from tests.test_web import browser  # noqa: F401  (a fixture)

TZ = ZoneInfo("Asia/Shanghai")
RULE = {"name": "vaccinated", "when": "pass.category in ['resident', 'renter']", "require": "pass.attributes.vaccine_doses >= 2",
        "prompt": {"zh": "请先完成疫苗接种", "en": "Please complete your vaccination first."}}


def later(days: float) -> str:
    return (datetime.now(TZ) + timedelta(days=days)).isoformat(timespec="seconds")


def today_gate(s: Site, gate: str) -> Rehearsal:
    """A gate whose drill clock starts now (so what it records is today's), trusting central."""
    start = datetime.now(TZ).replace(microsecond=0).isoformat()
    d = drill_file.parse(textwrap.dedent(f"""
        name: map
        start: "{start}"
        config: {{policy: {{passback: "off"}}, gate: {{id: {gate}, site: drill}}}}
        passes:
          - {{id: r1, holder: 王芳, unit: 3-2-501, category: resident}}
          - {{id: f1, holder: 刘洋, unit: 5-1-101, category: renter}}
        """))
    return s._start(trust_central(Rehearsal(d, broker=s.broker.url), [s.key_pub]), gate)


def add_community(s: Site) -> None:
    """Two more buildings, a unit under observation, and a unit the map cannot place."""
    s.central.upsert_passes([
        {"id": "o1", "holder": "张伟", "unit": "3-1-302", "category": "resident", "observation_until": later(5)},
        {"id": "o2", "holder": "陈静", "unit": "3-1-301", "category": "resident", "observation_until": later(-5)},
        {"id": "f1", "holder": "刘洋", "unit": "5-1-101", "category": "renter"},
        {"id": "f2", "holder": "黄丽", "unit": "5-2-1202", "category": "resident"},
        {"id": "x1", "holder": "周杰", "unit": "门卫室", "category": "resident"},
        {"id": "v1", "holder": "访客甲", "unit": "5-1-101", "category": "visitor"},  # not one of the unit's people
    ])


def cell(page: Any, unit: str) -> Any:
    return page.locator(f"a.u[data-unit='{unit}']")


# ---------------------------------------------------------------- in a browser


def test_the_map_shows_the_roster_and_colours_a_unit_under_observation(browser: Any, site: Site) -> None:  # noqa: F811
    add_community(site)
    with office_page(browser, site) as page:
        sign_in(page, site, "li", path="map?status=observation&b=3")  # a viewer sees it
        page.wait_for_selector("#plan")
        assert page.locator("#nav a[href='/map']").get_attribute("class") == "active"
        boards = page.locator("#boards .board")
        assert [boards.nth(i).get_attribute("data-building") for i in range(boards.count())] == ["3", "5"]
        # building 3's floor plan: entrances 1 and 2, floors 5 and 3, its four units
        plan = page.locator("#plan")
        assert plan.get_attribute("data-building") == "3"
        assert "1 单元" in plan.inner_text() and "2 单元" in plan.inner_text() and "5 层" in plan.inner_text()
        assert {cell(page, u).count() for u in ("3-2-501", "3-2-502", "3-1-301", "3-1-302")} == {1}
        assert cell(page, "3-1-302").get_attribute("data-state") == "observation"  # five days to go
        assert cell(page, "3-1-301").get_attribute("data-state") == "clear"  # it ended five days ago
        assert cell(page, "3-2-501").get_attribute("data-state") == "clear"
        assert cell(page, "3-1-302").locator(".mark").inner_text() == "O"  # a letter too, not colour alone
        assert page.locator("#board-3").get_attribute("data-board") == "flagged"
        assert page.locator("#board-5").get_attribute("data-board") == "clear"
        legend = page.locator("#legend").inner_text()
        assert "有人居家观察" in legend and "someone under home observation" in legend
        # the unit that does not read as building-entrance-room is listed, not lost
        assert cell(page, "门卫室").count() == 1 and "其他房号" in page.inner_text("main")
        # read-only: no form that changes anything (only signing out posts)
        assert page.locator("main form[method=post]").count() == 0
        shot(page, "map")
        # the other building's plan, with a high floor
        page.click("#board-5")
        page.wait_for_selector("#plan[data-building='5']")
        assert cell(page, "5-2-1202").count() == 1 and "12 层" in page.locator("#plan").inner_text()
    with office_page(browser, site, TABLET) as page:
        sign_in(page, site, "li", path="map?status=observation&b=3")
        page.wait_for_selector("#plan")
        # readable on a tablet: the page itself never scrolls sideways
        assert page.evaluate("() => document.documentElement.scrollWidth") <= TABLET["width"]
        assert cell(page, "3-1-302").get_attribute("data-state") == "observation"
        shot(page, "map-tablet")


def test_a_fever_at_a_gate_colours_its_unit_and_a_click_lists_its_people_and_last_decisions(browser: Any, site: Site) -> None:  # noqa: F811
    add_community(site)
    r = today_gate(site, "north")
    assert r.app.sync.link.wait_connected(10)
    wait_for(lambda: passes_version(site, "north") >= site.central.store.passes_version, 20, "the gate to take central's roster")
    r.step(Step(at=0, lane="in", qr="r1"))
    r.step(Step(at=0.5, lane="in", temperature=38.6))
    r.step(Step(at=6, lane="in", temperature=38.7))
    r.step(Step(at=20, lane="in", qr="f1"))
    r.step(Step(at=20.5, lane="in", temperature=36.5))
    assert r.drain(30)
    wait_for(lambda: seen.at_gates(site.central.store.db, ["r1", "f1"])["f1"], 20, "central to store the gate's decisions")
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳", path="map?b=3")
        page.wait_for_selector("#plan")
        page.select_option("#status", "fever")  # the page follows the select at once
        page.wait_for_url(re.compile(r"status=fever"))
        assert cell(page, "3-2-501").get_attribute("data-state") == "fever"
        assert cell(page, "3-2-501").locator(".mark").inner_text() == "F"
        assert cell(page, "3-2-502").get_attribute("data-state") == "clear"
        assert page.locator("#board-3").get_attribute("data-board") == "flagged"
        assert "今日有人发热" in page.locator("#legend").inner_text()
        shot(page, "map-fever")
        # the choice is remembered: the map without a status in the address shows fevers still
        page.goto(site.url + "map?b=5")
        assert page.locator("#status").input_value() == "fever"
        assert cell(page, "5-1-101").get_attribute("data-state") == "clear"
        # a click on a unit: its people and their latest decision at every gate
        page.goto(site.url + "map?b=3")
        cell(page, "3-2-501").click()
        page.wait_for_selector("#people")
        assert page.url.endswith("/map/unit/3-2-501")
        person = page.locator(".person[data-pass='r1']")
        row = person.locator("tr[data-gate='north']").inner_text()
        assert "王芳" in person.inner_text() and "禁止通行" in row and "发热" in row and "fever" in row
        shot(page, "map-unit")
        page.goto(site.url + "map/unit/5-1-101")
        people = page.locator("#people").inner_text()
        assert "刘洋" in people and "访客甲" in people  # every pass naming the unit, households first
        assert "通过" in page.locator(".person[data-pass='f1'] tr[data-gate='north']").inner_text()
        assert "还没在任何闸机出现" in page.locator(".person[data-pass='v1']").inner_text()


def test_the_building_boards_follow_the_thresholds(browser: Any, site: Site) -> None:  # noqa: F811
    site.central.set_policy({"version": 2, "rules": [RULE]})
    rows = []
    for building, people, vaccinated in (("7", 25, 24), ("8", 25, 23), ("9", 10, 8)):  # 96 %, 92 %, 80 %
        for i in range(people):
            pid = f"b{building}-{i}"
            rows.append({"id": pid, "holder": f"住户{building}-{i}", "unit": f"{building}-1-{i // 4 + 1}0{i % 4 + 1}",
                         "category": "resident", "attributes": {"vaccine_doses": 3 if i < vaccinated else 1}})
    rows.append({"id": "kid", "holder": "小明", "unit": "7-1-101", "category": "returnee"})  # the rule does not concern him
    site.central.upsert_passes(rows)  # the attributes are the roster's (as an import with [roster] attributes keeps them)
    with office_page(browser, site) as page:
        sign_in(page, site, "li", path="map?b=7")
        page.wait_for_selector("#status")
        page.select_option("#status", "rule:vaccinated")
        page.wait_for_url(re.compile(r"status=rule"))
        boards = {b: page.locator(f"#board-{b}") for b in ("7", "8", "9")}
        assert [boards[b].get_attribute("data-board") for b in ("7", "8", "9")] == ["green", "yellow", "red"]
        assert "96%" in boards["7"].inner_text() and "绿牌" in boards["7"].inner_text() and "green" in boards["7"].inner_text()
        assert "92%" in boards["8"].inner_text() and "黄牌" in boards["8"].inner_text()
        assert "80%" in boards["9"].inner_text() and "红牌" in boards["9"].inner_text()
        assert "绿牌 ≥ 95%" in page.locator("#thresholds").inner_text()
        assert cell(page, "7-1-101").get_attribute("data-state") == "all"  # 小明 is not counted
        assert (cell(page, "7-1-601").get_attribute("data-state"), cell(page, "7-1-701").get_attribute("data-state")) == ("all", "none")
        assert cell(page, "7-1-701").locator(".mark").inner_text() == "✗"
        shot(page, "map-boards")
    # The office sets its own thresholds in CENTRAL.toml [console], checked.
    with pytest.raises(ValueError, match="map_yellow_pct"):
        ConsoleConfig(map_green_pct=90, map_yellow_pct=95)
    with pytest.raises(ValueError):
        ConsoleConfig(map_green_pct=120)
    now = time.time()
    m = community.community_map(site.central.store, community.Choice("rule", rule="vaccinated"), now=now, tz=TZ,
                                midnight=now - 3600, green=97, yellow=96)
    assert [(b.name, b.board) for b in m["buildings"] if b.name != "3"] == [("7", "yellow"), ("8", "red"), ("9", "red")]


def test_an_unauthenticated_request_gets_only_the_login_page(browser: Any, site: Site) -> None:  # noqa: F811
    add_community(site)
    anon = Client(site.url)
    for path in ("map", "map?status=fever&b=3", "map/unit/3-2-501", "map/unit/%E9%97%A8%E5%8D%AB%E5%AE%A4"):
        code, body = anon.get(path)
        assert code == 401 and 'id="login"' in body, path
        shown = re.sub(r'name="(csrf|next)" value="[^"]*"', "", body)
        for secret in ("王芳", "张伟", "3-2-501", "3-1-302", "门卫室", "boards"):
            assert secret not in shown, (path, secret)
    viewer = Client(site.url)
    assert viewer.sign_in("li", PASSWORDS["li"])[0] == 200
    code, body = viewer.get("map?status=observation")
    assert code == 200 and 'data-unit="3-1-302" data-state="observation"' in body
    assert viewer.get("map/unit/no-such-unit")[0] == 404
    with office_page(browser, site) as page:
        page.goto(site.url + "map/unit/3-2-501")
        assert page.locator("#login").is_visible() and page.locator("#people").count() == 0


# ---------------------------------------------------------------- without a browser


@pytest.mark.parametrize("unit, place", [
    ("3-2-501", ("3", "2", 5, "01")),
    ("12-1-1503", ("12", "1", 15, "03")),
    ("3号楼2单元501室", ("3", "2", 5, "01")),
    ("3-501", ("3", "", 5, "01")),
    ("A-1-201", ("A", "1", 2, "01")),
    ("门卫室", None), ("3-2", None), ("3-2-1", None), ("", None), ("3-2-0001", None), ("1-2-3-4", None),
])
def test_units_are_read_as_building_entrance_floor_and_flat(unit: str, place: Any) -> None:
    got = community.parse_unit(unit)
    assert (None if got is None else (got.building, got.entrance, got.floor, got.flat)) == place


def fill(st: CentralStore, now: float) -> None:
    """Every status once: observation, fever today, a visitor inside, revoked, seen and unseen."""
    st.upsert_passes([
        {"id": "a", "holder": "甲", "unit": "1-1-101", "category": "resident", "observation_until": later(3)},
        {"id": "b", "holder": "乙", "unit": "1-1-102", "category": "resident", "revoked": True},
        {"id": "c", "holder": "丙", "unit": "1-1-201", "category": "renter"},
        {"id": "d", "holder": "丁", "unit": "2-1-101", "category": "returnee"},
    ])
    iso = lambda t: datetime.fromtimestamp(t, TZ).isoformat()  # noqa: E731
    evs = [
        {"id": "e1", "gate": "east", "seq": 1, "type": "decision", "pass": "c", "decision": "allow", "reason": "ok", "lane": "in",
         "direction": "in", "ts": iso(now - 60)},
        {"id": "e0", "gate": "east", "seq": 2, "type": "decision", "pass": "c", "decision": "deny", "reason": "expired",
         "lane": "in", "direction": "in", "ts": iso(now - 3 * 86400)},  # older, arriving later: kept out
        {"id": "e2", "gate": "west", "seq": 1, "type": "decision", "pass": "d", "decision": "allow", "reason": "ok", "lane": "in",
         "direction": "in", "ts": iso(now - 10 * 86400)},
        {"id": "e3", "gate": "west", "seq": 2, "type": "alarm", "kind": "fever", "pass": "d", "ts": iso(now - 30)},
        {"id": "e4", "gate": "west", "seq": 3, "type": "alarm", "kind": "fever", "pass": "a", "ts": iso(now - 2 * 86400)},
        {"id": "e5", "gate": "east", "seq": 3, "type": "registration", "pass": "V-1", "unit": "2-1-101", "holder": "客",
         "valid_until": iso(now + 3600), "ts": iso(now - 600)},
        {"id": "e6", "gate": "east", "seq": 4, "type": "decision", "pass": "V-1", "decision": "allow", "reason": "ok",
         "lane": "in", "direction": "in", "ts": iso(now - 500)},
    ]
    with st.db.tx():
        for ev in evs:
            st.insert_event(ev, now)
        presence_relay.record_many(st.db, evs)
        for ev in evs:
            visitors.record(st.db, ev)
        seen.record_many(st.db, evs[:1])
        seen.record_many(st.db, evs[1:])


def give(st: CentralStore, attributes: dict[str, dict[str, Any]]) -> None:
    """Roster attributes for passes central has (a roster change, as an import makes it)."""
    st.apply([("upsert", pid, wire_pass({**st.get_pass(pid), "attributes": a})) for pid, a in attributes.items()])


def states(st: CentralStore, choice: community.Choice, now: float) -> dict[str, str]:
    m = community.community_map(st, choice, now=now, tz=TZ, midnight=now - 3600)
    return {u.unit: u.state for b in m["buildings"] for u in b.units}


def check_statuses(st: CentralStore) -> None:
    now = time.time()
    fill(st, now)
    assert states(st, community.Choice("observation"), now)["1-1-101"] == "observation"
    assert states(st, community.Choice("revoked"), now) == {"1-1-101": "clear", "1-1-102": "revoked", "1-1-201": "clear",
                                                            "2-1-101": "clear"}
    assert states(st, community.Choice("fever"), now) == {"1-1-101": "clear", "1-1-102": "clear", "1-1-201": "clear",
                                                          "2-1-101": "fever"}  # a's fever was two days ago
    assert states(st, community.Choice("visitor"), now)["2-1-101"] == "visitor"
    assert states(st, community.Choice("unseen", days=7), now) == {"1-1-101": "unseen", "1-1-102": "unseen",
                                                                   "1-1-201": "clear", "2-1-101": "unseen"}
    assert states(st, community.Choice("unseen", days=30), now)["2-1-101"] == "clear"
    got = seen.at_gates(st.db, ["c"])["c"]
    assert [(d["gate"], d["decision"]) for d in got] == [("east", "allow")]  # the later decision, not the late older one
    people = community.unit_people(st, "2-1-101", now=now)
    assert [p["id"] for p in people] == ["d"] and people[0]["at_gates"][0]["gate"] == "west"
    assert [v["holder"] for v in community.unit_visitors(st.db, "2-1-101", now) if v["inside"]] == ["客"]
    assert community.Choice.parse("rule:nope", 3, ("vaccinated",)) == community.Choice("observation", 3)
    assert community.Choice.parse("unseen", "9999") == community.Choice("unseen", 365)


def test_every_status_on_sqlite(tmp_path: Path) -> None:
    st = CentralStore(str(tmp_path / "c.db"))
    try:
        check_statuses(st)
        plan = " ".join(str(r) for r in st.db.all("EXPLAIN QUERY PLAN SELECT id FROM passes WHERE category IN (?,?,?)",
                                                    community.HOUSEHOLDS))
        assert "passes_category_unit" in plan  # the households by index, not every visitor's pass
    finally:
        st.close()


def test_every_status_on_postgresql(postgres_dsn: str) -> None:  # noqa: F811
    """The same SQL on PostgreSQL."""
    st = CentralStore(postgres_dsn)
    try:
        for table in ("passes", "events", "presence_items", "visitors", "console_seen", "console_last_seen", "policies"):
            st.db.execute(f"DELETE FROM {table}")
        check_statuses(st)
        st.store_policy({"version": 1, "policy": {"rules": [RULE]}})
        give(st, {"a": {"vaccine_doses": 2}, "b": {"vaccine_doses": 0}})
        now = time.time()
        m = community.community_map(st, community.Choice("rule", rule="vaccinated"), now=now, tz=TZ, midnight=now - 3600)
        assert [(b.name, b.met, b.concerned, b.board) for b in m["buildings"]] == [("1", 1, 3, "red"), ("2", 0, 0, "na")]
        assert json.loads(st.db.one("SELECT attributes FROM passes WHERE id = 'a'")[0]) == {"vaccine_doses": 2}
    finally:
        st.close()


def test_a_rule_is_judged_once_for_people_alike_unless_it_reads_their_unit(tmp_path: Path) -> None:
    st = CentralStore(str(tmp_path / "c.db"))
    try:
        st.upsert_passes([{"id": f"p{i}", "holder": f"人{i}", "unit": f"{1 + i % 2}-1-101", "category": "resident"} for i in range(6)])
        by_unit = {"name": "north", "require": "pass.unit.startsWith('1-')", "prompt": {"zh": "北", "en": "north"}}
        st.store_policy({"version": 1, "policy": {"rules": [RULE, by_unit]}})
        give(st, {"p0": {"vaccine_doses": 2}})
        assert community.reads_id_or_unit(by_unit) and not community.reads_id_or_unit(RULE)
        assert community.reads_id_or_unit({"require": "pass.id == 'x'"}) and community.reads_id_or_unit({"require": "has(pass)"})
        now = time.time()
        got = community.community_map(st, community.Choice("rule", rule="north"), now=now, tz=TZ, midnight=now)
        assert [(b.name, b.met, b.concerned) for b in got["buildings"]] == [("1", 3, 3), ("2", 0, 3)]
        got = community.community_map(st, community.Choice("rule", rule="vaccinated"), now=now, tz=TZ, midnight=now)
        assert [(b.name, b.met, b.concerned) for b in got["buildings"]] == [("1", 1, 3), ("2", 0, 3)]
    finally:
        st.close()


def test_the_maps_copies_are_erased_with_the_pass_and_purged_with_retention(tmp_path: Path) -> None:
    from sync.central import privacy
    from sync.central.privacy_worker import purge

    st = CentralStore(str(tmp_path / "c.db"))
    try:
        now = time.time()
        fill(st, now)
        give(st, {"c": {"vaccine_doses": 2}})
        got = privacy.export(st, "c")
        assert [s["gate"] for s in got["seen"]] == ["east"] and got["attributes"] == [{"vaccine_doses": 2}]
        privacy.erase(st, "c", "王主任", now=now)
        assert seen.at_gates(st.db, ["c"])["c"] == [] and st.db.all("SELECT attributes FROM passes WHERE id = 'c'") == []
        assert not [r for r in st.db.all("SELECT change FROM changes") if "vaccine_doses" in r[0]]  # nor in the history
        assert "c" not in seen.last_seen(st.db, community.HOUSEHOLDS) and "d" in seen.last_seen(st.db, community.HOUSEHOLDS)
        assert [d["gate"] for d in seen.at_gates(st.db, ["d"])["d"]] == ["west"]  # ten days ago
        assert purge(st, days=7, now=now)["seen"] == 1  # d at west ten days ago; V-1 today stays
        assert seen.at_gates(st.db, ["d"])["d"] == [] and seen.at_gates(st.db, ["V-1"])["V-1"]
        assert "d" not in seen.last_seen(st.db, community.HOUSEHOLDS)
    finally:
        st.close()
