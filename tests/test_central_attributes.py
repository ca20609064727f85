"""Roster attributes from central (CENTRAL.toml [roster] attributes): imported at central,
kept in its roster (versioned), carried in pass batches and snapshots to every gate,
where the community's rules read them; read by the office console's map; erased with
the pass. Against a real central on a real mosquitto where a gate is involved."""
from __future__ import annotations

import json
import sqlite3
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gate.config import ConfigError
from gate.desk.roster import Roster
from gate.drill import file as drill_file
from gate.drill.file import Step
from gate.drill.runner import Rehearsal
from sync import codec
from sync.central import CentralStore, load_central_config, privacy
from sync.central.cli import central as central_cli
from sync.central.console import community
from sync.central.roster import import_roster, plan_import
from sync.central.store import RosterError
from sync.central.wire import wire_pass
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, start_central, trust_central

MAPPING = {"疫苗剂次": "vaccine_doses", "备注": "note"}
ROSTER_TOML = '[roster]\nattributes = { "疫苗剂次" = "vaccine_doses", "备注" = "note" }\n'
RULE = {"name": "vaccinated", "when": "pass.category in ['resident', 'renter']", "require": "pass.attributes.vaccine_doses >= 2",
        "prompt": {"zh": "请先完成疫苗接种", "en": "Please complete your vaccination first."}}


def roster_csv(path: Path, doses: dict[str, str], note: str = "") -> Path:
    """r1 and r2 of unit 3-2-501/502 with their doses (and a note on r2)."""
    path.write_text("编号,姓名,房号,类别,疫苗剂次,备注,身份证号\n"
                    f"r1,王芳,3-2-501,常住,{doses['r1']},,110101199001011234\n"
                    f"r2,王强,3-2-502,常住,{doses['r2']},{note},110101199001015678\n", encoding="utf-8")
    return path


def cli(conf: Path, *args: str, code: int = 0) -> str:
    res = CliRunner().invoke(central_cli, ["-c", str(conf), *args])
    assert res.exit_code == code, res.output
    return res.output


def drill(doses_rule: bool = True) -> Any:
    """A gate whose table is central's: r1 and r2 hold signed QRs but are not in the
    drill's own table; the community's rule reads their vaccine doses."""
    start = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    rules = f", rules: [{json.dumps(RULE, ensure_ascii=False)}]" if doses_rule else ""
    return drill_file.parse(textwrap.dedent(f"""
        name: attributes
        start: "{start}"
        config: {{policy: {{passback: "off"{rules}}}}}
        passes:
          - {{id: r1, holder: 王芳, unit: 3-2-501, category: resident, in_table: false}}
          - {{id: r2, holder: 王强, unit: 3-2-502, category: resident, in_table: false}}
        """))


def enter(r: Rehearsal, at: float, pass_id: str) -> dict[str, Any]:
    r.step(Step(at=at, lane="in", qr=pass_id))
    r.step(Step(at=at + 0.5, lane="in", temperature=36.5))
    return [line for line in r.lines if line["type"] == "decision"][-1]


def gate_attributes(r: Rehearsal, pass_id: str) -> Any:
    s = r.app.open_store()
    try:
        rec = s.get_pass(pass_id)
        return None if rec is None else rec.attributes
    finally:
        s.close()


def gate_version(r: Rehearsal) -> int:
    s = r.app.open_store()
    try:
        return s.passes_version()
    finally:
        s.close()


# ---------------------------------------------------------------- through a real central and broker


