"""The console's roster pages (sync/central/console/roster_pages.py) in headless Chromium,
against a real central on a real mosquitto with a simulated gate (a drill rehearsal on
today's clock, with its own store, talking MQTT): a roster upload with a bad row changes
nothing and names the row; a good one shows its diff, applies only on confirmation and
reaches the gate; the confirmation of one file never applies another; a viewer changes
nothing; a card bound elsewhere is refused; a unit's cards download as a PDF whose QR
codes decode and verify; a visitor registered at the gate is in today's list.

Screenshots: tests/screenshots/console-roster-*.png.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
import textwrap
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import cv2
import pytest

from drivers.qr import make_decoder
from gate.core.tokens import KeyRing, load_private, load_public, new_keypair
from gate.desk.visitors import VisitorDesk
from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from sync.central.console import audit, users
from sync.central.console.server import Console
from tests.mqtt_broker import Broker
from tests.sync_helpers import start_central, trust_central
from tests.test_central import postgres_dsn  # noqa: F401  (a fixture: a throwaway PostgreSQL)
from tests.test_console import PASSWORDS, Client, office_page, shot, sign_in, wait_for
from tests.test_web import browser  # noqa: F401  (a fixture)

DRILL = """
name: console roster
start: "{start}"
config:
  policy: {{passback: "off"}}
  gate: {{id: east, site: drill}}
  keys: {{signing: "{signing}"}}
passes: []
"""
HEADER_EN = ["id", "name", "unit", "category", "card", "valid_until"]


class Site:
    """A real central with its console (and a pass_key of its own) on a real broker, and a gate."""

    def __init__(self, tmp: Path, broker: Broker, stack: ExitStack) -> None:
        self.tmp = tmp
        start = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        signing, _ = new_keypair(tmp / "gate-keys", "signing")
        r = Rehearsal(drill_file.parse(textwrap.dedent(DRILL.format(start=start, signing=signing))), broker=broker.url,
                      store_path=tmp / "east.db")
        self.gate = trust_central(r)
        r.__enter__()
        stack.callback(lambda: r.__exit__(None, None, None))
        self.pass_key, self.pass_pub = new_keypair(tmp / "office", "office-passes")
        self.central = start_central(tmp / "central", broker.url, r.keys.central,
                                     extra=f'timezone = "Asia/Shanghai"\npass_key = "{self.pass_key}"\n')
        stack.callback(self.central.stop)
        self.central.add_pass(id="r1", holder="王芳", unit="3-2-501", category="resident", card="1234567")
        self.central.add_pass(id="r2", holder="李强", unit="3-2-502", category="renter")
        self.central.add_pass(id="r3", holder="赵敏", unit="5-1-101", category="resident")
        db = self.central.store.db
        users.add(db, "王芳", "staff", PASSWORDS["王芳"])
        users.add(db, "li", "viewer", PASSWORDS["li"])
        self.console = Console(self.central.config, db_url=self.central.db_url, notify=self.central.wake_publisher,
                               listen="127.0.0.1:0", board_every_s=0.5).start()
        stack.callback(self.console.stop)
        self.url = self.console.url

    @property
    def store(self) -> Any:
        return self.central.store

    def at_gate(self, pass_id: str) -> Any:
        st = self.gate.app.open_store()
        try:
            return st.get_pass(pass_id)
        finally:
            st.close()


@pytest.fixture
def site(tmp_path: Path, broker: Broker) -> Iterator[Site]:
    with ExitStack() as stack:
        yield Site(tmp_path, broker, stack)


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER_EN) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def write_xlsx(path: Path, rows: list[list[Any]], header: list[str]) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["3号楼住户名册"])  # a title row above the header, as offices write them
    sheet.append(header)
    for r in rows:
        sheet.append(r)
    book.save(path)
    return path


def upload(page: Any, s: Site, path: Path, *, replace: bool = False, expect: str = "ready") -> str:
    """Upload a roster on the roster page; waits for the check to end in ``expect``. Returns the job's URL."""
    page.goto(s.url + "roster")
    page.set_input_files("#upload input[name=file]", str(path))
    if replace:
        page.check("#upload input[name=replace]")
    page.click("#upload-button")
    page.wait_for_selector(f"#job[data-state={expect}]", timeout=60_000)
    return page.url


def version(s: Site) -> int:
    return s.store.passes_version


# ---------------------------------------------------------------- tests


