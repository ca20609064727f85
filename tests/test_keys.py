"""Keys have roles (issue 12, finding 6): a key trusted for QR passes signs nothing
else, and central withdraws a pass-signing key at every gate with a signed, versioned
key list. Against a real mosquitto and, for withdrawal, the real `gate central`."""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate import config as cfgmod
from gate.drill.runner import Rehearsal
from gate.core.tokens import PassToken, key_id, load_private, new_keypair, sign
from gate.store.database import Store
from sync import codec
from sync.central import Central, load_central_config
from tests.conftest import ROOT
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, trust_central
from tests.test_sync import DRILL, PREFIX, decisions, enter

wait_for = Listener.wait_for


def signed(obj: dict, key: Ed25519PrivateKey) -> bytes:  # type: ignore[type-arg]
    return codec.encode(codec.sign(obj, key))


def now_iso() -> str:
    return datetime.now().astimezone().isoformat()


def versions(r: Rehearsal) -> tuple[int, str | None, int]:
    s = r.app.open_store()
    try:
        return s.passes_version(), s.get_meta("policy_version"), s.pass_count()
    finally:
        s.close()


# ---------------------------------------------------------------- config


def test_sync_without_central_keys_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    # The config of finding 6: a desk key trusted for printed passes, central's key
    # beside it, and no [sync] central_keys. It used to make both keys central's.
    cfg = tmp_path / "gate.toml"
    cfg.write_text('[keys]\ntrusted = ["keys/central.pub", "keys/desk.pub"]\n[sync]\nbroker = "mqtt://127.0.0.1:1883"\n'
                   '[[lanes]]\nname = "in"\ndirection = "in"\n', encoding="utf-8")
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load(cfg)
    assert f"{cfg}: sync.central_keys: required with [sync]" in str(err.value)
    cfg.write_text(cfg.read_text().replace('broker = "mqtt://127.0.0.1:1883"\n',
                                           'broker = "mqtt://127.0.0.1:1883"\ncentral_keys = ["keys/central.pub"]\n'))
    conf = cfgmod.load(cfg)
    assert conf.sync is not None and conf.sync.central_keys == [tmp_path / "keys/central.pub"]
    assert len(conf.keys.trusted) == 2  # the lists stay apart


# ---------------------------------------------------------------- the three abuse cases


def test_a_pass_only_key_opens_no_door_pins_no_policy_and_signs_no_batch(broker: Broker) -> None:
    desk = Ed25519PrivateKey.generate()
    with trust_central(Rehearsal(DRILL, broker=broker.url)) as r:
        r.app.keyring.add(desk.public_key())  # [keys] trusted: the desk's printed passes
        assert r.app.sync.link.wait_connected(10)
        down = r.app.sync.downstream
        c = Listener(broker.port, topic="none", client_id="central-test")
        exp = (datetime.now().astimezone() + timedelta(minutes=5)).isoformat()
        # 1. open_door signed by the desk key
        cmd = {"type": "cmd", "cmd": "open_door", "gate": "drill", "lane": "in", "reason": "let me in",
               "nonce": secrets.token_hex(16), "ts": now_iso(), "expires": exp, "by": "desk"}
        c.publish(f"{PREFIX}/drill/cmd", signed(cmd, desk))
        # 2. a policy version 77 signed by the desk key: everyone admitted at any temperature
        c.publish(f"{PREFIX}/policy", signed({"type": "policy", "version": 77, "ts": now_iso(), "by": "desk",
                                              "policy": {"fever_c": 42.0}}, desk), retain=True)
        # 3. a pass batch signed by the desk key: r1 revoked, a new pass, version 5
        batch = {"type": "passes", "from_version": 0, "to_version": 5, "ts": now_iso(), "changes": [
            {"op": "upsert", "pass": {"id": "r1", "category": "resident", "revoked": True}},
            {"op": "upsert", "pass": {"id": "x9", "category": "resident", "card": "999"}}]}
        c.publish(f"{PREFIX}/passes", signed(batch, desk))
        assert wait_for(lambda: (down.counters.get("cmd_forged"), down.counters.get("policy_forged"),
                                 down.counters.get("passes_forged")) == (1, 1, 1), 10), down.counters
        assert down.counters.get("cmd_open_door") == 0 and down.counters.get("policies_applied") == 0
        assert not [rec for rec in r.records if rec.type == "override"]  # no door opened for the desk key
        assert r.app.policy_version() == 0
        assert versions(r) == (0, None, 2)  # no stored version moved, no pass added
        # Central's real policy (version 3, far below 77) still applies afterwards...
        c.publish(f"{PREFIX}/policy", signed({"type": "policy", "version": 3, "ts": now_iso(), "by": "health-office",
                                              "policy": {"fever_c": 37.0, "passback": "off"}}, r.keys.central), retain=True)
        assert wait_for(lambda: down.counters.get("policies_applied") == 1, 10), down.counters
        assert r.app.policy_version() == 3 and versions(r)[1] == "3"
        enter(r, 0, "r1", 37.1)
        assert decisions(r) == [("r1", "retest", "high_temperature")]  # 37.0 is in force, not 42.0
        # ...and the desk key still does the one thing it is trusted for: a printed pass.
        r.tokens["d1"] = sign(PassToken("d1", "visitor", "1-1-101"), desk)
        enter(r, 30, "d1", 36.5)
        assert decisions(r)[-1] == ("d1", "allow", "ok")
        c.close()


