"""The guard's page on the screens a Pi has (issue 20), in headless Chromium.

Each screen state is brought about as a guard would meet it (real lanes on a drill
clock) and then looked at on every screen size: the state's primary buttons (and
what the guard must read to act: the name and phone of a check) must lie wholly
inside the screen, uncovered, unclipped and not cut short (``document.elementFromPoint`` at the
centre and just inside each edge), the tabs must be reachable, touch targets on the
official 7-inch display (800x480, 0.1926 mm a pixel) at least 9 mm, and the name
and verdict at least as large, relative to the screen, as at 1024x600. The key
states are saved per size in tests/screenshots/screen-WxH-STATE.png (live, challenge,
challenge-stale, alarm, door-mode, handover).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from tests.test_web import SHOTS, browser, guard_env, open_page  # noqa: F401  (browser is a fixture)

SIZES = [(800, 480), (1024, 600), (1280, 720), (1920, 1080), (720, 1280)]
MM_PER_PX_7IN = 154.08 / 800  # the official 7-inch Touch Display: 154.08 mm over 800 px
MIN_TARGET_PX = 9.0 / MM_PER_PX_7IN  # 46.7 px
TABS = "nav#tabs .tab"
# Name and verdict at 1024x600 (56 px and 58 px over 600 px): no smaller relative to any screen.
READABLE = {"#tile .who": 56 / 600, "#tile .verdict .word": 58 / 600}
SHOTS_OF = {"live": "live", "challenge": "challenge", "alarm": "alarm", "challenge under the stale-data banner": "challenge-stale",
            "door mode": "door-mode", "handover": "handover"}

CHECK = """
([selectors, minTarget]) => {
  const W = innerWidth, H = innerHeight, bad = [];
  const name = e => e.id ? "#" + e.id : e.tagName.toLowerCase() + (e.className ? "." + String(e.className).split(" ").join(".") : "");
  const visible = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden";
  // What a finger touches at the centre and (for the whole of it to be seen) just inside
  // the middle of each edge (not the corners: they may be rounded off).
  const onTop = (e, edges) => {
    const r = e.getBoundingClientRect(), dx = Math.min(3, r.width / 4), dy = Math.min(3, r.height / 4);
    const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    const points = [[cx, cy]];
    if (edges) points.push([cx, r.top + dy], [cx, r.bottom - dy], [r.left + dx, cy], [r.right - dx, cy]);
    for (const [x, y] of points) {
      const hit = document.elementFromPoint(x, y);
      if (!(hit !== null && (hit === e || e.contains(hit)))) return hit ? name(hit) : "nothing";
    }
    return null;
  };
  for (const sel of selectors) {
    const els = [...document.querySelectorAll(sel)].filter(visible);
    if (!els.length) { bad.push(`${sel}: not shown`); continue; }
    for (const e of els) {
      const r = e.getBoundingClientRect();
      if (r.left < -0.5 || r.top < -0.5 || r.right > W + 0.5 || r.bottom > H + 0.5) {
        bad.push(`${sel} (${name(e)}): outside the screen at ${Math.round(r.left)},${Math.round(r.top)}-${Math.round(r.right)},${Math.round(r.bottom)}`);
        continue;
      }
      const cover = onTop(e, true);
      if (cover) bad.push(`${sel} (${name(e)}): covered by ${cover}`);
      if (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1) bad.push(`${sel} (${name(e)}): its text is cut off`);
    }
  }
  if (document.documentElement.scrollWidth > W + 1) bad.push(`the page is wider than the screen (${document.documentElement.scrollWidth} px)`);
  if (minTarget) {
    for (const e of document.querySelectorAll("button, input")) {
      if (!visible(e) || onTop(e, false)) continue;
      const r = e.getBoundingClientRect();
      if (r.bottom <= 0 || r.top >= H || r.right <= 0 || r.left >= W) continue;
      if (Math.min(r.width, r.height) < minTarget) bad.push(`touch target ${name(e)} is ${Math.round(r.width)}x${Math.round(r.height)} px`);
    }
  }
  return bad;
}
"""


def settle(page: Any) -> None:
    """Two animation frames: the layout for the new size has been made and painted."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def save_small(page: Any, path: Path) -> None:
    """A screenshot as a 64-colour PNG: the page is flat colours, a palette keeps the file small."""
    from PIL import Image

    img = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    img.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


class Survey:
    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []

    def look(self, state: str, primary: list[str], *, tabs: bool = True, readable: bool = False,
             scroll_to: str | None = None) -> None:
        page = self.page
        for w, h in SIZES:
            page.set_viewport_size({"width": w, "height": h})
            settle(page)
            if scroll_to:  # below the fold in a scrolling view: the guard scrolls to it
                page.eval_on_selector(scroll_to, "e => e.scrollIntoView({block: 'center'})")
                settle(page)
            sel = primary + ([TABS] if tabs else [])
            target = MIN_TARGET_PX if (w, h) == (800, 480) else 0
            for p in page.evaluate(CHECK, [sel, target]):
                self.problems.append(f"{state} at {w}x{h}: {p}")
            if readable:
                for s, share in READABLE.items():
                    px = page.eval_on_selector(s, "e => parseFloat(getComputedStyle(e).fontSize)")
                    if px < share * min(w, h) * 0.97:
                        self.problems.append(f"{state} at {w}x{h}: {s} is {px:.0f} px, under {share * min(w, h):.0f} px")
            if state in SHOTS_OF:
                SHOTS.mkdir(parents=True, exist_ok=True)
                save_small(page, SHOTS / f"screen-{w}x{h}-{SHOTS_OF[state]}.png")
        page.set_viewport_size({"width": 1024, "height": 600})
        settle(page)


