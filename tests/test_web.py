"""The guard's page in a real browser (Debian's headless Chromium, driven by
Playwright) against real lanes with simulated hardware on a drill clock.

Each screen state is saved as a screenshot in tests/screenshots/ (1024x600, the
kiosk's size)."""
from __future__ import annotations

import json
import shutil
import textwrap
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest

from drivers.qr import make_decoder
from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from gate.core.tokens import new_keypair
from gate.web import GuardPage
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
]
SHOTS = ROOT / "tests" / "screenshots"
VIEWPORT = {"width": 1024, "height": 600}

DRILL = """
name: guard page
start: "2026-11-22T08:00:00+08:00"
passes:
  - {id: r1, holder: 王芳, unit: 3-2-501, category: resident, phone_last4: "1234", card: "1234567"}
  - {id: n1, holder: 李强, unit: 5-1-302, category: renter, phone_last4: "8841"}
  - {id: h1, holder: 赵敏, unit: 2-3-1101, category: returnee, phone_last4: "5520"}
  - {id: c1, holder: 外卖骑手, unit: "-", category: courier}
"""


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install chromium (the guard page tests drive a real browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Env:
    """A rehearsal (lanes on a drill clock) with the guard page served on a free port."""

    def __init__(self, r: Rehearsal, page: GuardPage) -> None:
        self.r = r
        self.gp = page
        self.t = 0.0
        self.app = r.app

    def step(self, **kw: Any) -> None:
        """One stimulus, 1 s of drill time after the previous one; returns when the lane has decided."""
        self.t += kw.pop("dt", 1.0)
        self.r.step(Step(at=self.t, **kw))

    def settle(self) -> None:
        """Fire due lane timers and let the page's worker catch up with every record."""
        self.app.join()
        n = len(self.r.records)
        assert self.gp.live.wait_handled(n, 10), "the page's worker fell behind"

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        store = self.app.open_store()
        try:
            return [e for e in store.events() if type_ is None or e["type"] == type_]
        finally:
            store.close()

    def decisions(self) -> list[dict[str, Any]]:
        return [line for line in self.r.lines if line["type"] == "decision"]


@contextmanager
def guard_env(tmp_path: Path, config: dict[str, Any] | None = None, drill: str = DRILL, signing: bool = True) -> Iterator[Env]:
    d = drill_file.parse(textwrap.dedent(drill))
    conf = dict(config or {})
    if signing:
        key, _ = new_keypair(tmp_path / "keys", "gate")
        conf = {**conf, "keys": {**conf.get("keys", {}), "signing": str(key)}}
    d = d.model_copy(update={"config": {**d.config, **conf}})
    with Rehearsal(d) as r:
        page = GuardPage(r.app, listen="127.0.0.1:0", monitor_every_s=0.5)
        page.start()
        try:
            yield Env(r, page)
        finally:
            page.stop()


@contextmanager
def open_page(browser: Any, env: Env, lang: str = "zh-CN", refusals: bool = False) -> Iterator[Any]:
    """A kiosk-sized page on the guard page; fails the test on a script error, on a
    request to anywhere else, and (unless `refusals`) on any failed request."""
    ctx = browser.new_context(viewport=VIEWPORT, locale=lang, device_scale_factor=1)
    page = ctx.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    origin = env.gp.url.rstrip("/")
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not (refusals and m.text.startswith("Failed to load resource")) else None)
    page.on("request", lambda req: foreign.append(req.url) if not (req.url.startswith(origin) or req.url.startswith("data:")) else None)
    page.goto(env.gp.url)
    page.wait_for_function("() => window.gateState && window.gateState.connected && window.gateState.health !== null", timeout=10000)
    try:
        yield page
    finally:
        ctx.close()
    assert not foreign, f"the page loaded something from elsewhere: {foreign}"
    assert not errors, f"the page reported errors: {errors}"


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.wait_for_timeout(150)  # let the last paint land
    page.screenshot(path=str(path))
    return path


def tile_text(page: Any) -> str:
    return page.inner_text("#tile")


