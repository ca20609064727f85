"""The guard page holds against the LAN (issue 12, finding 9), at the HTTP level.

Flask's test client stands in for browsers on other machines (its REMOTE_ADDR is
set per request) and for other programs on the gate itself; the lanes behind it
are real (a rehearsal on a drill clock)."""
from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

from gate.web import GuardPage
from tests.test_web import guard_env

LAN = {"REMOTE_ADDR": "192.0.2.7"}
PIN = "2468"
PASSWORD = "correct horse"


def secrets_conf(tmp_path: Path, *, pin: str | None = PIN, password: str | None = PASSWORD) -> dict[str, Any]:
    guard: dict[str, Any] = {}
    if pin is not None:
        f = tmp_path / "pin"
        f.write_text(pin + "\n")
        f.chmod(0o600)
        guard["pin_file"] = str(f)
    if password is not None:
        f = tmp_path / "pw"
        f.write_text(password + "\n")
        f.chmod(0o600)
        guard["password_file"] = str(f)
    return {"guard": guard}


def csrf_of(client: Any, environ: dict[str, str] | None = None, path: str = "/", **kw: Any) -> str:
    """Load a page as a browser would and take the CSRF token it carries."""
    r = client.get(path, environ_base=environ or {}, **kw)
    assert r.status_code == 200, (path, r.status_code)
    m = re.search(r'(?:name="csrf-token" content|name="csrf" value)="([^"]+)"', r.get_data(as_text=True))
    assert m, "no CSRF token on the page"
    return m.group(1)


def open_door(client: Any, token: str, environ: dict[str, str] | None = None, **extra: Any) -> Any:
    return client.post("/api/open", json={"lane": "in", "reason": "访客 visitor", **extra},
                       headers={"X-CSRF-Token": token}, environ_base=environ or {})


def lan_page(env: Any) -> GuardPage:
    """The same gate's page as configured for the LAN (not started: the test client needs no socket)."""
    return GuardPage(env.app, listen="0.0.0.0:0")


def test_a_lan_client_cannot_lock_the_kiosk_out(tmp_path: Path) -> None:
    """Wrong passwords from another machine lock that machine out, not the guard's PIN at the kiosk."""
    with guard_env(tmp_path, secrets_conf(tmp_path)) as env:
        page = lan_page(env)
        lan = page.flask.test_client()
        token = csrf_of(lan, LAN, "/login")
        for _ in range(5):
            r = lan.post("/login", data={"csrf": token, "password": "guess"}, environ_base=LAN)
            assert r.status_code == 200
        # The LAN client is locked out now, even with the right password ...
        r = lan.post("/login", data={"csrf": token, "password": PASSWORD}, environ_base=LAN)
        assert r.status_code == 200  # the form again, not the way in
        assert lan.get("/", environ_base=LAN).status_code == 302
        # ... but the guard at the kiosk unlocks with the PIN at once.
        kiosk = page.flask.test_client()
        ktoken = csrf_of(kiosk)
        r = kiosk.post("/api/unlock", json={"secret": PIN}, headers={"X-CSRF-Token": ktoken})
        assert r.status_code == 200, r.get_json()
        assert open_door(kiosk, ktoken).status_code == 202


def test_concurrent_guesses_are_counted_before_they_are_checked(tmp_path: Path) -> None:
    """12 guesses at once against a slow (hashed) PIN: only 5 are ever checked."""
    pin_hash = generate_password_hash(PIN, method="pbkdf2:sha256:400000")
    with guard_env(tmp_path, secrets_conf(tmp_path, pin=pin_hash, password=None)) as env:
        clients = [env.gp.flask.test_client() for _ in range(12)]
        tokens = [csrf_of(c) for c in clients]
        start = threading.Barrier(len(clients))
        answers: list[dict[str, Any]] = []

        def guess(i: int) -> None:
            start.wait()
            r = clients[i].post("/api/unlock", json={"secret": f"00{i:02d}"}, headers={"X-CSRF-Token": tokens[i]})
            assert r.status_code == 401
            answers.append(r.get_json())

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(answers) == 12
        checked = [a for a in answers if a["wrong"]]
        assert len(checked) == 5, f"{len(checked)} of 12 concurrent guesses were checked"
        assert all(a["locked_for"] > 0 for a in answers if not a["wrong"])
        # The right PIN, too, waits out the minute: the lockout holds for everyone from that client.
        r = clients[0].post("/api/unlock", json={"secret": PIN}, headers={"X-CSRF-Token": tokens[0]})
        assert r.status_code == 401 and not r.get_json()["wrong"]