def test_every_state_fits_every_pi_screen(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    pin = tmp_path / "pin"
    pin.write_text("2468\n")
    pin.chmod(0o600)
    from gate.desk.guards import add

    add(tmp_path / "guards.json", "王师傅", "1357")
    with guard_env(tmp_path, {"guard": {"pin_file": str(pin), "guards_file": str(tmp_path / "guards.json")}}) as env, \
            open_page(browser, env, refusals=True) as page:
        s = Survey(page)
        # Live: a resident walks in.
        env.step(lane="in", qr="r1")
        env.step(lane="in", temperature=36.4, dt=0.5)
        page.wait_for_function("() => !document.getElementById('tile').classList.contains('idle')", timeout=3000)
        s.look("live", ["#tile .who", "#tile .verdict"], readable=True)

        # Challenge: the same pass again (passback): confirm or reject, while the tabs stay reachable.
        env.step(lane="in", qr="r1", dt=10)
        env.step(lane="in", temperature=36.5, dt=0.5)
        page.wait_for_selector("#btn-confirm", timeout=3000)
        challenge = ["#btn-confirm", "#btn-reject", ".card-person .v.name", "#challenge-phone", ".card-ask"]
        s.look("challenge", challenge)
        # A gate cut off from central for a day shows the stale-data banner all day long: checks fit under it too.
        store = env.app.open_store()
        try:
            store.set_meta("passes_synced_at", str(env.app.clock.now().timestamp() - 30 * 3600))
        finally:
            store.close()
        env.gp.monitor.refresh_now()
        page.wait_for_selector("#stale-banner:not([hidden])", timeout=3000)
        s.look("challenge under the stale-data banner", challenge + ["#stale-banner"])

        assert not s.problems, "\n".join(s.problems)  # the steps below tap the tabs
        # Another tab while the check waits: a bar says so and brings it back.
        page.click("button[data-view=open]")
        s.look("open door (a check waiting)", ["#needs-bar", "#open-lanes button", "#open-reasons button"])
        page.click("#needs-bar")
        page.wait_for_selector("#btn-confirm", timeout=3000)

        # PIN: asked before the answer goes through.
        page.click("#btn-confirm")
        page.wait_for_selector("#pin:not([hidden])", timeout=3000)
        s.look("PIN", ["#pin-keys button", "#pin-value"], tabs=False)
        for k in "2468":
            page.click(f"#pin-keys button[data-k='{k}']")
        page.click("#pin-keys button[data-k=ok]")
        page.wait_for_selector("#needs", state="hidden", timeout=3000)

        # Alarm: a fever on retest.
        env.step(lane="in", qr="n1", dt=10)
        env.step(lane="in", temperature=37.6, dt=0.5)
        env.step(lane="in", temperature=37.8, dt=3)
        page.wait_for_selector("#btn-ack", timeout=3000)
        s.look("alarm", ["#btn-ack", ".card-alarm .card-title", ".card-detail"])
        page.click("#btn-ack")
        page.wait_for_selector("#needs", state="hidden", timeout=3000)

        page.click("button[data-view=visitor]")
        s.look("visitor", ["#visitor-form input", "#visitor-form button[type=submit]"])
        page.fill("input[name=name]", "刘洋")
        page.fill("input[name=id_last4]", "1234")
        page.fill("input[name=phone_last4]", "3300")
        page.fill("input[name=unit]", "3-2-501")
        page.click("#visitor-form button[type=submit]")
        page.wait_for_selector("#visitor-result:not([hidden])", timeout=3000)
        s.look("visitor pass", ["#visitor-qr", "#visitor-print", "#visitor-again"])

        page.click("button[data-view=open]")
        s.look("open door", ["#open-lanes button", "#open-reasons button"])
        # The door modes sit below the door's opening (the view scrolls): scrolled to, they fit.
        s.look("door mode", ["#mode-choices button"], scroll_to="#mode-choices")

        env.settle()
        env.gp.monitor.refresh_now()
        page.click("button[data-view=today]")
        page.wait_for_function("() => window.gateState.today && window.gateState.today.events >= 3", timeout=3000)
        s.look("today", ["#today-totals", "#today-chart"])

        page.click("button[data-view=search]")
        page.fill("#search-q", "3-2-501")
        page.click("#search-form button[type=submit]")
        page.wait_for_selector("table.results", timeout=3000)
        s.look("search", ["#search-q", "#search-form button[type=submit]", "table.results tr:first-child"])

        page.click("button[data-view=health]")
        page.wait_for_selector("#health-detail .hbox", timeout=3000)
        s.look("health", ["#health-detail .hbox:first-child h3"])

        # Handover: a named guard starts a shift with their own PIN.
        page.click("#shift-btn")
        page.wait_for_selector("#pin:not([hidden])", timeout=3000)
        for k in "1357":
            page.click(f"#pin-keys button[data-k='{k}']")
        page.click("#pin-keys button[data-k=ok]")
        page.wait_for_selector("#handover:not([hidden])", timeout=3000)
        s.look("handover", ["#handover-ok", "#handover-title"], tabs=False)
        page.click("#handover-ok")
        assert "王师傅" in page.inner_text("#duty")

        assert not s.problems, "\n".join(s.problems)
