"""A visitor registered at one gate is admitted at another, with real `gate run`
daemons against one mosquitto and one `gate central` (issue 14, "Two gates in the
tests"): the guard at east registers a visitor on east's page (its POST, as the page's
script sends it); the operator vouches for east's key at central (`gate central keys
gate-add`); west, which has never seen the visitor, reads the QR east showed through its
camera (a folder of images) and lets them in; central knows the visitor and where they are.
"""
from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
import threading
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.core.tokens import key_id
from tests.conftest import ROOT
from tests.mqtt_broker import Broker, free_port
from tests.test_site_daemons import GATE, SITE, Central, wait_for


class Gate:
    """`gate run` for one gate: a lane `in` with no thermometer (a visitor's QR decides on
    its own), a camera that is a folder of images, and for east its guard page."""

    def __init__(self, tmp_path: Path, name: str, broker: Broker, central: Central, *, page_port: int | None = None,
                 camera: Path | None = None) -> None:
        self.name = name
        self.store = tmp_path / f"{name}.db"
        key = Ed25519PrivateKey.generate()
        self.key = tmp_path / f"{name}.key"
        if not self.key.exists():
            self.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            self.key.chmod(0o600)
            (tmp_path / f"{name}.pub").write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        cam = camera or tmp_path / f"{name}-camera"
        cam.mkdir(exist_ok=True)
        guard = (f'[guard]\nlisten = "127.0.0.1:{page_port}"\n' if page_port else '[guard]\nenabled = false\n')
        self.conf = tmp_path / f"{name}.toml"
        self.conf.write_text(
            f'[gate]\nid = "{name}"\nsite = "{SITE}"\n[store]\npath = "{self.store}"\n[keys]\nsigning = "{self.key}"\n'
            f'{guard}[visitors]\ndefault_length = "2h"\n[policy]\npassback = "hard"\n'
            f'[sync]\nbroker = "{broker.url}"\ncentral_keys = ["{central.pub}"]\nheartbeat_s = 1\nbackoff_s = [0.2, 1.0]\n'
            f'[[lanes]]\nname = "in"\ndirection = "in"\ncamera = {{ driver = "file", path = "{cam}" }}\n',
            encoding="utf-8")
        self.out: list[str] = []
        self.proc = subprocess.Popen([*GATE, "run", "-c", str(self.conf)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        threading.Thread(target=lambda: self.out.extend(self.proc.stdout or []), daemon=True).start()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.store.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5) as db:
                return db.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []

    def decisions(self) -> list[dict[str, Any]]:
        return [json.loads(b) for (b,) in self.rows("SELECT body FROM events WHERE type = 'decision'")]

    def vouched(self) -> dict[str, Any]:
        got = self.rows("SELECT value FROM meta WHERE key = 'gatekeys_gates'")
        return json.loads(got[0][0]) if got else {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def why(self) -> str:
        return f"{self.name} said:\n{''.join(self.out[-30:])}"


def register_visitor(port: int) -> dict[str, Any]:
    """What the guard page's visitor form sends, with the page's own CSRF token and cookie."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(f"http://127.0.0.1:{port}/", timeout=10).read().decode("utf-8")
    token = re.search(r'(?:name="csrf-token" content|name="csrf" value)="([^"]+)"', page)
    assert token, "no CSRF token on the guard page"
    body = json.dumps({"name": "刘洋", "id_last4": "1234", "phone_last4": "3300", "unit": "2-1-301",
                       "length": "2h"}).encode("utf-8")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/visitor", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "X-CSRF-Token": token.group(1)})
    with opener.open(req, timeout=10) as res:
        return json.loads(res.read().decode("utf-8"))


def test_a_visitor_registered_at_east_is_admitted_at_west(tmp_path: Path, broker: Broker) -> None:
    central = Central(tmp_path, broker)
    port = free_port()
    east = Gate(tmp_path, "east", broker, central, page_port=port)
    west = west_again = None
    try:
        assert wait_for(lambda: central.states().get("east") == "online", 30), east.why()
        assert wait_for(lambda: any("guard page" in line for line in east.out) or _answers(port), 30), east.why()
        visitor = register_visitor(port)
        assert visitor["ok"] and visitor["unit"] == "2-1-301", visitor
        qr = base64.b64decode(visitor["qr"].split(",", 1)[1])

        # The operator checks east's key id on east's status and vouches for it.
        kid = key_id(serialization.load_pem_public_key((tmp_path / "east.pub").read_bytes()))  # type: ignore[arg-type]
        central.cli("keys", "gate-add", "east", str(tmp_path / "east.pub"), "--expect", kid, "--note", "checked on site")

        # West hears central's list of gate keys and keeps it...
        west = Gate(tmp_path, "west", broker, central)
        assert wait_for(lambda: "east" in west.vouched(), 30), west.why()
        assert not west.decisions()
        west.stop()
        # ... so that after a restart the visitor's QR, shown to its camera, lets them in.
        (tmp_path / "west-camera" / "visitor.png").write_bytes(qr)
        west_again = Gate(tmp_path, "west", broker, central)
        got = wait_for(lambda: [(d["decision"], d["reason"], d.get("pass")) for d in west_again.decisions()], 30)
        assert got == [("allow", "ok", visitor["pass_id"])], west_again.why()
        # Central has the visitor (registered at east, host unit) and sees them inside.
        listed = wait_for(lambda: [json.loads(x) for x in central.cli("visitors", "--json").splitlines() if x.strip()], 30)
        assert [(v["pass"], v["unit"], v["gate"]) for v in listed] == [(visitor["pass_id"], "2-1-301", "east")], listed
    finally:
        for g in (west_again, west, east):
            if g is not None:
                g.stop()
        central.stop()


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
        return True
    except OSError:
        return False