def test_attributes_imported_at_central_reach_the_gate_and_its_rule(broker: Broker, tmp_path: Path) -> None:
    """The CLI imports a roster with a vaccine column; the gate refuses the pass with one
    dose and admits the one with two; a change of doses alone is a new version that
    reaches the gate; a fresh gate gets them in a snapshot."""
    with trust_central(Rehearsal(drill(), broker=broker.url, store_path=tmp_path / "gate.db")) as r:
        assert r.app.sync.link.wait_connected(10)
        c = start_central(tmp_path / "central", broker.url, r.keys.central, extra=ROSTER_TOML)
        conf = tmp_path / "central" / "central.toml"
        try:
            csv = roster_csv(tmp_path / "roster.csv", {"r1": "2", "r2": "1"}, note="行动不便")
            assert "2 changes, roster version 0 -> 2" in cli(conf, "passes", "import", str(csv))
            # central keeps them (the ID column is not kept: the config does not name it)
            assert c.store.get_pass("r1")["attributes"] == {"vaccine_doses": 2}
            assert c.store.get_pass("r2")["attributes"] == {"vaccine_doses": 1, "note": "行动不便"}
            assert "110101199001011234" not in json.dumps(c.store.get_pass("r1"))
            assert Listener.wait_for(lambda: gate_version(r) == 2, 20), "the gate to take central's batch"
            assert gate_attributes(r, "r2") == {"vaccine_doses": 1, "note": "行动不便"}
            ok, refused = enter(r, 0, "r1"), enter(r, 10, "r2")
            assert (ok["decision"], ok["reason"]) == ("allow", "ok")
            assert (refused["decision"], refused["reason"]) == ("deny", "rule")

            # the same file again: nothing changes; a dose more for r2, and nothing else: a new version
            assert "0 changes" in cli(conf, "passes", "import", str(csv))
            roster_csv(csv, {"r1": "2", "r2": "2"}, note="行动不便")
            assert "1 changes, roster version 2 -> 3" in cli(conf, "passes", "import", str(csv))
            assert Listener.wait_for(lambda: gate_version(r) == 3, 20), "the gate to take the change"
            assert gate_attributes(r, "r2") == {"vaccine_doses": 2, "note": "行动不便"}
            assert enter(r, 20, "r2")["decision"] == "allow"

            # an emptied cell: the attribute is gone at central and at the gate
            roster_csv(csv, {"r1": "2", "r2": "2"})
            assert "1 changes" in cli(conf, "passes", "import", str(csv))
            assert Listener.wait_for(lambda: gate_version(r) == 4, 20)
            assert gate_attributes(r, "r2") == {"vaccine_doses": 2}
        finally:
            r.app.join()
            # a fresh gate (an empty store) finds itself behind central's head batch: a snapshot
            fresh = trust_central(Rehearsal(drill(), broker=broker.url, store_path=tmp_path / "fresh.db"),
                                  keys=r.config.sync.central_keys)
            try:
                with fresh:
                    down = fresh.app.sync.downstream
                    assert Listener.wait_for(lambda: down.counters.get("snapshots_applied"), 30), down.counters.snapshot()
                    assert gate_version(fresh) == 4
                    assert gate_attributes(fresh, "r1") == {"vaccine_doses": 2}
                    assert gate_attributes(fresh, "r2") == {"vaccine_doses": 2}
                    assert enter(fresh, 0, "r2")["decision"] == "allow"
            finally:
                c.stop()


def test_the_snapshot_lines_carry_the_attributes(tmp_path: Path) -> None:
    from sync.central.snapshot import build_snapshot

    s = CentralStore(str(tmp_path / "c.db"))
    try:
        import_roster(s, roster_csv(tmp_path / "r.csv", {"r1": "3", "r2": "是"}), attributes=MAPPING)
        s.delete_pass("r1")  # a tombstone line: no attributes on it
        version, lines = s.snapshot_lines()
        recs = {d["id"]: d for d in map(json.loads, lines)}
        assert recs["r2"]["attributes"] == {"vaccine_doses": True} and recs["r1"]["removed"] and "attributes" not in recs["r1"]
        assert b"attributes" in __import__("zlib").decompress(
            __import__("base64").b64decode(build_snapshot(version, lines, 10).datas[0]))
        # the gate's fast path puts them in the attributes column (the last of PASS_COLUMNS)
        row = codec.pass_row(recs["r2"], 0.0)
        assert row[-1] == '{"vaccine_doses":true}' and codec.pass_row({"id": "x", "category": "resident"}, 0.0)[-1] is None
        with pytest.raises(TypeError):
            codec.pass_row({"id": "x", "category": "resident", "attributes": [1]}, 0.0)
    finally:
        s.close()


# ---------------------------------------------------------------- config, bounds, the wire