def wait_text(page: Any, selector: str, text: str, timeout: float = 10_000) -> None:
    """Wait until the element shows the text (a busy CI machine can take seconds; how
    soon it shows is measured in tests/test_web_load.py)."""
    page.wait_for_function(
        "([sel, text]) => { const el = document.querySelector(sel); return el && el.innerText.includes(text); }",
        arg=[selector, text], timeout=timeout,
    )


# ---------------------------------------------------------------- live decisions


def test_decisions_appear_live_within_a_second(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path) as env, open_page(browser, env) as page:
        assert "等待通行" in tile_text(page)
        shot(page, "idle")

        env.step(lane="in", qr="r1")
        env.step(lane="in", temperature=36.4, dt=0.5)
        t0 = time.monotonic()
        wait_text(page, "#tile", "王芳")  # pushed (how soon: tests/test_web_load.py)
        latency = time.monotonic() - t0
        text = tile_text(page)
        for want in ("常住", "王芳", "3-2-501", "36.4", "通过", "Allowed", "正常"):
            assert want in text, (want, text)
        bg = page.eval_on_selector("#tile", "el => getComputedStyle(el).backgroundColor")
        assert bg == "rgb(46, 125, 50)", bg  # the resident category's green
        shot(page, "allowed")

        env.step(lane="in", qr="c1", dt=8)
        wait_text(page, "#tile", "禁止通行")
        text = tile_text(page)
        assert "外卖骑手" in text and "此类人员不能进入" in text and "may not enter" in text
        assert page.eval_on_selector("#tile", "el => getComputedStyle(el).backgroundColor") == "rgb(239, 108, 0)"
        shot(page, "denied")

        rows = page.locator("#recent li")
        assert rows.count() == 2
        assert "外卖骑手" in rows.nth(0).inner_text() and "王芳" in rows.nth(1).inner_text()
        assert latency < 1.0


def test_the_list_keeps_the_last_20(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path) as env, open_page(browser, env) as page:
        for _ in range(23):
            env.step(lane="out", exit_button=True, dt=6)
        env.settle()
        page.wait_for_function("() => document.querySelectorAll('#recent li').length === 20", timeout=10_000)
        assert "出门按钮" in tile_text(page)


# ---------------------------------------------------------------- needs you


def test_a_challenge_is_confirmed_and_rejected_and_the_lane_acts(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path, {"policy": {"challenge_rate": 1.0}}) as env, open_page(browser, env) as page:
        env.step(lane="in", qr="r1")
        env.step(lane="in", temperature=36.5, dt=0.5)
        page.wait_for_selector("#btn-confirm", timeout=10_000)
        card = page.inner_text("#needs-card")
        for want in ("请核对本人", "王芳", "3-2-501", "***-****-1234", "抽查"):
            assert want in card, (want, card)
        shot(page, "challenge")
        challenge = env.decisions()[-1]
        assert challenge["decision"] == "challenge" and challenge["reason"] == "holder_check"

        page.click("#btn-confirm")
        page.wait_for_selector("#needs", state="hidden", timeout=10_000)
        env.settle()
        allowed = env.decisions()[-1]
        assert (allowed["decision"], allowed["reason"], allowed["pass"]) == ("allow", "guard_confirmed", "r1")
        assert any(l["type"] == "door" and l["action"] == "unlock" for l in env.r.lines)
        stored = env.events("decision")[-1]
        assert stored["who"] == "guard" and stored["challenge_id"]
        assert "保安已确认" in tile_text(page)

        # r1 is inside now: presenting the pass again is a passback challenge (with its alarm).
        env.step(lane="in", qr="r1", dt=10)
        env.step(lane="in", temperature=36.5, dt=0.5)
        page.wait_for_selector("#btn-reject", timeout=10_000)
        assert "已在小区内" in page.inner_text("#needs-card")
        alarm = [e for e in env.events("alarm") if e["kind"] == "passback"][-1]
        unlocks = sum(1 for l in env.r.lines if l["type"] == "door" and l["action"] == "unlock")
        page.click("#btn-reject")
        page.wait_for_selector("#needs", state="hidden", timeout=10_000)
        env.settle()
        refused = env.decisions()[-1]
        assert (refused["decision"], refused["reason"]) == ("deny", "guard_rejected")
        assert sum(1 for l in env.r.lines if l["type"] == "door" and l["action"] == "unlock") == unlocks
        acks = env.events("ack")
        assert [a["alarm_id"] for a in acks] == [alarm["id"]]  # answering the check acknowledged its alarm
        assert "保安已拒绝" in tile_text(page)