def test_broker_without_central_keys_takes_nothing_from_central(broker: Broker) -> None:
    # `--broker` on a config without [sync]: events go up, and nothing signed by a key of
    # [keys] trusted is taken for central's (it used to be: the door opened).
    with Rehearsal(DRILL, broker=broker.url) as r:
        assert r.app.sync.link.wait_connected(10)
        assert r.app.sync.downstream is None
        # It stands in for central (receives everything the gate sends): with no subscriber
        # at all, PUBACK 16 would rightly never count as delivered.
        listener = Listener(broker.port, topic=f"{PREFIX}/drill/#", client_id="central-test")
        exp = (datetime.now().astimezone() + timedelta(minutes=5)).isoformat()
        cmd = {"type": "cmd", "cmd": "open_door", "gate": "drill", "lane": "in", "reason": "x",
               "nonce": secrets.token_hex(16), "ts": now_iso(), "expires": exp, "by": "desk"}
        listener.publish(f"{PREFIX}/drill/cmd", signed(cmd, r.keys.central))
        enter(r, 0)
        assert r.drain(20)
        assert wait_for(lambda: any(e.get("decision") == "allow" for e in listener.on("/events")), 10)
        assert not [rec for rec in r.records if rec.type == "override"]
        listener.close()


# ---------------------------------------------------------------- withdrawal through central


def _central(tmp_path: Path, broker: Broker, key: Ed25519PrivateKey) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "central.key").write_bytes(pem)
    (tmp_path / "central.key").chmod(0o600)
    conf = tmp_path / "central.toml"
    conf.write_text(f'site = "drill"\nbroker = "{broker.url}"\nsigning_key = "central.key"\ndb = "central.db"\npoll_s = 0.1\n')
    return conf