def test_central_toml_takes_the_gates_roster_section(tmp_path: Path) -> None:
    base = 'site = "s1"\nsigning_key = "k.pem"\n'
    (tmp_path / "ok.toml").write_text(base + ROSTER_TOML, encoding="utf-8")
    assert load_central_config(tmp_path / "ok.toml").roster.attributes == MAPPING
    (tmp_path / "table.toml").write_text("[central]\n" + base + ROSTER_TOML, encoding="utf-8")  # the [central] form too
    assert load_central_config(tmp_path / "table.toml").roster.attributes == MAPPING
    (tmp_path / "bad.toml").write_text(base + '[roster]\nattributes = { "疫苗剂次" = "vaccine-doses" }\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"roster\.attributes\.疫苗剂次.*pattern"):
        load_central_config(tmp_path / "bad.toml")
    many = ", ".join(f'"c{i}" = "a{i}"' for i in range(33))
    (tmp_path / "many.toml").write_text(base + f"[roster]\nattributes = {{ {many} }}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"roster\.attributes.*at most 32"):
        load_central_config(tmp_path / "many.toml")
    (tmp_path / "typo.toml").write_text(base + '[roster]\nattribute = { "a" = "b" }\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"roster\.attribute"):
        load_central_config(tmp_path / "typo.toml")


def test_a_bad_attribute_is_refused_at_import_naming_the_row(tmp_path: Path) -> None:
    from gate.core.tokens import new_keypair

    new_keypair(tmp_path / "keys", "central")
    conf = tmp_path / "central.toml"
    conf.write_text('site = "s1"\nsigning_key = "keys/central.key"\ndb = "central.db"\n' + ROSTER_TOML, encoding="utf-8")
    long = roster_csv(tmp_path / "long.csv", {"r1": "2", "r2": "2"}, note="长" * 201)
    out = cli(conf, "passes", "import", str(long), code=2)
    assert "row 3" in out and "'note' is longer than 200 characters" in out and "nothing imported" in out
    s = CentralStore(str(tmp_path / "central.db"))
    try:
        assert s.pass_count() == 0 and s.passes_version == 0  # all rows or none
        # nested (not from a file's cells, but through plan_import all the same): the row is named
        roster = Roster(rows=[{"id": "r9", "holder": "甲", "unit": "1-1-101", "category": "resident",
                               "attributes": json.dumps({"vaccine": {"doses": 2}})}],
                        columns=frozenset({"holder", "unit", "category", "attributes"}), rownos={"r9": 7})
        plan = plan_import(s, roster)
        assert plan.conflicts == [(7, "attribute 'vaccine' must be a number, yes/no or text, not an object")]
        assert plan.changes == []
        for bad, why in (({"a": [1]}, "not a list"), ({"a": None}, "not null"), ({"bad-name": 1}, "attribute name"),
                         ({f"k{i}": i for i in range(33)}, "more than 32"), ({"n": 10**15}, "more than 15 digits"),
                         ("[1]", "must be an object")):
            with pytest.raises(ValueError, match=why):
                wire_pass({"id": "x", "category": "resident", "attributes": bad})
        with pytest.raises(RosterError):
            import_roster(s, long, attributes=MAPPING)
    finally:
        s.close()


def test_the_batch_schema_bounds_attributes_and_old_payloads_still_work(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gate.core.tokens import KeyRing

    key = Ed25519PrivateKey.generate()
    ring = KeyRing([key.public_key()])

    def batch(p: dict[str, Any]) -> bytes:
        return codec.encode(codec.sign({"type": "passes", "from_version": 0, "to_version": 1, "ts": "2026-01-01T00:00:00+00:00",
                                        "changes": [{"op": "upsert", "pass": {"id": "a", "category": "resident", **p}}]}, key))

    assert codec.decode(batch({"attributes": {"vaccine_doses": 2, "note": "x", "ok": True, "t": 36.5}}), "passes", ring)
    old = codec.decode(batch({}), "passes", ring)  # an older central's batch: no field
    assert codec.pass_from_wire(old["changes"][0]["pass"])["attributes"] is None
    for bad in ({"a": {"b": 1}}, {"a": [1]}, {"a": None}, {"a": "x" * 201}, {"bad-name": 1},
                {f"k{i}": 1 for i in range(33)}, {"n": 10**15}):
        with pytest.raises(codec.PayloadError) as e:
            codec.decode(batch({"attributes": bad}), "passes", ring)
        assert e.value.reason == "schema", bad


def test_the_gate_stores_exactly_centrals_attributes(tmp_path: Path) -> None:
    """A batch sets them, a record without them clears them; a visitor pass made at the
    gate (no attributes key) leaves a pass's alone."""
    from gate.store.database import Store

    s = Store(tmp_path / "gate.db")
    try:
        wire = {"id": "a", "category": "resident", "attributes": {"vaccine_doses": 2}, "revoked": False}
        s.apply_pass_changes([codec.pass_from_wire(wire)], {}, [], 1)
        assert s.get_pass("a").attributes == {"vaccine_doses": 2}
        s.upsert_passes([{"id": "a", "category": "resident"}])
        assert s.get_pass("a").attributes == {"vaccine_doses": 2}
        s.apply_pass_changes([codec.pass_from_wire({"id": "a", "category": "resident"})], {}, [], 2)
        assert s.get_pass("a").attributes is None
        # a snapshot: the fast path's rows carry them, and an older tuple without them still goes in
        s.replace_pass_rows([codec.pass_row(wire, 0.0)], {}, 3)
        assert s.get_pass("a").attributes == {"vaccine_doses": 2}
        s.replace_pass_rows([("b", None, None, "resident", None, None, None, None, None, None, 0, 0.0)], {}, 4)
        assert s.get_pass("b").attributes is None and s.get_pass("a") is None
    finally:
        s.close()


# ---------------------------------------------------------------- the map, erasure, an older database


def test_the_maps_rule_share_reads_attributes_imported_at_central(tmp_path: Path) -> None:
    s = CentralStore(str(tmp_path / "c.db"))
    try:
        lines = ["编号,姓名,房号,类别,疫苗剂次"]
        for i in range(10):  # building 7: 8 of 10 vaccinated; building 8: 1 of 2, and a visitor the rule skips
            lines.append(f"h{i},住户{i},7-1-{i + 1}01,常住,{3 if i < 8 else 1}")
        lines += ["k1,甲,8-1-101,租住,2", "k2,乙,8-1-102,租住,0", "v1,丙,8-1-101,访客,0"]
        (tmp_path / "r.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        import_roster(s, tmp_path / "r.csv", attributes={"疫苗剂次": "vaccine_doses"})
        s.store_policy({"version": 1, "policy": {"rules": [RULE]}})
        now = time.time()
        tz = datetime.now().astimezone().tzinfo
        m = community.community_map(s, community.Choice("rule", rule="vaccinated"), now=now, tz=tz, midnight=now - 3600)
        assert [(b.name, b.met, b.concerned, b.board) for b in m["buildings"]] == [("7", 8, 10, "red"), ("8", 1, 2, "red")]
        # a second import with more doses: the map follows the roster at once
        (tmp_path / "r.csv").write_text("\n".join(lines).replace(",1\n", ",2\n") + "\n", encoding="utf-8")
        import_roster(s, tmp_path / "r.csv", attributes={"疫苗剂次": "vaccine_doses"})
        m = community.community_map(s, community.Choice("rule", rule="vaccinated"), now=now, tz=tz, midnight=now - 3600)
        assert [(b.name, b.met, b.concerned) for b in m["buildings"]] == [("7", 10, 10), ("8", 1, 2)]
    finally:
        s.close()


def test_erasure_at_central_removes_the_attributes(tmp_path: Path) -> None:
    s = CentralStore(str(tmp_path / "c.db"))
    try:
        import_roster(s, roster_csv(tmp_path / "r.csv", {"r1": "2", "r2": "1"}, note="行动不便"), attributes=MAPPING)
        import_roster(s, roster_csv(tmp_path / "r.csv", {"r1": "2", "r2": "3"}, note="行动不便"), attributes=MAPPING)
        assert privacy.export(s, "r2")["attributes"] == [{"note": "行动不便", "vaccine_doses": 3}]
        privacy.erase(s, "r2", "王主任")
        assert privacy.export(s, "r2")["attributes"] == []
        left = [json.dumps(r, ensure_ascii=False) for t in ("passes", "changes", "tombstones")
                for r in s.db.all(f"SELECT * FROM {t}")]
        assert not [r for r in left if "行动不便" in r or ('"r2"' in r and "vaccine_doses" in r)], left
        assert s.get_pass("r1")["attributes"] == {"vaccine_doses": 2}  # the others keep theirs
    finally:
        s.close()


def test_erasure_at_the_gate_removes_the_attributes(tmp_path: Path) -> None:
    from gate.store.database import Store
    from gate.store.erasure import erase_pass

    s = Store(tmp_path / "gate.db")
    try:
        s.apply_pass_changes([codec.pass_from_wire({"id": "r2", "category": "resident", "attributes": {"note": "行动不便"}})],
                             {}, [], 1)
        erase_pass(s, "r2")
        assert s.get_pass("r2").revoked and s.get_pass("r2").attributes is None  # the tombstone: nothing of them
        assert s.conn.execute("SELECT count(*) FROM passes WHERE attributes IS NOT NULL").fetchone()[0] == 0
    finally:
        s.close()


def test_an_older_central_database_gets_the_column(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute("CREATE TABLE passes (id TEXT PRIMARY KEY, category TEXT NOT NULL, holder TEXT, unit TEXT,"
               " card TEXT, revoked INTEGER NOT NULL, version BIGINT NOT NULL, wire TEXT NOT NULL)")
    db.execute("INSERT INTO passes VALUES ('a', 'resident', NULL, NULL, NULL, 0, 1, '{\"id\":\"a\"}')")
    db.execute("CREATE TABLE pass_attributes (pass_id TEXT PRIMARY KEY, attributes TEXT NOT NULL)")
    db.commit()
    db.close()
    s = CentralStore(str(tmp_path / "c.db"))
    try:
        assert "attributes" in s.db.columns("passes") and s.db.one("SELECT attributes FROM passes WHERE id = 'a'") == (None,)
        assert not s.db.one("SELECT 1 FROM sqlite_master WHERE name = 'pass_attributes'")  # the old copy is gone
    finally:
        s.close()
    CentralStore(str(tmp_path / "c.db")).close()  # and again: nothing to add