def test_a_roster_with_a_bad_row_changes_nothing_and_names_the_row(browser: Any, site: Site) -> None:  # noqa: F811
    before = (version(site), site.store.pass_count())
    bad = write_csv(site.tmp / "bad.csv", [
        ["n1", "韩梅梅", "3-2-601", "resident", "", "2027-06-30"],
        ["n2", "张伟", "3-2-602", "tenant", "", ""],  # row 3: no such category
        ["r1", "王芳", "3-2-501", "resident", "12x4", ""],  # row 4: a card is digits
        ["n4", "刘洋", "3-2-603", "renter", "1234567", ""],  # row 5: r1's card (central has it)
    ])
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳", path="roster")
        upload(page, site, bad, expect="bad")
        rows = page.locator("#bad-rows tbody tr").all_inner_texts()
        assert any(r.startswith("3") and "tenant" in r for r in rows), rows
        assert any(r.startswith("4") and "12x4" in r for r in rows), rows
        assert page.locator("#confirm").count() == 0 and page.locator("#apply").count() == 0
        shot(page, "roster-bad")
    assert (version(site), site.store.pass_count()) == before
    assert site.store.get_pass("n1") is None
    # every row is read before judging: the card clash at row 5 is named when the rest is fixed
    clash = write_csv(site.tmp / "clash.csv", [["n1", "韩梅梅", "3-2-601", "resident", "", ""],
                                               ["n4", "刘洋", "3-2-603", "renter", "1234567", ""]])
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳", path="roster")
        upload(page, site, clash, expect="bad")
        rows = page.locator("#bad-rows tbody tr").all_inner_texts()
        assert any(r.startswith("3") and "1234567" in r and "r1" in r for r in rows), rows
    assert (version(site), site.store.pass_count()) == before
    assert not [e for e in audit.recent(site.store.db) if e.action == "roster_import"]


def test_a_good_roster_shows_the_diff_applies_only_on_confirmation_and_reaches_the_gate(browser: Any, site: Site) -> None:  # noqa: F811
    assert site.gate.app.sync.link.wait_connected(10)
    wait_for(lambda: site.at_gate("r3") is not None, 20, "the gate to take central's roster")
    site.store.revoke_pass("r2", by="office", reason="moved out")
    v0 = version(site)
    # XLSX, Chinese headers, a title row, building + entrance + room: the rules of `gate passes import`
    good = write_xlsx(site.tmp / "good.xlsx", [
        ["r1", "王芳", "3", "2", "502", "常住", "1234567"],  # unit 3-2-501 -> 3-2-502
        ["r2", "李强", "3", "2", "502", "租住", ""],  # unchanged (and stays revoked)
        ["n1", "韩梅梅", "3", "2", "601", "常住", "7654321"],  # new, with a card
    ], ["编号", "姓名", "楼栋", "单元", "房号", "类别", "门禁卡号"])
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳", path="roster")
        upload(page, site, good, replace=True)
        assert page.locator("#n-new").inner_text() == "1"
        assert page.locator("#n-changed").inner_text() == "1"
        assert page.locator("#n-unchanged").inner_text() == "1"
        assert page.locator("#n-removed").inner_text() == "1"  # r3, with replace chosen
        change = page.locator("#diff-changed tr[data-pass=r1][data-field=unit]").inner_text()
        assert "3-2-501" in change and "3-2-502" in change
        assert page.locator("#diff-new").inner_text().count("n1") == 1
        assert "r3" in page.locator("#diff-removed").inner_text()
        shot(page, "roster-diff")
        # nothing has changed before the confirmation
        assert version(site) == v0 and site.store.get_pass("n1") is None
        page.click("#apply")
        page.wait_for_selector("#job[data-state=applied]", timeout=60_000)
        assert "→" in page.locator("#applied").inner_text()
        shot(page, "roster-applied")
    assert site.store.get_pass("n1")["card"] == "7654321"
    assert site.store.get_pass("r1")["unit"] == "3-2-502"
    assert site.store.get_pass("r2")["revoked"] is True  # a revocation made at central stays
    assert site.store.get_pass("r3") is None
    [entry] = [e for e in audit.recent(site.store.db) if e.action == "roster_import"]
    assert entry.who == "王芳" and entry.target == "good.xlsx"
    assert "1 new, 1 changed, 1 removed, 1 unchanged" in entry.detail
    # the change reaches the gate as `gate central passes import` does, naming who
    change = json.loads(site.store.changes_after(v0, 10)[0][1])
    assert change["by"] == "王芳"
    wait_for(lambda: site.at_gate("n1") is not None, 20, "the new pass to reach the gate")
    assert site.at_gate("r1").unit == "3-2-502"
    # a removed pass stays at the gate as a tombstone, refused as revoked
    wait_for(lambda: site.at_gate("r3") is not None and site.at_gate("r3").revoked, 20, "the removal to reach the gate")


