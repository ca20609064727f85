"""MQTT over TLS with a site CA and client certificates (the production transport),
and the retained offline status a dead gate leaves behind (its last will)."""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import textwrap
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from tests.crash_harness import Daemon, wait_until, write_config, write_fast_demo
from tests.mqtt_broker import Broker
from tests.sync_helpers import central_pub


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(d: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("site CA")).issuer_name(_name("site CA"))
        .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(d / "ca", ca_key, ca)
    for cn, san in (("broker", True), ("drill", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        _write(d / cn, key, b.sign(ca_key, hashes.SHA256()))


def test_events_over_tls_with_client_certificates(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_pki(tmp_path)
    b = broker_factory(extra=[f"cafile {tmp_path / 'ca.crt'}", f"certfile {tmp_path / 'broker.crt'}",
                              f"keyfile {tmp_path / 'broker.key'}", "require_certificate true", "use_identity_as_username true"])
    url = f"mqtts://127.0.0.1:{b.port}"
    got: list[dict] = []  # type: ignore[type-arg]
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="sub", protocol=mqtt.MQTTv5)
    sub.tls_set(ca_certs=str(tmp_path / "ca.crt"), certfile=str(tmp_path / "drill.crt"), keyfile=str(tmp_path / "drill.key"))
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("gate/v1/drill/drill/#", qos=1)
    sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    sub.connect("127.0.0.1", b.port)
    sub.loop_start()
    d = drill_file.parse(textwrap.dedent(f"""
        name: tls
        start: "2026-11-22T10:00:00+08:00"
        config:
          sync: {{broker: "{url}", ca_file: "{tmp_path / 'ca.crt'}", cert_file: "{tmp_path / 'drill.crt'}", key_file: "{tmp_path / 'drill.key'}", central_keys: ["{central_pub(tmp_path)}"], receipts: false}}
        passes: [{{id: r1, holder: 王芳, unit: 3-2-501, category: resident}}]
        """))
    # The transport is what is tested here: the broker's PUBACK (with a subscriber
    # present) counts, as for a central that sends no receipts.
    with Rehearsal(d) as r:
        r.step(Step(at=0, lane="in", qr="r1"))
        r.step(Step(at=0.5, lane="in", temperature=36.5))
        assert r.drain(30), (r.app.sync.link.last_error, r.app.sync.publisher.counters.snapshot(), r.app.sync.publisher.pending)
    assert wait_until(lambda: any(e.get("decision") == "allow" for e in got), 10)
    sub.loop_stop()
    # Without a client certificate the broker refuses the gate: nothing is marked sent.
    d2 = d.model_copy(update={"config": {"sync": {"broker": url, "ca_file": str(tmp_path / "ca.crt"), "central_keys": [central_pub(tmp_path)]}}})
    with Rehearsal(d2) as r:
        r.step(Step(at=0, lane="in", qr="r1"))
        assert not r.drain(3)
        assert r.app.sync.link.last_error


def test_a_killed_gate_is_shown_offline_by_its_last_will(broker: Broker, tmp_path: Path) -> None:
    script = write_fast_demo(tmp_path, people=50, interval_s=0.5)
    cfg = write_config(tmp_path, store=tmp_path / "g.db", script=script, broker=broker.url)
    status: list[dict] = []  # type: ignore[type-arg]
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="watch", protocol=mqtt.MQTTv5)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("gate/v1/crash/g1/status", qos=1)
    sub.on_message = lambda c, u, m: status.append(json.loads(m.payload))
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    daemon = Daemon(cfg, tmp_path)
    daemon.start()
    try:
        assert wait_until(lambda: any(s.get("online") for s in status), 30)
        daemon.kill()
        assert wait_until(lambda: status and status[-1].get("online") is False, 90)  # keepalive × 1.5 at most
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.proc.kill()
        sub.loop_stop()
    assert status[-1]["gate"] == "g1"