def test_an_alarm_sounds_until_acknowledged_and_the_ack_is_an_event(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path) as env, open_page(browser, env) as page:
        env.step(lane="in", qr="n1")
        env.step(lane="in", temperature=37.6, dt=0.5)
        wait_text(page, "#tile", "请复测体温")
        env.step(lane="in", temperature=37.8, dt=3)
        page.wait_for_selector("#btn-ack", timeout=10_000)
        card = page.inner_text("#needs-card")
        assert "发热报警" in card and "37.8" in card and "李强" in card
        page.wait_for_function("() => window.gateTone.active && window.gateTone.beeps > 0", timeout=2000)
        shot(page, "alarm")
        alarm = [e for e in env.events("alarm") if e["kind"] == "fever"][-1]

        page.click("#btn-ack")
        page.wait_for_selector("#needs", state="hidden", timeout=10_000)
        env.settle()
        assert not page.evaluate("window.gateTone.active")
        acks = env.events("ack")
        assert len(acks) == 1 and acks[0]["alarm_id"] == alarm["id"] and acks[0]["kind"] == "fever"
        assert acks[0]["who"] == "guard"
        assert "禁止通行" in tile_text(page) and "发热" in tile_text(page)

        # A forced door, too: it stays until acknowledged, and survives a reload of the page.
        env.step(lane="in", door="open", dt=20)
        page.wait_for_selector("#btn-ack", timeout=10_000)
        assert "门被强行打开" in page.inner_text("#needs-card")
        page.reload()
        page.wait_for_selector("#btn-ack", timeout=10_000)
        page.click("#btn-ack")
        page.wait_for_selector("#needs", state="hidden", timeout=10_000)
        env.settle()
        assert [a["kind"] for a in env.events("ack")] == ["fever", "door_forced"]


def test_someone_lingering_at_night_wakes_the_guard(browser: Any, tmp_path: Path) -> None:
    # The seed's infrared reminder is there above all for the night guard: the page
    # sounds it as an alarm to acknowledge, not only a voice to the street.
    night = DRILL.replace("2026-11-22T08:00:00+08:00", "2026-11-22T23:30:00+08:00")
    with guard_env(tmp_path, drill=night) as env, open_page(browser, env) as page:
        env.step(lane="in", presence=True)
        env.r.advance(env.t + 6)
        env.settle()
        page.wait_for_selector("#btn-ack", timeout=10_000)
        assert "夜间有人未扫码" in page.inner_text("#needs-card")
        page.wait_for_function("() => window.gateTone.active && window.gateTone.beeps > 0", timeout=2000)
        page.click("#btn-ack")
        page.wait_for_selector("#needs", state="hidden", timeout=10_000)
        env.settle()
        assert [(a["kind"], a["who"]) for a in env.events("ack")] == [("night_presence", "guard")]


def test_manual_open_needs_a_reason_and_is_logged_as_an_override(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path) as env, open_page(browser, env) as page:
        page.click("button[data-view=open]")
        reason = env.app.config.guard.manual_open_reasons[1]
        page.click(f"#open-reasons button[data-reason='{reason}']")
        page.wait_for_selector("#open-done:not([hidden])", timeout=10_000)
        env.settle()
        overrides = env.events("override")
        assert len(overrides) == 1
        assert (overrides[0]["lane"], overrides[0]["reason"], overrides[0]["who"]) == ("in", reason, "guard")
        assert any(l["type"] == "door" and l["action"] == "unlock" for l in env.r.lines)
        page.click("button[data-view=live]")
        wait_text(page, "#tile", "已开门")