def test_lock_revokes_a_copied_cookie(tmp_path: Path) -> None:
    with guard_env(tmp_path, secrets_conf(tmp_path, password=None)) as env:
        kiosk = env.gp.flask.test_client()
        token = csrf_of(kiosk)
        assert kiosk.post("/api/unlock", json={"secret": PIN}, headers={"X-CSRF-Token": token}).status_code == 200
        cookie = kiosk.get_cookie("session")
        assert cookie is not None
        # Someone copies the unlocked kiosk's cookie (and its page's token) ...
        thief = env.gp.flask.test_client()
        thief.set_cookie("session", cookie.value)
        # ... the guard presses Lock ...
        assert kiosk.post("/api/lock", json={}, headers={"X-CSRF-Token": token}).status_code == 200
        # ... and the copy opens nothing.
        r = open_door(thief, token)
        assert r.status_code in (401, 403), r.status_code
        # The kiosk's page goes on working: it asks for the PIN again (not "reload the page").
        r = open_door(kiosk, token)
        assert r.status_code == 401 and r.get_json()["error"] == "locked"
        assert open_door(kiosk, token, secret=PIN).status_code == 202
        env.settle()
        assert len(env.events("override")) == 1


def test_unlocking_starts_a_new_session(tmp_path: Path) -> None:
    """A cookie seen before the guard unlocked is not the unlocked session (no fixation)."""
    with guard_env(tmp_path, secrets_conf(tmp_path, password=None)) as env:
        kiosk = env.gp.flask.test_client()
        token = csrf_of(kiosk)
        before = kiosk.get_cookie("session")
        assert before is not None
        assert kiosk.post("/api/unlock", json={"secret": PIN}, headers={"X-CSRF-Token": token}).status_code == 200
        thief = env.gp.flask.test_client()
        thief.set_cookie("session", before.value)
        assert open_door(thief, token).status_code in (401, 403)
        assert open_door(kiosk, token).status_code == 202


def test_an_unknown_host_name_is_refused(tmp_path: Path) -> None:
    """DNS rebinding: a page from evil.example re-pointed at 127.0.0.1 reaches us with its own Host."""
    with guard_env(tmp_path) as env:  # no secret: localhost-only, actions need nothing else
        evil = env.gp.flask.test_client()
        r = evil.get("/", base_url="http://evil.example:8080/")
        assert r.status_code == 400 and "csrf-token" not in r.get_data(as_text=True)
        assert evil.get("/events", base_url="http://evil.example:8080/").status_code == 400
        r = evil.post("/api/open", json={"lane": "in", "reason": "访客 visitor"}, base_url="http://evil.example:8080/",
                      headers={"Origin": "http://evil.example:8080"})
        assert r.status_code == 400
        env.settle()
        assert env.events("override") == []
        # The names this machine answers to by default.
        for host in ("localhost:8080", "127.0.0.1:8080", "[::1]:8080", "localhost"):
            assert evil.get("/healthz", base_url=f"http://{host}/").status_code == 200, host


def test_the_host_allow_list_takes_the_listen_address_and_configured_names(tmp_path: Path) -> None:
    conf = secrets_conf(tmp_path)
    conf["guard"]["allowed_hosts"] = ["gate-east.local"]
    with guard_env(tmp_path, conf) as env:
        page = GuardPage(env.app, listen="192.0.2.10:8080")  # not started
        c = page.flask.test_client()
        assert c.get("/login", base_url="http://192.0.2.10:8080/", environ_base=LAN).status_code == 200
        assert c.get("/login", base_url="http://gate-east.local:8080/", environ_base=LAN).status_code == 200
        assert c.get("/login", base_url="http://GATE-EAST.LOCAL./", environ_base=LAN).status_code == 200
        assert c.get("/login", base_url="http://evil.example/", environ_base=LAN).status_code == 400
        assert c.get("/login", base_url="http://192.0.2.99/", environ_base=LAN).status_code == 400