def _cli(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gate.cli.main", "central", "-c", str(conf), "keys", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_central_withdraws_a_desk_key_at_the_gate_for_good(broker: Broker, tmp_path: Path) -> None:
    _, desk_pub = new_keypair(tmp_path / "keys", "desk")
    desk = load_private(tmp_path / "keys" / "desk.key")
    desk_token = sign(PassToken("d1", "visitor", "1-1-101"), desk)
    store = tmp_path / "gate.db"
    with trust_central(Rehearsal(DRILL, broker=broker.url, store_path=store)) as r:
        r.app.keyring.add(desk.public_key())
        r.tokens["d1"] = desk_token
        conf = _central(tmp_path, broker, r.keys.central)
        c = Central(load_central_config(conf)).start()
        try:
            assert c.wait_connected(10) and r.app.sync.link.wait_connected(10)
            down = r.app.sync.downstream
            enter(r, 0, "d1")
            assert decisions(r) == [("d1", "allow", "ok")]
            # v1 withdraws an old key; the list is kept to be replayed later.
            old = _cli(conf, "withdraw", "0badc0de", "--note", "printer sold")
            assert old.returncode == 0, old.stderr
            assert wait_for(lambda: down.counters.get("keylist_applied") == 1, 10), down.counters
            v1 = json.loads(_cli(conf, "list", "--json").stdout)
            assert v1["version"] == 1 and v1["withdrawn"] == ["0badc0de"]
            # v2 withdraws the desk key (named by its public key file, as an operator would).
            res = _cli(conf, "withdraw", str(desk_pub), "--note", "desk PC stolen")
            assert res.returncode == 0, res.stderr
            assert "key list version 2 published" in res.stdout
            assert wait_for(lambda: down.counters.get("keylist_applied") == 2, 10), down.counters
            enter(r, 30, "d1")
            assert decisions(r)[-1][1:] == ("deny", "forged")
            enter(r, 60, "r1")  # central's own passes are untouched
            assert decisions(r)[-1] == ("r1", "allow", "ok")
            # The older list, replayed (retained, as a broker might hold it), gives nothing back.
            replay = Listener(broker.port, topic="none", client_id="replayer")
            replay.publish(f"{PREFIX}/keys", codec.encode(v1), retain=True)
            assert wait_for(lambda: down.counters.get("keylist_old") == 1, 10), down.counters
            enter(r, 90, "d1")
            assert decisions(r)[-1][1:] == ("deny", "forged")
            replay.close()
            listed = _cli(conf, "list")
            assert f"{key_id(desk.public_key())}  withdrawn  desk PC stolen" in listed.stdout
            # A broker restart without persistence loses the retained list: the running
            # central sends it again, so a gate set up later still learns it.
            central_pub = tmp_path / "central.pub"
            central_pub.write_bytes(r.keys.central_pub.read_bytes())
            broker.restart()
            other = DRILL.model_copy(update={"config": {**DRILL.config, "gate": {"id": "late", "site": "drill"}}})
            late = Rehearsal(other, broker=broker.url, store_path=tmp_path / "late.db")
            with trust_central(late, [central_pub]):
                late.app.keyring.add(desk.public_key())
                late.tokens["d1"] = desk_token
                assert wait_for(lambda: late.app.sync.downstream.counters.get("keylist_applied") == 1, 20), \
                    late.app.sync.downstream.counters
                enter(late, 0, "d1")
                assert [d[1:] for d in decisions(late)] == [("deny", "forged")]
            # That gate restarted with no broker at all: the withdrawal comes from its store.
            with Rehearsal(other, store_path=tmp_path / "late.db") as again:
                again.app.keyring.add(desk.public_key())
                again.tokens["d1"] = desk_token
                enter(again, 0, "d1")
                assert [d[1:] for d in decisions(again)] == [("deny", "forged")]
            # Only a newer list gives a key back.
            assert r.app.sync.link.wait_connected(20)
            back = _cli(conf, "restore", str(desk_pub))
            assert back.returncode == 0 and "key list version 3 published" in back.stdout, back.stderr
            assert wait_for(lambda: down.counters.get("keylist_applied") == 3, 10), down.counters
            enter(r, 120, "d1")
            assert decisions(r)[-1] == ("d1", "allow", "ok")
        finally:
            c.stop()
        admin = [e for e in Store(store).events() if e["type"] == "admin" and e["action"] == "keys_withdrawn"]
        assert [e["who"] for e in admin] == ["central:central"] * 3  # withdrew 0badc0de, the desk key, gave it back
        assert f"withdrawn: 0badc0de, {key_id(desk.public_key())};" in admin[1]["detail"]
        assert admin[2]["detail"].endswith(f"given back: {key_id(desk.public_key())}")


def test_a_key_list_may_not_cut_a_gate_off_from_central(broker: Broker, tmp_path: Path) -> None:
    with trust_central(Rehearsal(DRILL, broker=broker.url)) as r:
        assert r.app.sync.link.wait_connected(10)
        down = r.app.sync.downstream
        c = Listener(broker.port, topic="none", client_id="central-test")
        own = key_id(r.keys.central.public_key())
        c.publish(f"{PREFIX}/keys", signed({"type": "keylist", "version": 1, "ts": now_iso(), "by": "x",
                                            "withdrawn": [own]}, r.keys.central))
        assert wait_for(lambda: down.counters.get("keylist_lockout") == 1, 10), down.counters
        # A list from a key that is not central's is forged, whatever its version.
        c.publish(f"{PREFIX}/keys", signed({"type": "keylist", "version": 50, "ts": now_iso(), "by": "x",
                                            "withdrawn": []}, Ed25519PrivateKey.generate()))
        assert wait_for(lambda: down.counters.get("keylist_forged") == 1, 10), down.counters
        s = r.app.open_store()
        try:
            assert s.get_meta("keylist_version") is None
        finally:
            s.close()
        c.close()
    # Central refuses to withdraw the key it signs with.
    conf = _central(tmp_path, broker, Ed25519PrivateKey.generate())
    own_kid = key_id(load_private(tmp_path / "central.key").public_key())
    res = _cli(conf, "withdraw", own_kid)
    assert res.returncode == 2 and "the key this central signs with" in res.stderr
    res = _cli(conf, "withdraw", "nonsense")
    assert res.returncode == 2 and "neither a key id" in res.stderr
    res = _cli(conf, "restore", "0badc0de")
    assert res.returncode == 2 and "not withdrawn, nothing to give back: 0badc0de" in res.stderr


def test_a_withdrawn_key_pins_no_version_even_when_listed_as_central(broker: Broker, tmp_path: Path) -> None:
    # An operator listed the desk key in central_keys too; central withdraws it: from
    # then on its policy and batches move nothing, whatever version they claim.
    _, desk_pub = new_keypair(tmp_path / "keys", "desk")
    desk = load_private(tmp_path / "keys" / "desk.key")
    r = Rehearsal(DRILL, broker=broker.url)
    with trust_central(r, [r.keys.central_pub, desk_pub]):
        assert r.app.sync.link.wait_connected(10)
        down = r.app.sync.downstream
        c = Listener(broker.port, topic="none", client_id="central-test")
        c.publish(f"{PREFIX}/keys", signed({"type": "keylist", "version": 1, "ts": now_iso(), "by": "central",
                                            "withdrawn": [key_id(desk.public_key())]}, r.keys.central), retain=True)
        assert wait_for(lambda: down.counters.get("keylist_applied") == 1, 10), down.counters
        c.publish(f"{PREFIX}/policy", signed({"type": "policy", "version": 77, "ts": now_iso(), "by": "desk",
                                              "policy": {"fever_c": 42.0}}, desk), retain=True)
        c.publish(f"{PREFIX}/passes", signed({"type": "passes", "from_version": 0, "to_version": 9, "ts": now_iso(),
                                              "changes": [{"op": "delete", "id": "r1"}]}, desk))
        # A key list from the withdrawn key cannot give it back either.
        c.publish(f"{PREFIX}/keys", signed({"type": "keylist", "version": 2, "ts": now_iso(), "by": "desk",
                                            "withdrawn": []}, desk))
        assert wait_for(lambda: (down.counters.get("policy_forged"), down.counters.get("passes_forged"),
                                 down.counters.get("keylist_forged")) == (1, 1, 1), 10), down.counters
        assert r.app.policy_version() == 0 and versions(r) == (0, None, 2)
        c.publish(f"{PREFIX}/policy", signed({"type": "policy", "version": 2, "ts": now_iso(), "by": "central",
                                              "policy": {"passback": "off"}}, r.keys.central), retain=True)
        assert wait_for(lambda: down.counters.get("policies_applied") == 1, 10), down.counters
        assert r.app.policy_version() == 2
        c.close()


def test_two_operators_withdrawing_at_once_both_count(tmp_path: Path) -> None:
    import threading

    from sync import keylist
    from sync.central import CentralStore

    key = Ed25519PrivateKey.generate()
    CentralStore(str(tmp_path / "central.db")).close()  # schema made once
    kids = [f"{i:08x}" for i in range(1, 9)]
    errors: list[BaseException] = []

    def operator(kid: str) -> None:
        store = CentralStore(str(tmp_path / "central.db"))
        try:
            keylist.change(store, key, withdraw=[kid], by="op", ts=now_iso())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=operator, args=(k,)) for k in kids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    store = CentralStore(str(tmp_path / "central.db"))
    try:
        final = keylist.latest(store)
    finally:
        store.close()
    assert not errors and final is not None
    assert final["version"] == len(kids) and final["withdrawn"] == kids  # none written over another