def test_exit_button_openings_say_so_and_lanes_show_their_display_names(browser: Any, tmp_path: Path) -> None:
    lanes = [
        {"name": "in", "direction": "in", "label": "东门 进", "camera": {"driver": "sim"}, "thermometer": {"driver": "sim"},
         "relay": {"driver": "sim", "pin": 22}},
        {"name": "out", "direction": "out", "label": "东门 出", "camera": {"driver": "sim"},
         "relay": {"driver": "sim", "pin": 23}, "exit_button": {"driver": "sim", "pin": 24, "debounce_ms": 0}},
    ]
    with guard_env(tmp_path, {"lanes": lanes}) as env, open_page(browser, env) as page:
        env.step(lane="out", exit_button=True)
        wait_text(page, "#tile", "出门按钮开门")
        assert "东门 出" in tile_text(page)
        assert "无有效通行证" not in tile_text(page) and "无有效通行证" not in page.inner_text("#recent")


def test_the_guard_locks_a_lane_with_a_reason_and_it_is_an_event(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path) as env, open_page(browser, env) as page:
        page.click("button[data-view=open]")
        page.click("#mode-choices button[data-mode=locked]")
        page.click("#mode-reasons button[data-reason='封控 lockdown']")
        page.wait_for_selector("#open-done:not([hidden])", timeout=10_000)
        env.settle()
        assert env.app.lanes["in"].door_mode == "locked"
        modes = env.events("mode")
        assert [(m["lane"], m["mode"], m["who"], m["why"]) for m in modes] == [("in", "locked", "guard", "封控 lockdown")]
        # Locked: a good pass becomes a check for the guard, who opens.
        env.step(lane="in", qr="r1")
        env.step(lane="in", temperature=36.4, dt=0.5)
        assert (env.decisions()[-1]["decision"], env.decisions()[-1]["reason"]) == ("challenge", "door_locked")


# ---------------------------------------------------------------- visitors


def decode_qr_png(png: bytes) -> str:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    texts = make_decoder("auto").decode(img)
    assert len(texts) == 1, texts
    return texts[0]


def test_a_visitor_registered_on_the_page_enters_with_the_qr_it_showed(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path) as env, open_page(browser, env) as page:
        page.click("button[data-view=visitor]")
        page.fill("input[name=name]", "刘洋")
        # The ID's last four by the on-screen keypad, as the guard would.
        page.click("input[name=id_last4]")
        for key in "123X":
            page.click(f"#keypad-keys button[data-k='{key}']")
        page.click("#keypad-keys button[data-k=ok]")
        assert page.input_value("input[name=id_last4]") == "123X"
        page.fill("input[name=phone_last4]", "3300")
        page.fill("input[name=unit]", "3-2-501")
        page.click("#visitor-form button[type=submit]")
        page.wait_for_selector("#visitor-result:not([hidden])", timeout=10_000)
        page.wait_for_function("() => document.getElementById('visitor-qr').complete && document.getElementById('visitor-qr').naturalWidth > 0")
        assert "刘洋" in page.inner_text("#visitor-result")
        assert "2026-11-22 23:59" in page.inner_text("#visitor-valid")
        shot(page, "visitor")

        # What the visitor photographs: the QR as the screen shows it.
        text = decode_qr_png(page.locator("#visitor-qr").screenshot())
        pass_id = page.get_attribute("#visitor-qr", "data-pass")
        reg = env.events("registration")
        assert len(reg) == 1 and reg[0]["pass"] == pass_id and reg[0]["holder"] == "刘洋"
        assert (reg[0]["unit"], reg[0]["id_last4"], reg[0]["phone_last4"]) == ("3-2-501", "123X", "3300")
        store = env.app.open_store()
        try:
            assert store.conn.execute("SELECT count(*) FROM outbox WHERE event_id = ?", (reg[0]["id"],)).fetchone()[0] == 1
            p = store.get_pass(pass_id)
            assert p is not None and p.category == "visitor" and p.phone_last4 == "3300"
        finally:
            store.close()

        env.step(lane="in", qr_text=text, dt=5)
        env.step(lane="in", temperature=36.3, dt=0.5)
        d = env.decisions()[-1]
        assert (d["decision"], d["reason"], d["pass"], d["category"]) == ("allow", "ok", pass_id, "visitor")
        page.click("button[data-view=live]")
        wait_text(page, "#tile", "刘洋")
        assert "访客" in tile_text(page)
        assert page.eval_on_selector("#tile", "el => getComputedStyle(el).backgroundColor") == "rgb(236, 64, 122)"


