"""The office console (sync/central/console/) in headless Chromium, driven by Playwright
the way the guard page's tests do it, against a real central on a real mosquitto with
simulated gates (drill rehearsals, each with its own store, talking MQTT).

Each page is saved as tests/screenshots/console-*.png beside the guard page's: the
sign-in page, the gates board (office PC and tablet), the search, a pass after a revoke,
a pass as a viewer sees it, the audit and the accounts.
"""
from __future__ import annotations

import http.client
import json
import re
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack, contextmanager
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from gate.drill import file as drill_file
from gate.drill.file import Step
from gate.drill.runner import Rehearsal
from sync.central.console import audit, search, users
from sync.central.console.server import Console, ConsoleError
from tests.mqtt_broker import Broker
from tests.sync_helpers import start_central, trust_central
from tests.test_central import postgres_dsn  # noqa: F401  (a fixture: a throwaway PostgreSQL)
from tests.test_web import SHOTS, browser  # noqa: F401  (browser is a fixture)

OFFICE = {"width": 1366, "height": 768}  # an office PC
TABLET = {"width": 768, "height": 1024}  # a tablet held upright
PASSWORDS = {"王芳": "staff-pass-1", "li": "viewer-pass-1", "admin": "admin-pass-1"}

DRILL = """
name: console
start: "2026-11-22T08:00:00+08:00"
config: {policy: {passback: "off"}, gate: {id: GATE, site: drill}}
passes:
  - {id: r1, holder: 王芳, unit: 3-2-501, category: resident, card: "1234567"}
  - {id: r2, holder: 李强, unit: 3-2-502, category: renter}
"""


def gate_drill(gate: str) -> Any:
    return drill_file.parse(textwrap.dedent(DRILL.replace("GATE", gate)))


def wait_for(cond: Any, timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    got = cond()
    assert got, f"timed out waiting for {what or cond}"
    return got


class Site:
    """A real central (with its console) on a real broker, and the gates started beside it."""

    def __init__(self, tmp: Path, broker: Broker, stack: ExitStack) -> None:
        self.tmp, self.broker, self.stack = tmp, broker, stack
        self.gates: dict[str, Rehearsal] = {}
        self.stopped: set[str] = set()
        first = self._start(trust_central(Rehearsal(gate_drill("east"), broker=broker.url)), "east")
        self.key_pub = first.keys.central_pub
        self.central = start_central(tmp / "central", broker.url, first.keys.central, extra='timezone = "Asia/Shanghai"\n')
        stack.callback(self.central.stop)
        self.central.add_pass(id="r1", holder="王芳", unit="3-2-501", category="resident", card="1234567")
        self.central.add_pass(id="r2", holder="李强", unit="3-2-502", category="renter")
        db = self.central.store.db
        users.add(db, "王芳", "staff", PASSWORDS["王芳"])
        users.add(db, "li", "viewer", PASSWORDS["li"])
        users.add(db, "admin", "admin", PASSWORDS["admin"])
        self.console = Console(self.central.config, db_url=self.central.db_url, notify=self.central.wake_publisher,
                               listen="127.0.0.1:0", board_every_s=0.3).start()
        stack.callback(self.console.stop)
        self.url = self.console.url

    def _start(self, r: Rehearsal, gate: str) -> Rehearsal:
        r.__enter__()
        self.gates[gate] = r
        self.stack.callback(lambda: self.stop_gate(gate))
        return r

    def add_gate(self, gate: str) -> Rehearsal:
        return self._start(trust_central(Rehearsal(gate_drill(gate), broker=self.broker.url), [self.key_pub]), gate)

    def stop_gate(self, gate: str) -> None:
        if gate not in self.stopped:
            self.stopped.add(gate)
            self.gates[gate].__exit__(None, None, None)

    def gate_store(self, gate: str) -> Any:
        return self.gates[gate].app.open_store()


@pytest.fixture
def site(tmp_path: Path, broker: Broker) -> Iterator[Site]:
    with ExitStack() as stack:
        yield Site(tmp_path, broker, stack)


@contextmanager
def office_page(browser: Any, s: Site, viewport: dict[str, int] = OFFICE) -> Iterator[Any]:  # noqa: F811
    """A browser page on the console; fails the test on a script error or a request elsewhere."""
    ctx = browser.new_context(viewport=viewport, locale="zh-CN", device_scale_factor=1)
    page = ctx.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    origin = s.url.rstrip("/")
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda req: foreign.append(req.url) if not req.url.startswith(origin) else None)
    try:
        yield page
    finally:
        ctx.close()
    assert not foreign, f"the console loaded something from elsewhere: {foreign}"
    assert not errors, f"the console reported script errors: {errors}"