def test_the_apply_token_refuses_a_different_file(browser: Any, site: Site) -> None:  # noqa: F811
    a = write_csv(site.tmp / "a.csv", [["n1", "韩梅梅", "3-2-601", "resident", "", ""]])
    b = write_csv(site.tmp / "b.csv", [["n2", "张伟", "3-2-602", "resident", "", ""]])
    v0 = version(site)
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳", path="roster")
        job_a = upload(page, site, a)
        upload(page, site, b)
        token_b = page.locator("#confirm input[name=token]").get_attribute("value")
        # A's confirmation carrying B's token (a page of one file, a token of another): refused
        page.goto(job_a)
        page.locator("#confirm input[name=token]").evaluate("(el, t) => el.value = t", token_b)
        page.click("#apply")
        page.wait_for_selector("#error")
        assert "另一个文件" in page.locator("#error").inner_text() or "another file" in page.locator("#error").inner_text()
        shot(page, "roster-token-refused")
        assert version(site) == v0 and site.store.get_pass("n1") is None and site.store.get_pass("n2") is None
        # its own token applies A, and only A
        page.goto(job_a)
        page.click("#apply")
        page.wait_for_selector("#job[data-state=applied]", timeout=60_000)
    assert site.store.get_pass("n1") is not None and site.store.get_pass("n2") is None
    # a script sending no token, or a made-up one, gets nothing applied either
    c = Client(site.url)
    assert c.sign_in("王芳", PASSWORDS["王芳"])[0] == 200
    _, body = c.get("roster")
    code, _ = c.post(job_a.split("/", 3)[3] + "/apply", {"csrf": Client.csrf(body), "token": "0" * 64})
    assert code == 409 and site.store.get_pass("n2") is None


def test_a_viewer_cannot_upload_edit_or_bind(browser: Any, site: Site) -> None:  # noqa: F811
    v0 = version(site)
    with office_page(browser, site) as page:
        sign_in(page, site, "li", path="roster")
        assert page.locator("#view-only").is_visible() and page.locator("#upload").count() == 0
        shot(page, "roster-viewer")
        page.goto(site.url + "passes/r2/edit")
        assert page.locator("#view-only").is_visible()
        assert page.locator("#save").count() == 0 and page.locator("#bind-button").count() == 0
        assert page.locator("#edit input[name=holder]").is_disabled() and page.locator("#card").is_disabled()
        shot(page, "roster-edit-viewer")
        # the routes refuse a viewer, whatever the page shows
        csrf = page.locator("#edit input[name=csrf]").get_attribute("value")
        got = page.request.post(site.url + "roster/upload", headers={"X-CSRF-Token": csrf},
                                multipart={"file": {"name": "x.csv", "mimeType": "text/csv",
                                                    "buffer": b"id,name,unit,category\nn9,X,1-1-101,resident\n"}})
        assert got.status == 403
        for path, form in (("passes/r2/edit", {"holder": "改名", "unit": "3-2-502", "category": "renter"}),
                           ("passes/r2/card", {"card": "999"})):
            got = page.request.post(site.url + path, headers={"X-CSRF-Token": csrf}, form=form)
            assert got.status == 403, path
    assert version(site) == v0 and site.store.get_pass("r2").get("card") is None and site.store.get_pass("r2")["holder"] == "李强"
    assert site.store.get_pass("n9") is None