def test_visitor_form_says_what_is_wrong_and_without_a_key_says_so(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path) as env, open_page(browser, env, refusals=True) as page:
        page.click("button[data-view=visitor]")
        page.fill("input[name=name]", "刘洋")
        page.fill("input[name=id_last4]", "12")
        page.fill("input[name=phone_last4]", "3300")
        page.fill("input[name=unit]", "3-2-501")
        page.click("#visitor-form button[type=submit]")
        page.wait_for_selector("#visitor-error:not([hidden])", timeout=10_000)
        assert "身份证后4位" in page.inner_text("#visitor-error")
        assert "bad" in (page.get_attribute("input[name=id_last4]", "class") or "")
        assert env.events("registration") == []

    with guard_env(tmp_path / "nokey", signing=False) as env, open_page(browser, env) as page:
        page.click("button[data-view=visitor]")
        assert "没有签名密钥" in page.inner_text("#visitor-nokey")
        assert page.is_disabled("#visitor-form button[type=submit]")


# ---------------------------------------------------------------- health, today, search


def test_health_and_the_stale_data_banner(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path, {"guard": {"stale_after_h": 24}}) as env, open_page(browser, env) as page:
        assert page.is_hidden("#stale-banner")
        page.click("button[data-view=health]")
        detail = page.inner_text("#health-detail")
        assert "未配置" in detail  # upstream: no sync in this test
        assert "未知" in detail  # pass table age: nobody has written passes_synced_at
        assert "扫码摄像头" in detail and "测温仪" in detail
        store = env.app.open_store()
        try:
            old = env.app.clock.now().timestamp() - 30 * 3600
            store.set_meta("passes_synced_at", str(old))
            store.set_meta("policy_version", "7")
        finally:
            store.close()
        env.gp.monitor.refresh_now()
        page.wait_for_selector("#stale-banner:not([hidden])", timeout=10_000)
        assert "数据过期" in page.inner_text("#stale-banner")
        wait_text(page, "#health-detail", "30 小时前", timeout=10_000)
        assert "7" in page.inner_text("#health-detail")
        shot(page, "health")
        page.click("button[data-view=live]")
        shot(page, "stale")


def test_today_counts_and_search(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path) as env, open_page(browser, env) as page:
        env.step(lane="in", card="1234567")
        env.step(lane="in", temperature=36.5, dt=0.5)
        env.step(lane="in", qr="c1", dt=8)
        env.step(lane="in", card="999000", dt=8)
        env.step(lane="out", exit_button=True, dt=8)
        env.settle()
        env.gp.monitor.refresh_now()
        page.click("button[data-view=today]")
        page.wait_for_function("() => window.gateState.today && window.gateState.today.events >= 4", timeout=10_000)
        wait_text(page, "#today-totals", "通过")
        wait_text(page, "#today-allowed", "常住")
        allowed = page.inner_text("#today-allowed")
        denied = page.inner_text("#today-denied")
        assert "常住" in allowed and "1" in allowed
        assert "此类人员不能进入" in denied and "未登记的门卡" in denied
        bars = page.locator("#today-chart .bar")
        assert bars.count() == 24
        assert page.get_attribute("#today-chart .bar:nth-child(9)", "title") == "8:00 4"
        shot(page, "today")

        page.click("button[data-view=search]")
        page.fill("#search-q", "3-2-501")
        page.click("#search-form button[type=submit]")
        page.wait_for_selector("table.results", timeout=10_000)
        rows = page.locator("table.results tr")
        assert rows.count() == 1 and "王芳" in rows.nth(0).inner_text() and "1234567" in rows.nth(0).inner_text()
        page.fill("#search-q", "999000")
        page.click("#search-form button[type=submit]")
        wait_text(page, "#search-results", "未登记的门卡", timeout=10_000)
        page.fill("#search-q", "外卖")
        page.click("#search-form button[type=submit]")
        wait_text(page, "#search-results", "外卖骑手", timeout=10_000)
        page.fill("#search-q", "nobody")
        page.click("#search-form button[type=submit]")
        wait_text(page, "#search-results", "没有找到", timeout=10_000)


