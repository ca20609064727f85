"""Keys and passwords stay in their files: never in logs, events or what goes upstream."""
from __future__ import annotations

import logging
import sqlite3
import textwrap
from pathlib import Path

import pytest

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from gate.core.tokens import new_keypair
from tests.mqtt_broker import Broker, make_password_file
from tests.sync_helpers import start_central


def test_no_secret_in_logs_events_or_status(tmp_path: Path, broker_factory, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Gate-PW-7781"
    b0 = Broker()
    pw = make_password_file(b0.dir / "passwd", {"drill": secret, "central": "central-pw"})
    b = broker_factory(extra=[f"password_file {pw}", "allow_anonymous false"])
    pwfile = tmp_path / "mqtt.pw"
    pwfile.write_text(secret + "\n", encoding="utf-8")
    priv, _ = new_keypair(tmp_path / "keys", "gate")
    key_pem = priv.read_text()
    key_body = "".join(key_pem.splitlines()[1:-1])
    store = tmp_path / "g.db"
    d = drill_file.parse(textwrap.dedent(f"""
        name: secrets
        start: "2026-11-22T10:00:00+08:00"
        config:
          keys: {{signing: "{priv}"}}
          sync: {{broker: "{b.url}", username: drill, password_file: "{pwfile}"}}
        passes: [{{id: r1, holder: 王芳, unit: 3-2-501, category: resident}}]
        """))
    with Rehearsal(d, store_path=store) as r:
        (tmp_path / "central.pw").write_text("central-pw\n", encoding="utf-8")
        central = start_central(tmp_path / "central", b.url, r.keys.central,
                                extra=f'username = "central"\npassword_file = "{tmp_path / "central.pw"}"\n')
        r.step(Step(at=0, lane="in", qr="r1"))
        r.step(Step(at=0.5, lane="in", temperature=36.5))
        assert r.drain(30), r.app.sync.link.last_error
        central.stop()
        status = r.app.sync.heartbeat.status(r.app.open_store())
    text = caplog.text
    assert secret not in text and key_body[:40] not in text
    con = sqlite3.connect(store)
    bodies = " ".join(row[0] for row in con.execute("SELECT body FROM events"))
    meta = " ".join(str(v) for (v,) in con.execute("SELECT value FROM meta"))
    assert secret not in bodies and key_body[:40] not in bodies and key_body[:40] not in meta
    assert secret not in str(status)
    assert priv.stat().st_mode & 0o077 == 0  # readable by its owner only
