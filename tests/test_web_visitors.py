"""The guard page's visitor form offers the visit's lengths (2 h, half a day, today),
starts on [visitors] default_length, and the pass lasts what the guard chose; the host
unit is required. In Chromium, as tests/test_web.py does."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.test_web import browser, guard_env, open_page  # noqa: F401 - the browser fixture
from tests.test_web_guard import csrf_of

__all__ = ["browser"]


def lengths(page: Any) -> list[tuple[str, bool, str]]:
    return page.eval_on_selector_all(
        "#visitor-length input[name=length]",
        "els => els.map(e => [e.value, e.checked, e.parentElement.innerText.replace(/\\s+/g, ' ').trim()])")


def test_the_visitor_form_offers_the_lengths_and_starts_on_the_configured_one(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    with guard_env(tmp_path, {"visitors": {"default_length": "2h"}}) as env, open_page(browser, env) as page:
        page.click("button[data-view=visitor]")
        offered = lengths(page)
        assert [(v, c) for v, c, _ in offered] == [("2h", True), ("half_day", False), ("today", False)]
        assert "2小时" in offered[0][2] and "半天" in offered[1][2] and "今天" in offered[2][2]
        assert "访问时长" in page.inner_text("#visitor-length legend")
        assert page.get_attribute("input[name=unit]", "required") is not None  # the host unit is required

        page.fill("input[name=name]", "刘洋")
        page.fill("input[name=id_last4]", "1234")
        page.fill("input[name=phone_last4]", "3300")
        page.fill("input[name=unit]", "3-2-501")
        page.click("#visitor-length label:has(input[value=half_day])")  # the guard taps "half a day"
        page.click("#visitor-form button[type=submit]")
        page.wait_for_selector("#visitor-result:not([hidden])", timeout=3000)
        assert "2026-11-22 12:00" in page.inner_text("#visitor-valid")  # 08:00 + 4 h
        [reg] = env.events("registration")
        assert (reg["length"], reg["unit"]) == ("half_day", "3-2-501")
        assert reg["valid_until"].startswith("2026-11-22T12:00:00")

        # The next visitor starts on the default again.
        page.click("#visitor-again")
        assert [(v, c) for v, c, _ in lengths(page)] == [("2h", True), ("half_day", False), ("today", False)]
        page.fill("input[name=name]", "王五")
        page.fill("input[name=id_last4]", "4321")
        page.fill("input[name=phone_last4]", "1100")
        page.fill("input[name=unit]", "7-1-101")
        page.click("#visitor-form button[type=submit]")
        page.wait_for_selector("#visitor-result:not([hidden])", timeout=3000)
        assert "2026-11-22 10:00" in page.inner_text("#visitor-valid")  # 2 h


def test_a_length_the_page_does_not_offer_is_refused(tmp_path: Path) -> None:
    with guard_env(tmp_path) as env:
        client = env.gp.flask.test_client()
        token = csrf_of(client)

        def post(**data: str) -> Any:
            return client.post("/api/visitor", json=data, headers={"X-CSRF-Token": token})

        r = post(name="刘洋", id_last4="1234", phone_last4="3300", unit="3-2-501", length="3d")
        assert r.status_code == 400 and r.get_json()["error"] == "length_invalid" and r.get_json()["field"] == "length"
        r = post(name="刘洋", id_last4="1234", phone_last4="3300", unit="")
        assert r.status_code == 400 and r.get_json()["error"] == "unit_invalid"
        assert env.events("registration") == []
        # Without a length: the configured default (today).
        r = post(name="刘洋", id_last4="1234", phone_last4="3300", unit="3-2-501")
        assert r.status_code == 200 and r.get_json()["length"] == "today"
        assert r.get_json()["valid_until_local"] == "2026-11-22 23:59"


def test_a_visitor_inside_after_the_visit_is_an_overstay_on_the_guard_page(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    with guard_env(tmp_path) as env, open_page(browser, env) as page:
        vp = env.gp.visitors.register("刘洋", "1234", "3300", "3-2-501", length="2h")
        env.r.tokens[vp.pass_id] = vp.token
        env.step(lane="in", qr=vp.pass_id)
        env.step(lane="in", temperature=36.4, dt=0.5)
        assert env.decisions()[-1]["decision"] == "allow"
        assert env.app.check_overstays() == 0
        env.r.advance(2 * 3600 + 60)
        assert env.app.check_overstays() == 1
        page.wait_for_selector("#btn-ack", timeout=3000)
        card = page.inner_text("#needs-card")
        assert "访客超时未离开" in card and "请联系被访单元" in card  # the alarm's words and advice (words.toml)
        assert "3-2-501" in card and "刘洋" in card
        page.click("#btn-ack")
        page.wait_for_selector("#needs", state="hidden", timeout=3000)
        env.settle()
        [ack] = env.events("ack")
        assert ack["kind"] == "overstay"
        assert env.app.check_overstays() == 0  # once per visit, acknowledged or not