def test_english_by_config(browser: Any, tmp_path: Path) -> None:
    with guard_env(tmp_path, {"guard": {"language": "en"}}) as env, open_page(browser, env, lang="en-GB") as page:
        env.step(lane="in", qr="r1")
        env.step(lane="in", temperature=36.4, dt=0.5)
        wait_text(page, "#tile", "Allowed")
        assert page.inner_text("nav#tabs").startswith("Live")
        assert page.evaluate("document.documentElement.lang") == "en"
        shot(page, "allowed-en")


# ---------------------------------------------------------------- protection


def test_actions_need_the_pin_when_one_is_set(browser: Any, tmp_path: Path) -> None:
    pin = tmp_path / "pin"
    pin.write_text("2468\n")
    with guard_env(tmp_path, {"guard": {"pin_file": str(pin)}, "policy": {"challenge_rate": 1.0}}) as env, \
            open_page(browser, env, refusals=True) as page:
        env.step(lane="in", qr="r1")
        env.step(lane="in", temperature=36.5, dt=0.5)
        page.wait_for_selector("#btn-confirm", timeout=10_000)
        page.click("#btn-confirm")
        page.wait_for_selector("#pin:not([hidden])", timeout=2000)
        for k in "1111":
            page.click(f"#pin-keys button[data-k='{k}']")
        page.click("#pin-keys button[data-k=ok]")
        page.wait_for_selector("#pin-error:not([hidden])", timeout=2000)
        env.settle()
        assert env.decisions()[-1]["decision"] == "challenge"  # nothing happened on a wrong PIN
        shot(page, "pin")
        for k in "2468":
            page.click(f"#pin-keys button[data-k='{k}']")
        page.click("#pin-keys button[data-k=ok]")
        page.wait_for_selector("#needs", state="hidden", timeout=10_000)
        env.settle()
        assert env.decisions()[-1]["reason"] == "guard_confirmed"
        # Unlocked for the shift: the next action needs no PIN.
        page.click("button[data-view=open]")
        page.click("#open-reasons button >> nth=0")
        page.wait_for_selector("#open-done:not([hidden])", timeout=10_000)
        assert page.is_hidden("#pin")