def test_editing_a_pass_and_binding_a_card_reach_the_gate_and_a_card_bound_elsewhere_is_refused(browser: Any, site: Site) -> None:  # noqa: F811
    assert site.gate.app.sync.link.wait_connected(10)
    wait_for(lambda: site.at_gate("r2") is not None, 20, "the gate to take central's roster")
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳", path="passes/r2")
        page.click("#edit-link")
        page.wait_for_selector("#bind")
        page.fill("#card", "1234567")  # r1's card
        page.click("#bind-button")
        page.wait_for_selector("#error")
        text = page.locator("#error").inner_text()
        assert "1234567" in text and "r1" in text and "王芳" in text
        shot(page, "roster-card-taken")
        assert site.store.get_pass("r2").get("card") is None
        page.fill("#card", "7654321")
        page.click("#bind-button")
        page.wait_for_selector("#done")
        page.fill("#edit input[name=unit]", "3-2-503")
        page.fill("#edit input[name=phone_last4]", "0042")
        page.fill("#edit input[name=valid_until]", "2027-06-30")
        page.fill("#edit input[name=reason]", "换房 moved flat")
        page.click("#save")
        page.wait_for_selector("#done")
        shot(page, "roster-edit")
    p = site.store.get_pass("r2")
    assert (p["card"], p["unit"], p["phone_last4"]) == ("7654321", "3-2-503", "0042")
    assert p["valid_until"].startswith("2027-06-30T23:59:59")
    kinds = {e.action: e for e in audit.recent(site.store.db, target="r2")}
    assert kinds["card_bind"].who == "王芳" and "7654321" in kinds["card_bind"].detail
    assert "3-2-502 → 3-2-503" in kinds["pass_edit"].detail and kinds["pass_edit"].reason == "换房 moved flat"
    wait_for(lambda: (site.at_gate("r2") or None) is not None and site.at_gate("r2").unit == "3-2-503", 20,
             "the edit to reach the gate")


