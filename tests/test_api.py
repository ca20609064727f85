"""The local HTTP API (/api/v1, gate/web/api.py) against a real `gate run` with the
guard page: the demo's simulated lanes without its scripted people, tokens made and
removed with the real `gate tokens` commands while the gate runs."""
from __future__ import annotations

import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from gate.desk import api_tokens
from sync import codec
from tests.conftest import ROOT
from tests.helpers import demo_config
from tests.mqtt_broker import free_port

PIN = "4821"


# ---------------------------------------------------------------- a running gate


class Gate:
    def __init__(self, cfg: Path, proc: subprocess.Popen[str], port: int) -> None:
        self.cfg = cfg
        self.proc = proc
        self.port = port

    def call(self, method: str, path: str, *, token: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None, source: str | None = None) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body or text) of one request, from 127.0.0.1 or `source` (another loopback address)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                          source_address=(source, 0) if source else None)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read().decode("utf-8")
            got = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw
        return resp.status, got, parsed

    def tokens(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gate.cli.main", "tokens", *args, "-c", str(self.cfg)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    def add_token(self, name: str, can: str) -> str:
        done = self.tokens("add", name, "--can", can)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def lane(self, token: str, name: str) -> dict[str, Any]:
        status, _, body = self.call("GET", "/api/v1/lanes", token=token)
        assert status == 200, body
        return next(lane for lane in body["lanes"] if lane["name"] == name)


def gate_config(tmp_path: Path, port: int, *, api: bool) -> Path:
    """config/demo.toml's lanes without its scripted people; the API on or off; a guard PIN."""
    cfg = demo_config(tmp_path, port)
    text = cfg.read_text(encoding="utf-8")
    start = text.index("[demo]")
    end = text.index("[[lanes]]", start)
    text = text[:start] + text[end:]  # no scripted people: only the tests open the door
    (tmp_path / "pin").write_text(PIN + "\n")
    os.chmod(tmp_path / "pin", 0o600)
    text += (f'api = {"true" if api else "false"}\n'
             f'tokens_file = "{tmp_path / "api-tokens.json"}"\npin_file = "{tmp_path / "pin"}"\n')
    cfg.write_text(text, encoding="utf-8")
    return cfg


def start_gate(tmp_path: Path, *, api: bool) -> Iterator[Gate]:
    port = free_port()
    cfg = gate_config(tmp_path, port, api=api)
    proc = subprocess.Popen([sys.executable, "-m", "gate.cli.main", "run", "-c", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        url = None
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("guard page: "):
                url = line.split(": ", 1)[1].strip()
        assert url == f"http://127.0.0.1:{port}/", (url, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield Gate(cfg, proc, port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        err = proc.stderr.read() if proc.stderr else ""
        assert rc == 0, err


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    yield from start_gate(tmp_path_factory.mktemp("api"), api=True)


def overrides(g: Gate, token: str) -> list[dict[str, Any]]:
    status, _, body = g.call("GET", "/api/v1/events?since_seq=0&limit=1000", token=token)
    assert status == 200, body
    return [e for e in body["events"] if e["type"] == "override"]


# ---------------------------------------------------------------- the tokens file


def test_tokens_file_keeps_only_a_hash_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "t" / "tokens.json"
    token = api_tokens.add(path, "intercom", ("open",))
    assert token.startswith("gt1.") and len(token) > 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and token.split(".")[2] not in text
    seen = api_tokens.TokensFile(path)
    assert seen.check(token).name == "intercom"
    assert seen.check(token + "x") is None
    with pytest.raises(api_tokens.TokensError, match="exists already"):
        api_tokens.add(path, "intercom", ("read",))
    with pytest.raises(api_tokens.TokensError, match="unknown right"):
        api_tokens.parse_rights("open,admin")
    api_tokens.remove(path, "intercom")
    assert seen.check(token) is None  # read again: removed at once


def test_tokens_list_shows_names_rights_and_last_four_never_the_token(gate: Gate) -> None:
    token = gate.add_token("lister", "read")
    listed = gate.tokens("list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["lister"]["rights"] == ["read"]
    assert rows["lister"]["id_last4"] == token.split(".")[1][-4:]
    assert token not in listed.stdout and token.split(".")[2] not in listed.stdout
    plain = gate.tokens("list")
    assert "lister" in plain.stdout and token.split(".")[2] not in plain.stdout


# ---------------------------------------------------------------- the API


def test_health_needs_no_token_and_says_only_ok(gate: Gate) -> None:
    status, _, body = gate.call("GET", "/api/v1/health")
    assert status == 200 and body == {"ok": True}


def test_no_token_is_401_and_nothing_opens(gate: Gate) -> None:
    reader = gate.add_token("watcher", "read")
    before = len(overrides(gate, reader))
    status, headers, body = gate.call("POST", "/api/v1/lanes/in/open", body={"reason": "no token"})
    assert status == 401 and body["error"] == "no_token" and "detail" in body
    assert headers["www-authenticate"].startswith("Bearer")
    status, headers, body = gate.call("POST", "/api/v1/lanes/in/open", token="gt1.000000000000.nope",
                                      body={"reason": "bad token"})
    assert status == 401 and body["error"] == "bad_token" and 'error="invalid_token"' in headers["www-authenticate"]
    status, _, _ = gate.call("GET", "/api/v1/lanes")
    assert status == 401
    time.sleep(0.5)
    assert len(overrides(gate, reader)) == before
    assert gate.lane(reader, "in")["door"]["lock"] == "locked"


def test_a_read_only_token_cannot_open(gate: Gate) -> None:
    reader = gate.add_token("dashboard", "read")
    status, headers, body = gate.call("POST", "/api/v1/lanes/in/open", token=reader, body={"reason": "let me in"})
    assert status == 403 and body["error"] == "forbidden"
    assert 'scope="open"' in headers["www-authenticate"]
    time.sleep(0.5)
    assert not [e for e in overrides(gate, reader) if e["who"] == "api:dashboard"]
    assert gate.lane(reader, "in")["door"]["lock"] == "locked"
    # ... and an open-only token cannot read the events.
    opener = gate.add_token("buzzer", "open")
    status, _, body = gate.call("GET", "/api/v1/events", token=opener)
    assert status == 403 and body["error"] == "forbidden"


def test_an_open_token_opens_the_door_and_the_event_names_it(gate: Gate) -> None:
    token = gate.add_token("intercom", "open,read")
    lanes_status, _, lanes = gate.call("GET", "/api/v1/lanes", token=token)
    assert lanes_status == 200 and lanes["gate"] == "demo-gate"
    by_name = {lane["name"]: lane for lane in lanes["lanes"]}
    assert set(by_name) == {"in", "out"}
    assert by_name["in"]["direction"] == "in" and by_name["in"]["door"] == {"lock": "locked", "contact": "closed", "mode": "normal"}
    assert by_name["out"]["door"]["lock"] is None  # no relay on the way out
    assert by_name["in"]["alive"] is True and isinstance(by_name["in"]["devices"], dict)

    status, _, body = gate.call("POST", "/api/v1/lanes/in/open", token=token, body={"reason": "parcel for 3-2-501"})
    assert status == 202 and body == {"ok": True, "lane": "in", "who": "api:intercom"}
    deadline = time.monotonic() + 2
    while gate.lane(token, "in")["door"]["lock"] != "unlocked":
        assert time.monotonic() < deadline, "the relay did not unlock"
        time.sleep(0.05)
    mine = [e for e in overrides(gate, token) if e["who"] == "api:intercom"]
    assert len(mine) == 1
    assert mine[0]["action"] == "open_door" and mine[0]["reason"] == "parcel for 3-2-501" and mine[0]["lane"] == "in"
    codec.decode(json.dumps(mine[0]).encode(), "event")  # as central will take it
    status, _, body = gate.call("GET", f"/api/v1/events?since_seq={mine[0]['seq'] - 1}&limit=5", token=token)
    assert status == 200 and body["events"][0]["id"] == mine[0]["id"]
    assert any(e["type"] == "door" and e["action"] == "unlock" for e in body["events"])
    assert body["next_since_seq"] == body["events"][-1]["seq"]


def test_bad_requests_are_json_errors(gate: Gate) -> None:
    token = gate.add_token("nodered", "open,read")
    cases = [
        ("POST", "/api/v1/lanes/nowhere/open", {"reason": "x"}, 404, "not_found"),
        ("POST", "/api/v1/lanes/in/open", {}, 400, "bad_request"),
        ("POST", "/api/v1/lanes/in/open", {"reason": "   "}, 400, "bad_request"),
        ("POST", "/api/v1/lanes/in/open", {"reason": "x" * 201}, 400, "bad_request"),
        ("POST", "/api/v1/lanes/in/open", {"reason": "a\nb"}, 400, "bad_request"),
        ("POST", "/api/v1/lanes/in/open", {"reason": "x", "lane": "out"}, 400, "bad_request"),
        ("POST", "/api/v1/lanes/in/open", "not json", 400, "bad_request"),
        ("POST", "/api/v1/lanes/out/open", {"reason": "x"}, 409, "no_relay"),
        ("GET", "/api/v1/events?limit=0", None, 400, "bad_request"),
        ("GET", "/api/v1/events?since_seq=abc", None, 400, "bad_request"),
        ("GET", "/api/v1/nothing-here", None, 404, "not_found"),
        ("DELETE", "/api/v1/lanes", None, 405, "method_not_allowed"),
    ]
    for method, path, body, want, code in cases:
        status, _, got = gate.call(method, path, token=token, body=body)
        assert (status, got["error"]) == (want, code), (method, path, body, got)
        assert got["detail"]
    status, _, _ = gate.call("POST", "/api/v1/lanes/in/open", token=token, body={"reason": "x" * 200})
    assert status == 202  # 200 characters is allowed


def test_the_host_allow_list_applies(gate: Gate) -> None:
    token = gate.add_token("rebind", "read")
    status, _, _ = gate.call("GET", "/api/v1/lanes", token=token, headers={"Host": "evil.example"})
    assert status == 400
    status, _, _ = gate.call("GET", "/api/v1/health", headers={"Host": "evil.example"})
    assert status == 400


def test_a_removed_token_stops_working_in_the_running_gate(gate: Gate) -> None:
    token = gate.add_token("old-intercom", "open,read")
    assert gate.call("GET", "/api/v1/lanes", token=token)[0] == 200
    done = gate.tokens("remove", "old-intercom")
    assert done.returncode == 0, done.stderr
    t0 = time.monotonic()
    while True:
        status, _, body = gate.call("GET", "/api/v1/lanes", token=token)
        if status == 401:
            break
        assert time.monotonic() - t0 < 2.0, f"still accepted after removal: {status} {body}"
        time.sleep(0.05)
    status, _, _ = gate.call("POST", "/api/v1/lanes/in/open", token=token, body={"reason": "after removal"})
    assert status == 401
    assert "old-intercom" not in gate.tokens("list").stdout


def page_session(gate: Gate) -> dict[str, str]:
    """The headers of a browser session on the guard page, unlocked with the guard's PIN."""
    status, headers, html = gate.call("GET", "/")
    assert status == 200
    cookie = headers["set-cookie"].split(";", 1)[0]
    csrf = html.split('name="csrf-token" content="')[1].split('"')[0]
    status, headers, body = gate.call("POST", "/api/unlock", body={"secret": PIN},
                                      headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert status == 200 and body["unlocked"] is True, body
    cookie = headers["set-cookie"].split(";", 1)[0]  # unlocking gives the browser a new id
    return {"Cookie": cookie, "X-CSRF-Token": csrf}


def test_the_guard_page_session_does_not_authorize_api_calls(gate: Gate) -> None:
    # A browser session on the page, unlocked with the guard's PIN: it may act on the page ...
    page_headers = page_session(gate)
    assert gate.call("GET", "/api/state", headers=page_headers)[0] == 200
    # ... but the API answers only to a bearer token.
    for method, path, body in (("GET", "/api/v1/lanes", None), ("GET", "/api/v1/events", None),
                               ("POST", "/api/v1/lanes/in/open", {"reason": "from the page's cookie"})):
        status, headers, got = gate.call(method, path, body=body, headers=page_headers)
        assert status == 401 and got["error"] == "no_token", (path, got)
        assert "set-cookie" not in headers
    # A bearer token's answers set no cookie either.
    token = gate.add_token("no-cookies", "read")
    assert "set-cookie" not in gate.call("GET", "/api/v1/lanes", token=token)[1]


def test_a_lane_in_lockdown_is_not_opened_through_the_api(gate: Gate) -> None:
    token = gate.add_token("lockdown-check", "open,read")
    page_headers = page_session(gate)

    def mode(m: str, why: str) -> None:
        status, _, body = gate.call("POST", "/api/mode", body={"lane": "in", "mode": m, "reason": why}, headers=page_headers)
        assert status == 202, body
        deadline = time.monotonic() + 2
        while gate.lane(token, "in")["door"]["mode"] != m:
            assert time.monotonic() < deadline, f"mode {m} not taken"
            time.sleep(0.05)

    deadline = time.monotonic() + 10
    while gate.lane(token, "in")["door"]["lock"] != "locked":  # an earlier test's opening relocks first
        assert time.monotonic() < deadline
        time.sleep(0.1)
    mode("locked", "封控 lockdown")
    try:
        status, _, body = gate.call("POST", "/api/v1/lanes/in/open", token=token, body={"reason": "during lockdown"})
        assert status == 409 and body["error"] == "door_locked", body
        time.sleep(0.3)
        assert gate.lane(token, "in")["door"]["lock"] == "locked"
        assert not [e for e in overrides(gate, token) if e["who"] == "api:lockdown-check"]
    finally:
        mode("normal", "恢复正常 back to normal")


def test_wrong_tokens_are_throttled_per_client_address(gate: Gate) -> None:
    good = gate.add_token("throttle-check", "read")
    guesser = "127.0.0.9"  # another loopback address: its lockout must not shut 127.0.0.1 out
    statuses = [gate.call("GET", "/api/v1/lanes", token=f"gt1.000000000000.guess{i}", source=guesser)[0]
                for i in range(8)]
    assert statuses[:4] == [401] * 4 and 429 in statuses, statuses
    status, headers, body = gate.call("GET", "/api/v1/lanes", token=good, source=guesser)
    assert status == 429 and body["error"] == "throttled" and int(headers["retry-after"]) > 0  # even a right token waits
    assert gate.call("GET", "/api/v1/lanes", token=good)[0] == 200  # the kiosk's address is not locked out


def test_a_broken_tokens_file_stops_gate_run_with_a_message(tmp_path: Path) -> None:
    cfg = gate_config(tmp_path, free_port(), api=True)
    (tmp_path / "api-tokens.json").write_text("{not json")
    done = subprocess.run([sys.executable, "-m", "gate.cli.main", "run", "-c", str(cfg)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "guard.tokens_file" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_api_is_404_when_off(tmp_path: Path) -> None:
    for g in start_gate(tmp_path, api=False):
        token = api_tokens.add(tmp_path / "api-tokens.json", "intercom", ("open", "read"))
        for method, path, body in (("GET", "/api/v1/health", None), ("GET", "/api/v1/lanes", None),
                                   ("POST", "/api/v1/lanes/in/open", {"reason": "api off"})):
            status, _, _ = g.call(method, path, token=token, body=body)
            assert status == 404, path
        assert g.call("GET", "/healthz")[0] == 200  # the page itself runs