def sign_in(page: Any, s: Site, name: str, password: str | None = None, path: str = "gates") -> None:
    page.goto(s.url + path)
    page.fill("#login input[name=name]", name)
    page.fill("#login input[name=password]", password or PASSWORDS[name])
    page.click("#login button[type=submit]")
    page.wait_for_load_state()


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"console-{name}.png"
    page.wait_for_timeout(150)
    page.screenshot(path=str(path), full_page=True)
    return path


class _From(urllib.request.HTTPHandler):
    """Connections from another loopback address: another machine, as far as the throttle can tell."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def http_open(self, req: Any) -> Any:
        return self.do_open(lambda host, **kw: http.client.HTTPConnection(host, source_address=(self.source, 0), **kw), req)


class Client:
    """A plain HTTP client with its own cookies (a second browser, a script), from ``source``."""

    def __init__(self, url: str, source: str | None = None) -> None:
        self.url = url
        extra = [_From(source)] if source else []
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()), *extra)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, r.read(200_000).decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8")

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode()
        try:
            with self.opener.open(self.url + path, data, timeout=10) as r:
                return r.status, r.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8")

    @staticmethod
    def csrf(body: str) -> str:
        m = re.search(r'name="csrf" value="([^"]+)"', body)
        assert m, "no CSRF token on the page"
        return m.group(1)

    def sign_in(self, name: str, password: str) -> tuple[int, str]:
        _, body = self.get("login")
        return self.post("login", {"csrf": self.csrf(body), "name": name, "password": password, "next": "/gates"})


def revoked_at_gate(s: Site, gate: str, pass_id: str) -> bool:
    st = s.gate_store(gate)
    try:
        p = st.get_pass(pass_id)
        return p is not None and p.revoked
    finally:
        st.close()


def passes_version(s: Site, gate: str) -> int:
    st = s.gate_store(gate)
    try:
        return st.passes_version()
    finally:
        st.close()


def decisions(r: Rehearsal) -> list[tuple[Any, str, str]]:
    return [(line["pass"], line["decision"], line["reason"]) for line in r.lines if line["type"] == "decision"]


# ---------------------------------------------------------------- tests


def test_an_unauthenticated_request_gets_only_the_login_page(browser: Any, site: Site) -> None:  # noqa: F811
    anon = Client(site.url)
    for path in ("", "gates", "passes?q=3-2", "passes/r1", "audit", "users", "no-such-page"):
        code, body = anon.get(path)
        assert code == 401, (path, code)
        assert 'id="login"' in body and 'name="password"' in body, path
        # nothing of what the page holds: no pass, no holder, no gate, no account (the
        # random CSRF token and the address asked for, kept to go back to, aside)
        shown = re.sub(r'name="(csrf|next)" value="[^"]*"', "", body)
        for secret in ("王芳", "李强", "3-2-501", "r1", "east", "admin"):
            assert secret not in shown, (path, secret)
    for path, headers in (("api/board", {}), ("events", {"Accept": "text/event-stream"}),
                          ("gates", {"X-Requested-With": "XMLHttpRequest"})):
        code, body = anon.get(path, headers)
        assert code == 401 and json.loads(body)["error"] == "sign_in", path
    # A change without a session (and so without its CSRF token) is refused outright.
    code, _ = anon.post("passes/r1/revoke", {"action": "revoke", "reason": "x"})
    assert code == 403 and site.central.store.get_pass("r1")["revoked"] is False
    # In a browser: the page asked for is the sign-in page, and after signing in the page asked for.
    with office_page(browser, site) as page:
        page.goto(site.url + "passes?q=3-2")
        assert page.locator("#login").is_visible() and page.locator("#results").count() == 0
        shot(page, "login")
        page.fill("#login input[name=name]", "王芳")
        page.fill("#login input[name=password]", PASSWORDS["王芳"])
        page.click("#login button[type=submit]")
        page.wait_for_selector("#results")
        assert page.url.endswith("/passes?q=3-2")
        assert "李强" in page.locator("#results").inner_text()
        # signing out ends the session on the server
        page.click("#me button")
        page.goto(site.url + "passes?q=3-2")
        assert page.locator("#login").is_visible()
    assert [e.who for e in audit.recent(site.central.store.db) if e.action == "sign_in"] == ["王芳"]


def test_wrong_passwords_are_throttled_and_a_disabled_user_cannot_sign_in(browser: Any, site: Site) -> None:  # noqa: F811
    guesser = Client(site.url)
    for _ in range(5):
        code, body = guesser.sign_in("王芳", "not-the-password")
        assert code == 401 and "用户名或密码不对" in body
    # Locked out: even the right password is not checked now, from this client.
    code, body = guesser.sign_in("王芳", PASSWORDS["王芳"])
    assert code == 401 and 'id="locked"' in body and "请等" in body
    assert guesser.get("gates")[0] == 401
    # Another machine is not locked out by this one's guesses.
    users.add(site.central.store.db, "zhao", "staff", "zhao-pass-1")
    other = Client(site.url, source="127.0.0.2")
    code, _ = other.sign_in("zhao", "zhao-pass-1")
    assert code == 200 and other.get("gates")[0] == 200
    # Disabled: the account cannot sign in, and the browser already signed in is signed out.
    users.set_disabled(site.central.store.db, "zhao")
    code, body = other.get("gates")
    assert code == 401 and 'id="login"' in body
    code, body = Client(site.url, source="127.0.0.3").sign_in("zhao", "zhao-pass-1")
    assert code == 401 and "此账号已停用" in body and 'id="nav"' not in body
    assert [e.who for e in audit.recent(site.central.store.db) if e.action == "sign_in"] == ["zhao"]
    # In a browser (the throttle has locked this machine out meanwhile): the sign-in page says so.
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳")
        assert page.locator("#locked").is_visible() and page.locator("#nav").count() == 0
        shot(page, "login-locked")


def test_a_viewer_cannot_revoke(browser: Any, site: Site) -> None:  # noqa: F811
    with office_page(browser, site) as page:
        sign_in(page, site, "li", path="passes/r1")
        assert page.locator("#view-only").is_visible() and page.locator("#change").count() == 0
        shot(page, "pass-viewer")
    viewer = Client(site.url)
    assert viewer.sign_in("li", PASSWORDS["li"])[0] == 200
    _, body = viewer.get("passes/r1")
    code, body = viewer.post("passes/r1/revoke", {"csrf": Client.csrf(body), "action": "revoke", "reason": "trying"})
    assert code == 403 and 'id="refused"' in body
    assert site.central.store.get_pass("r1")["revoked"] is False
    assert not [e for e in audit.recent(site.central.store.db) if e.action == "revoke"]
    assert viewer.get("users")[0] == 403  # the accounts are the admin's


def test_a_revoke_in_the_console_reaches_the_gate_refuses_the_pass_and_is_audited(browser: Any, site: Site) -> None:  # noqa: F811
    r = site.gates["east"]
    assert r.app.sync.link.wait_connected(10)
    wait_for(lambda: passes_version(site, "east") == 2, 20, "the gate to take central's roster")
    r.step(Step(at=0, lane="in", qr="r1"))
    r.step(Step(at=0.5, lane="in", temperature=36.5))
    assert decisions(r)[-1] == ("r1", "allow", "ok")
    with office_page(browser, site) as page:
        sign_in(page, site, "王芳", path="passes")
        page.fill("input[name=q]", "3-2")
        page.click(".searchbar button")
        page.wait_for_selector("#results")
        assert page.locator("#results tbody tr").count() == 2
        shot(page, "passes")
        page.click("#results a:text('r1')")
        page.wait_for_selector("#change")
        page.click("#change-button")  # no reason: the browser asks for one, nothing is sent
        assert site.central.store.get_pass("r1")["revoked"] is False
        page.fill("#change input[name=reason]", "搬走了 moved out")
        page.click("#change-button")
        page.wait_for_selector("#done")
        assert page.locator("#pass").get_attribute("data-revoked") == "yes"
        # central's roster has it, with who and why in the change the gates receive
        assert site.central.store.get_pass("r1")["revoked"] is True
        change = json.loads(site.central.store.changes_after(2, 10)[0][1])
        assert (change["by"], change["reason"], change["pass"]["revoked"]) == ("王芳", "搬走了 moved out", True)
        # it reaches the gate, which refuses the pass from now on
        wait_for(lambda: revoked_at_gate(site, "east", "r1"), 20, "the revoke to reach the gate")
        r.step(Step(at=10, lane="in", qr="r1"))
        assert decisions(r)[-1] == ("r1", "deny", "revoked")
        # the gate recorded who revoked it (an admin event), and sent that back up
        st = site.gate_store("east")
        try:
            admin = [e for e in st.events() if e["type"] == "admin" and e.get("pass") == "r1"]
        finally:
            st.close()
        assert [(a["action"], a["who"], a["reason"]) for a in admin] == [("revoke", "central:王芳", "搬走了 moved out")]
        assert r.drain(30)
        page.reload()
        page.wait_for_selector("#at-gates")
        assert "central:王芳" in page.locator("#at-gates").inner_text() and "east" in page.locator("#at-gates").inner_text()
        shot(page, "pass")
        # the audit names the person, the pass and the reason
        page.click("#nav a[href='/audit']")
        page.wait_for_selector("#audit")
        row = page.locator("#audit tr.audit-revoke").first.inner_text()
        assert "王芳" in row and "r1" in row and "搬走了 moved out" in row
        shot(page, "audit")
    entries = [e for e in audit.recent(site.central.store.db) if e.action == "revoke"]
    assert [(e.who, e.target, e.reason) for e in entries] == [("王芳", "r1", "搬走了 moved out")]


def test_the_gates_board_shows_gates_online_then_offline_live(browser: Any, site: Site) -> None:  # noqa: F811
    east = site.gates["east"]
    west = site.add_gate("west")
    assert east.app.sync.link.wait_connected(10) and west.app.sync.link.wait_connected(10)
    # A fever at the west gate: an alarm for the whole site.
    west.step(Step(at=0, lane="in", qr="r2"))
    west.step(Step(at=0.5, lane="in", temperature=38.6))
    west.step(Step(at=6, lane="in", temperature=38.7))
    assert west.drain(30) and east.drain(30)
    with office_page(browser, site) as page:
        sign_in(page, site, "admin")
        page.wait_for_function("() => window.consoleState && window.consoleState.connected")
        page.wait_for_selector("#gates tr[data-gate=east][data-state=online]")
        page.wait_for_selector("#gates tr[data-gate=west][data-state=online]")
        page.wait_for_selector("#open-alarms tr.alarm")
        assert "发热" in page.locator("#open-alarms").inner_text() and "west" in page.locator("#open-alarms").inner_text()
        row = page.locator("#gates tr[data-gate=west]").inner_text()
        assert "在线" in row and "online" in row
        shot(page, "gates")
        updates = page.evaluate("() => window.consoleState.updates")
        # The east gate stops: its will (a clean disconnect) says offline, and the board follows without a reload.
        site.stop_gate("east")
        page.wait_for_selector("#gates tr[data-gate=east][data-state=offline]", timeout=20000)
        assert page.evaluate("() => window.consoleState.updates") > updates
        assert page.locator("#gates tr[data-gate=west][data-state=online]").count() == 1
        offline = page.locator("#gates tr[data-gate=east]").inner_text()
        assert "离线" in offline and "as last reported before it went offline" in offline and "?" not in offline
        shot(page, "gates-offline")
        page.click("#nav a[href='/users']")
        page.wait_for_selector("#users")
        shot(page, "users")
    with office_page(browser, site, TABLET) as page:
        sign_in(page, site, "li")
        page.wait_for_selector("#gates tr[data-gate=west]")
        # readable on a tablet: the page itself never scrolls sideways (tables scroll in their box)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= TABLET["width"]
        shot(page, "gates-tablet")


# ---------------------------------------------------------------- without a browser


def test_search_finds_by_name_unit_card_or_id_prefix(tmp_path: Path) -> None:
    from sync.central.store import CentralStore

    st = CentralStore(str(tmp_path / "c.db"))
    st.upsert_passes([
        {"id": "P-001", "holder": "王芳", "unit": "3-2-501", "category": "resident", "card": "1234567"},
        {"id": "P-002", "holder": "王强", "unit": "3-2-502", "category": "renter"},
        {"id": "X-9", "holder": "李雷", "unit": "12-1-101", "category": "staff", "card": "7654321"},
    ])
    ids = lambda q: {f.id for f in search.search(st.db, q)}  # noqa: E731
    assert ids("王") == {"P-001", "P-002"} and ids("王芳") == {"P-001"}
    assert ids("3-2") == {"P-001", "P-002"} and ids("12-") == {"X-9"}
    assert ids("7654") == {"X-9"} and ids("P-00") == {"P-001", "P-002"}
    assert ids("") == set() and ids("赵") == set()
    assert search.search(st.db, "1234567")[0].id == "P-001"  # an exact card first
    plan = " ".join(str(r) for r in st.db.all("EXPLAIN QUERY PLAN SELECT id FROM passes WHERE holder >= ? AND holder < ?", ("王", "玌")))
    assert "passes_holder_search" in plan  # a range on the index, not a scan of 1,000,000 rows
    assert search.upper_bound("3-2") == "3-3" and search.upper_bound("王") == "玌"
    st.close()


def test_users_command_line(tmp_path: Path) -> None:
    from gate.cli.main import main as cli
    from sync.central import CentralStore
    from gate.core.tokens import new_keypair

    new_keypair(tmp_path, "central")
    conf = tmp_path / "central.toml"
    conf.write_text('site = "s"\nsigning_key = "central.key"\ndb = "central.db"\n[console]\n', encoding="utf-8")
    run = CliRunner().invoke
    res = run(cli, ["central", "-c", str(conf), "users", "add", "王芳", "--role", "staff"], input="a-long-password\n")
    assert res.exit_code == 0, res.output
    (tmp_path / "pw").write_text("another-password\n", encoding="utf-8")
    assert run(cli, ["central", "-c", str(conf), "users", "add", "li", "--role", "viewer", "--password-file", str(tmp_path / "pw")]).exit_code == 0
    assert "at least 8" in run(cli, ["central", "-c", str(conf), "users", "add", "zhao", "--role", "staff"], input="short\n").output
    assert "already" in run(cli, ["central", "-c", str(conf), "users", "add", "li", "--role", "staff"], input="whatever-123\n").output
    assert run(cli, ["central", "-c", str(conf), "users", "add", "x", "--role", "root"], input="whatever-123\n").exit_code != 0
    assert run(cli, ["central", "-c", str(conf), "users", "disable", "li"]).exit_code == 0
    listed = [json.loads(line) for line in run(cli, ["central", "-c", str(conf), "users", "list", "--json"]).output.splitlines()]
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [("li", "viewer", True), ("王芳", "staff", False)]
    st = CentralStore(str(tmp_path / "central.db"))
    try:
        assert users.verify(st.db, "王芳", "a-long-password")[0] is not None
        assert users.verify(st.db, "li", "another-password") == (None, "disabled")
        assert users.verify(st.db, "王芳", "wrong-password") == (None, "wrong")
        row = st.db.one("SELECT hash FROM console_users WHERE name = ?", ("王芳",))
        assert row[0].startswith("scrypt:")
        assert [e.action for e in audit.recent(st.db)] == ["user_disable", "user_add", "user_add"]
    finally:
        st.close()


def test_beyond_localhost_needs_named_hosts_and_unknown_hosts_are_refused(tmp_path: Path) -> None:
    from gate.core.tokens import new_keypair
    from sync.central.config import load_central_config

    new_keypair(tmp_path, "central")
    conf = tmp_path / "central.toml"
    conf.write_text('site = "s"\nsigning_key = "central.key"\ndb = "central.db"\n[console]\nlisten = "0.0.0.0:0"\n', encoding="utf-8")
    with pytest.raises(ConsoleError, match="allowed_hosts"):
        Console(load_central_config(conf))
    conf.write_text('[central]\nsite = "s"\nsigning_key = "central.key"\ndb = "central.db"\n[console]\nlisten = "127.0.0.1:0"\n'
                    'allowed_hosts = ["office.example"]\n', encoding="utf-8")
    c = Console(load_central_config(conf)).start()
    try:
        assert Client(c.url).get("login")[0] == 200
        assert Client(c.url).get("login", {"Host": "office.example"})[0] == 200
        code, body = Client(c.url).get("login", {"Host": "evil.example"})
        assert code == 400 and "allowed_hosts" in body
    finally:
        c.stop()


def test_the_console_queries_run_on_postgresql(postgres_dsn: str) -> None:
    """Accounts, audit, search and the board on PostgreSQL: the same SQL as on SQLite."""
    from zoneinfo import ZoneInfo

    from sync.central.console import board
    from sync.central.store import CentralStore

    st = CentralStore(postgres_dsn)
    try:
        for table in ("console_users", "console_audit", "console_gate_state", "passes", "events", "status"):
            st.db.execute(f"DELETE FROM {table}")
        st.upsert_passes([
            {"id": "P-001", "holder": "王芳", "unit": "3-2-501", "category": "resident", "card": "1234567"},
            {"id": "P-002", "holder": "王强", "unit": "3-2-502", "category": "renter"},
        ])
        assert {f.id for f in search.search(st.db, "王")} == {"P-001", "P-002"}
        assert {f.id for f in search.search(st.db, "3-2-50")} == {"P-001", "P-002"}
        assert [f.id for f in search.search(st.db, "1234")] == ["P-001"]
        # The byte-order indexes exist (a two-row table is scanned whatever they are; bench/console.py times 1,000,000).
        assert {r[0] for r in st.db.all("SELECT indexname FROM pg_indexes WHERE indexname LIKE ?", ("passes_%_search",))} == {
            "passes_id_search", "passes_card_search", "passes_unit_search", "passes_holder_search"}
        users.add(st.db, "王芳", "staff", "staff-pass-1")
        assert users.verify(st.db, "王芳", "staff-pass-1")[0] is not None
        from sync.central.console.actions import set_revoked

        v = set_revoked(st, "P-001", revoked=True, who="王芳", reason="moved out")
        assert st.get_pass("P-001")["revoked"] is True
        assert [(e.who, e.action, e.detail) for e in audit.recent(st.db, target="P-001")] == [("王芳", "revoke", f"roster version {v}")]
        now = time.time()
        st.upsert_status({"gate": "east", "online": True, "ts": "2026-11-22T08:00:00+08:00", "heartbeat_s": 30,
                          "passes_version": v, "policy_version": 0, "outbox_depth": 0, "devices": {}}, now)
        b = board.board(st, now, ZoneInfo("Asia/Shanghai"), 900)
        assert [(g["gate"], g["state"]) for g in b["gates"]] == [("east", "online")] and b["open_alarms"] == []
    finally:
        st.close()


def test_a_session_ends_after_idle_min_without_a_request(tmp_path: Path) -> None:
    from gate.core.tokens import new_keypair
    from sync.central.config import load_central_config
    from sync.central.store import CentralStore

    new_keypair(tmp_path, "central")
    conf = tmp_path / "central.toml"
    conf.write_text('site = "s"\nsigning_key = "central.key"\ndb = "central.db"\n[console]\nlisten = "127.0.0.1:0"\n'
                    "idle_min = 0.05\n", encoding="utf-8")  # 3 s
    st = CentralStore(str(tmp_path / "central.db"))
    users.add(st.db, "王芳", "staff", PASSWORDS["王芳"])
    st.close()
    c = Console(load_central_config(conf)).start()
    try:
        office = Client(c.url)
        assert office.sign_in("王芳", PASSWORDS["王芳"])[0] == 200
        for _ in range(3):  # clicking now and then keeps it (each gap well under 3 s, also on a busy machine)
            time.sleep(0.5)
            assert office.get("audit")[0] == 200
        time.sleep(3.6)
        code, body = office.get("audit")
        assert code == 401 and 'id="login"' in body  # idle too long: signed out on the server
    finally:
        c.stop()