def test_actions_carry_the_csrf_token(tmp_path: Path) -> None:
    with guard_env(tmp_path) as env:
        client = env.gp.flask.test_client()
        page_html = client.get("/").get_data(as_text=True)
        alarm_body = {"lane": "in", "reason": env.app.config.guard.manual_open_reasons[0]}
        assert client.post("/api/open", json=alarm_body).status_code == 403
        assert client.post("/api/open", json=alarm_body, headers={"X-CSRF-Token": "forged"}).status_code == 403
        token = page_html.split('name="csrf-token" content="')[1].split('"')[0]
        bad_origin = client.post("/api/open", json=alarm_body, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"})
        assert bad_origin.status_code == 403
        ok = client.post("/api/open", json=alarm_body, headers={"X-CSRF-Token": token})
        assert ok.status_code == 202
        odd = client.post("/api/open", json={"lane": "in", "reason": "because"}, headers={"X-CSRF-Token": token})
        assert odd.status_code == 400
        env.settle()
        assert len(env.events("override")) == 1
        assert "default-src 'self'" in client.get("/").headers["Content-Security-Policy"]


def test_serving_beyond_localhost_needs_a_password(tmp_path: Path) -> None:
    from gate.web import GuardPageError

    with guard_env(tmp_path) as env:
        with pytest.raises(GuardPageError, match="password_file"):
            GuardPage(env.app, listen="0.0.0.0:0")

    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    with guard_env(tmp_path / "b", {"guard": {"password_file": str(pw)}}) as env:
        page = GuardPage(env.app, listen="0.0.0.0:0")  # allowed now; not started
        client = page.flask.test_client()
        remote = {"REMOTE_ADDR": "192.0.2.7"}
        r = client.get("/", environ_base=remote)
        assert r.status_code == 302 and "/login" in r.headers["Location"]
        assert client.get("/events", environ_base=remote).status_code == 401
        assert client.get("/api/search?q=3", environ_base=remote).status_code == 401
        login = client.get("/login", environ_base=remote)
        token = login.get_data(as_text=True).split('name="csrf" value="')[1].split('"')[0]
        wrong = client.post("/login", data={"csrf": token, "password": "nope"}, environ_base=remote)
        assert "密码不对" in wrong.get_data(as_text=True)
        ok = client.post("/login", data={"csrf": token, "password": "correct horse"}, environ_base=remote)
        assert ok.status_code == 302
        assert client.get("/", environ_base=remote).status_code == 200


def test_the_event_stream_is_pushed_not_polled(tmp_path: Path) -> None:
    """A raw SSE client: the snapshot first, then a decision as it happens."""
    import http.client

    with guard_env(tmp_path) as env:
        u = urllib.parse.urlparse(env.gp.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.request("GET", "/events")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type", "").startswith("text/event-stream")

        def next_event() -> tuple[str, Any]:
            name, data = "", ""
            while True:
                line = resp.fp.readline().decode("utf-8").rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and name:
                    return name, json.loads(data)

        name, snap = next_event()
        assert name == "snapshot" and snap["recent"] == []
        env.step(lane="out", exit_button=True)
        t0 = time.monotonic()
        while True:
            name, data = next_event()
            if name == "decision":
                break
        assert time.monotonic() - t0 < 1.0
        assert data["reason"] == "exit_button" and data["lane"] == "out"
        conn.close()


# ---------------------------------------------------------------- the daemon


def test_gate_run_demo_serves_the_page_with_live_traffic(browser: Any, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.helpers import demo_config
    from tests.mqtt_broker import free_port

    port = free_port()
    cfg = demo_config(tmp_path, port)
    proc = subprocess.Popen([sys.executable, "-m", "gate.cli.main", "run", "-c", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("guard page: "):
                url = line.split(": ", 1)[1].strip()
        assert url == f"http://127.0.0.1:{port}/", url
        ctx = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
        page = ctx.new_page()
        page.goto(url)
        # The scripted people arrive: a decision reaches the tile without a reload.
        page.wait_for_function("() => window.gateState.recent.length > 0", timeout=30000)
        page.wait_for_function("() => !document.getElementById('tile').classList.contains('idle')", timeout=5000)
        # The demo signs visitor passes with its throwaway key (no keys.signing in demo.toml).
        page.click("button[data-view=visitor]")
        assert page.is_hidden("#visitor-nokey")
        page.fill("input[name=name]", "刘洋")
        page.fill("input[name=id_last4]", "1234")
        page.fill("input[name=phone_last4]", "3300")
        page.fill("input[name=unit]", "3-2-501")
        page.click("#visitor-form button[type=submit]")
        page.wait_for_selector("#visitor-result:not([hidden])", timeout=5000)
        token = decode_qr_png(page.locator("#visitor-qr").screenshot())
        assert token.startswith("GP1.")
        page.click("button[data-view=live]")
        page.wait_for_function("() => window.gateState.recent.length >= 3", timeout=30000)
        shot(page, "demo")
        ctx.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    err = proc.stderr.read() if proc.stderr else ""
    assert rc == 0, err