def test_login_always_checks_csrf(tmp_path: Path) -> None:
    """Login CSRF: a form posted from another site, with no cookie at all, signs nobody in."""
    with guard_env(tmp_path, secrets_conf(tmp_path)) as env:
        page = lan_page(env)
        c = page.flask.test_client()
        r = c.post("/login", data={"csrf": "", "password": PASSWORD}, environ_base=LAN)
        assert r.status_code != 302
        assert c.get("/", environ_base=LAN).status_code == 302  # still not signed in


def test_localhost_needs_the_pin_too(tmp_path: Path) -> None:
    """Any program on the gate can load the page; with a PIN set it still cannot open the door."""
    with guard_env(tmp_path, secrets_conf(tmp_path, password=None)) as env:
        local = env.gp.flask.test_client()
        token = csrf_of(local)
        r = open_door(local, token)
        assert r.status_code == 401 and r.get_json()["error"] == "locked"
        assert open_door(local, token, secret="1111").status_code == 401
        env.settle()
        assert env.events("override") == []
        assert open_door(local, token, secret=PIN).status_code == 202


def read_event(stream: Any) -> str | None:
    """The name of the next server-sent event on a test-client stream (pings skipped); None at its end."""
    buf = ""
    for chunk in stream:
        buf += chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            for line in block.splitlines():
                if line.startswith("event: "):
                    return line[7:]
    return None


def signed_in(page: GuardPage, environ: dict[str, str]) -> Any:
    c = page.flask.test_client()
    token = csrf_of(c, environ, "/login")
    assert c.post("/login", data={"csrf": token, "password": PASSWORD}, environ_base=environ).status_code == 302
    return c


def test_streams_from_the_lan_never_evict_the_kiosk(tmp_path: Path) -> None:
    with guard_env(tmp_path, secrets_conf(tmp_path)) as env:
        page = lan_page(env)
        page.live.start()
        try:
            kiosk = page.flask.test_client().get("/events", buffered=False)
            assert kiosk.status_code == 200
            kiosk_stream = iter(kiosk.response)
            assert read_event(kiosk_stream) == "snapshot"
            machines = [{"REMOTE_ADDR": "192.0.2.7"}, {"REMOTE_ADDR": "192.0.2.8"}]
            clients = [signed_in(page, m) for m in machines]
            others = []
            for i in range(10):
                r = clients[i % 2].get("/events", buffered=False, environ_base=machines[i % 2])
                assert r.status_code in (200, 503)
                others.append(r)
            assert page.live.subscribers <= page.live.max_subscribers
            page.live.publish("health", {"ok": True})
            assert read_event(kiosk_stream) == "health"  # the kiosk's stream is still open
            # Each machine keeps at most two streams (its newest); its older ones ended.
            live = 0
            for r in (r for r in others if r.status_code == 200):
                stream = iter(r.response)
                assert read_event(stream) == "snapshot"
                live += read_event(stream) == "health"
            assert 1 <= live <= 4, live
            for r in others:
                r.close()
            kiosk.close()
        finally:
            page.live.stop()


def test_a_world_readable_secret_is_warned_about_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conf = secrets_conf(tmp_path, password=None)
    pin = Path(conf["guard"]["pin_file"])
    pin.chmod(0o644)
    caplog.set_level(logging.WARNING)
    with guard_env(tmp_path / "a", conf):
        pass
    warned = [r.getMessage() for r in caplog.records if str(pin) in r.getMessage()]
    assert warned and "readable by its group and everyone" in warned[0] and "chmod 600" in warned[0], warned
    caplog.clear()
    pin.chmod(0o600)
    with guard_env(tmp_path / "b", conf):
        pass
    assert not [r for r in caplog.records if "readable by" in r.getMessage()]
    assert os.stat(pin).st_mode & 0o777 == 0o600