def test_a_unit_s_pass_cards_download_as_a_pdf_whose_qr_codes_decode(browser: Any, site: Site) -> None:  # noqa: F811
    site.store.revoke_pass("r2", by="office", reason="moved out")  # never printed
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳", path="roster/print")
        page.fill("#print input[name=unit]", "3-2")
        shot(page, "roster-print")
        with page.expect_download() as dl:
            page.click("#print-button")
        pdf = site.tmp / "cards.pdf"
        dl.value.save_as(str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-r", "200", "-gray", "-png", str(pdf), str(site.tmp / "page")], check=True, timeout=120)
    texts: list[str] = []
    for png in sorted(site.tmp.glob("page-*.png")):
        texts += make_decoder("thorough").decode(cv2.imread(str(png), cv2.IMREAD_GRAYSCALE))
    # signed with the console's pass_key (not central's signing key), each for its pass
    ring = KeyRing([load_public(site.pass_pub)])
    assert sorted(ring.verify(t).pass_id for t in texts) == ["r1"]
    central_ring = KeyRing([load_private(site.central.config.signing_key).public_key()])
    with pytest.raises(Exception):
        central_ring.verify(texts[0])
    [entry] = [e for e in audit.recent(site.store.db) if e.action == "cards_print"]
    assert entry.who == "王芳" and entry.target == "3-2" and entry.detail.startswith("1 cards")


def test_visitors_today_lists_a_visitor_registered_at_the_gate(browser: Any, site: Site) -> None:  # noqa: F811
    r = site.gate
    assert r.app.sync.link.wait_connected(10)
    signer = load_private(r.config.keys.signing)
    desk = VisitorDesk(signer=signer, open_store=r.app.open_store, now=r.app.clock.now, tz=r.app.tz, keyring=r.app.keyring)
    vp = desk.register("刘洋", "1234", "3300", "7-1-101", length="2h")
    r.app.sync.publisher.nudge()
    wait_for(lambda: any(v["pass"] == vp.pass_id for v in site.central.visitors()), 20, "central's visitor register")
    with office_page(browser, site) as page:
        sign_in(page, site, "li", path="roster/visitors")  # a viewer reads it too
        row = page.locator(f"#visitors tr[data-pass='{vp.pass_id}']").inner_text()
        assert "刘洋" in row and "7-1-101" in row and "east" in row
        assert page.locator("#no-overstay").is_visible()
        shot(page, "roster-visitors")


def test_a_100000_row_roster_shows_its_progress_and_the_console_stays_usable(
        browser: Any, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The page counts the rows while the check runs, and another page answers meanwhile.
    The check is held half-way (at its first count between 0 and the total) until the
    page has shown that count: a fast machine compares 100,000 rows between two polls."""
    import threading

    from sync.central.console import roster_jobs

    halfway, release = threading.Event(), threading.Event()
    held: list[tuple[int, int]] = []
    tell = roster_jobs.Jobs._tell

    def holding(self: Any, job: Any, state: str) -> Any:
        progress = tell(self, job, state)

        def hold(done: int, total: int) -> None:
            progress(done, total)
            if state == "comparing" and 0 < done < total and not held:
                held.append((done, total))
                halfway.set()
                release.wait(60)
        return hold

    monkeypatch.setattr(roster_jobs.Jobs, "_tell", holding)
    rows = [[f"N{i:06d}", f"住户{i}", f"{10 + i // 2400}-{i // 600 % 4 + 1}-{i % 600 // 6 + 101}", "resident", "", ""]
            for i in range(100_000)]
    big = write_csv(site.tmp / "big.csv", rows)
    seen: list[dict[str, Any]] = []
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳", path="roster")

        def on_response(resp: Any) -> None:
            if "/api/roster/jobs/" in resp.url:
                try:
                    seen.append(resp.json())
                except Exception:
                    pass

        page.on("response", on_response)
        page.set_input_files("#upload input[name=file]", str(big))
        page.click("#upload-button")
        page.wait_for_selector("#job")
        try:
            assert halfway.wait(60), "the check never got half-way"
            [(done, total)] = held
            page.wait_for_function("t => document.getElementById('job-count').textContent === t",
                                   arg=f"{done} / {total}", timeout=10_000)
            assert page.locator("#job-state").inner_text() != ""
            assert page.evaluate("document.getElementById('job-progress').value") == done
            # meanwhile, another page of the console answers
            other = page.context.new_page()
            other.goto(site.url + "passes?q=3-2")
            assert other.locator("#results tbody tr").count() == 2
            other.close()
        finally:
            release.set()
        page.wait_for_selector("#job[data-state=ready]", timeout=120_000)
        assert page.locator("#n-new").inner_text() == "100000"
        shot(page, "roster-big")
    assert total == 100_000 and 0 < done < total
    assert any(p["state"] == "comparing" and p["done"] == done for p in seen), seen
    assert all(p["state"] in ("waiting", "reading", "comparing", "ready") for p in seen), seen
    assert site.store.get_pass("N000000") is None  # checked, not applied


def test_the_roster_pages_queries_run_on_postgresql(postgres_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    """The upload's check and apply, an edit, a card, a unit's passes for printing and the
    visitors, on PostgreSQL: the same SQL as on SQLite."""
    import time as _time
    from zoneinfo import ZoneInfo

    from sync.central import visitors
    from sync.central.console.actions import ActionError
    from sync.central.console.cards_pdf import select
    from sync.central.console.pass_edit import bind_card, edit_pass
    from sync.central.console.roster_jobs import Jobs
    from sync.central.store import CentralStore

    st = CentralStore(postgres_dsn)
    try:
        for table in ("console_audit", "passes", "visitors"):
            st.db.execute(f"DELETE FROM {table}")
        st.upsert_passes([{"id": "r1", "holder": "王芳", "unit": "3-2-501", "category": "resident", "card": "1234567"},
                          {"id": "r2", "holder": "李强", "unit": "3-2-502", "category": "renter"}])
        jobs = Jobs(postgres_dsn, "Asia/Shanghai", lambda: None)
        data = "id,name,unit,category\nr1,王芳,3-2-601,resident\nn1,韩梅梅,3-20-101,resident\n".encode()
        job = jobs.check("王芳", "r.csv", data, replace=True)
        wait_for(lambda: not job.running, 30, "the check")
        assert job.state == "ready", (job.state, job.bad, job.error)
        assert job.plan.counts() == {"new": 1, "changed": 1, "removed": 1, "unchanged": 0, "rows": 2}
        with pytest.raises(ActionError):
            jobs.apply(job, "0" * 64, "王芳")
        jobs.apply(job, job.sha256, "王芳")
        wait_for(lambda: not job.running, 30, "the apply")
        assert job.state == "applied" and st.get_pass("r2") is None and st.get_pass("n1") is not None
        edit_pass(st, "n1", {"holder": "韩梅梅", "unit": "3-20-102", "category": "renter", "valid_until": "2027-06-30"},
                  who="王芳", tz=ZoneInfo("Asia/Shanghai"))
        with pytest.raises(ActionError) as taken:
            bind_card(st, "n1", "1234567", who="王芳")
        assert taken.value.code == "card_taken"
        bind_card(st, "n1", "7654321", who="王芳")
        assert st.get_pass("n1")["card"] == "7654321" and st.get_pass("n1")["unit"] == "3-20-102"
        assert [w["id"] for w in select(st.db, "3-2")] == ["r1"]  # not 3-20-102
        assert {e.action for e in audit.recent(st.db)} == {"roster_import", "pass_edit", "card_bind"}
        assert visitors.listing(st.db, _time.time(), since=0) == [] and visitors.overstays(st.db, _time.time()) == []
    finally:
        st.close()
