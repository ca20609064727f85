"""The policy as a document: `gate policy show/check/apply/history`, the audit trail,
and the gate deciding by an applied policy after a restart."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gate.config import PolicyConfig, load_policy
from gate.drill.runner import Rehearsal
from gate.drill.file import Drill
from gate.store.database import Store
from tests.conftest import ROOT

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def desk(tmp_path: Path) -> dict:
    conf = tmp_path / "gate.toml"
    conf.write_text(
        f'[gate]\nid = "east"\n[store]\npath = "{tmp_path / "gate.db"}"\n'
        "[policy]\nversion = 2\nfever_c = 37.3\n[policy.categories.visitor]\nhours = \"08:00-20:00\"\n"
        '[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\n',
        encoding="utf-8",
    )
    return {"conf": conf, "db": tmp_path / "gate.db", "tmp": tmp_path}


def gate(desk: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gate.cli.main", "policy", *args, "-c", str(desk["conf"])],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_check_validates_and_names_the_mistakes(desk):
    good = desk["tmp"] / "good.toml"
    good.write_text("[policy]\nfever_c = 37.5\npcr_within_h = 48\n[policy.categories.courier]\nrefused = false\n")
    done = gate(desk, "check", str(good))
    assert done.returncode == 0, done.stderr
    assert "a valid policy" in done.stdout and "fever line 37.5 °C" in done.stdout and "needed within 48 h" in done.stdout
    assert "fever_c: 37.3 -> 37.5" in done.stdout and "categories.courier.refused: true -> false" in done.stdout
    assert "categories.visitor.hours: 08:00-20:00 -> (off)" in done.stdout  # the file drops the config's visitor hours
    bad = desk["tmp"] / "bad.toml"
    bad.write_text("[policy]\nfever_c = 45\npassback = 'sometimes'\nfevr = 1\n[policy.categories.drone]\ncolour = '#fff'\n")
    refused = gate(desk, "check", str(bad))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    for key in ("fever_c", "passback", "fevr: unknown key", "categories.drone"):
        assert key in refused.stderr, key


def test_show_writes_the_policy_in_force_as_a_document_that_reads_back(desk):
    done = gate(desk, "show")
    assert done.returncode == 0, done.stderr
    doc = desk["tmp"] / "current.toml"
    doc.write_text(done.stdout, encoding="utf-8")
    from gate import config as cfgmod

    assert load_policy(doc) == cfgmod.load(desk["conf"]).policy
    assert "version 2, from the config" in done.stdout


def test_apply_records_who_when_and_the_diff_and_puts_it_in_force(desk):
    new = desk["tmp"] / "winter.toml"
    new.write_text("[policy]\nfever_c = 37.5\npcr_within_h = 48\n[policy.categories.visitor]\nhours = \"08:00-20:00\"\n")
    done = gate(desk, "apply", str(new), "--by", "李书记", "--note", "区里新规定 district rules")
    assert done.returncode == 0, done.stderr
    assert "as policy version 3 (was 2) by 李书记" in done.stdout
    assert "fever_c: 37.3 -> 37.5" in done.stdout and "pcr_within_h: (off) -> 48.0" in done.stdout
    s = Store(desk["db"], gate_id="east", tz=SHANGHAI)
    try:
        assert s.get_meta("policy_version") == "3" and s.get_meta("policy_by") == "李书记"
        stored = PolicyConfig.model_validate({**json.loads(s.get_meta("policy_json")), "version": 3})
        assert stored == load_policy(new).model_copy(update={"version": 3})
        (audit,) = s.conn.execute("SELECT by, note, version, previous_version, sha256, diff_json, at FROM policy_audit").fetchall()
        assert audit[:5] == ("李书记", "区里新规定 district rules", 3, 2, hashlib.sha256(new.read_bytes()).hexdigest())
        assert json.loads(audit[5]) == [{"key": "fever_c", "old": 37.3, "new": 37.5},
                                        {"key": "pcr_within_h", "old": None, "new": 48.0}]
        assert float(s.get_meta("policy_applied_at")) == audit[6]
        event = s.events()[-1]
        assert (event["type"], event["action"], event["who"], event["reason"]) == (
            "admin", "policy_apply", "李书记", "区里新规定 district rules")
        assert event["detail"].startswith("v2 -> v3: fever_c: 37.3 -> 37.5")
    finally:
        s.close()
    history = json.loads(gate(desk, "history", "--json").stdout)
    assert [(h["version"], h["by"]) for h in history] == [(3, "李书记")]
    assert "version 3, from the store (applied by 李书记)" in gate(desk, "show").stdout
    same = gate(desk, "apply", str(new), "--by", "李书记")
    assert same.returncode == 1 and "nothing applied" in same.stderr
    older = desk["tmp"] / "older.toml"
    older.write_text("[policy]\nfever_c = 37.2\n")
    low = gate(desk, "apply", str(older), "--by", "x", "--version", "3")
    assert low.returncode == 1 and "above the version in force (3)" in low.stderr
    assert gate(desk, "apply", str(older), "--by", "王").returncode == 0
    assert [h["version"] for h in json.loads(gate(desk, "history", "--json").stdout)] == [4, 3]


def drill_37_4() -> Drill:
    return Drill.model_validate({
        "name": "one 37.4 reading",
        "start": "2026-11-23T09:00:00+08:00",
        "passes": [{"id": "r1", "holder": "王芳", "unit": "3-2-501", "category": "resident"}],
        "steps": [{"at": 0.0, "lane": "in", "qr": "r1"}, {"at": 1.0, "lane": "in", "temperature": 37.4}],
    })


def decisions(store_path: Path) -> list[tuple[str, str]]:
    with Rehearsal(drill_37_4(), store_path=store_path) as r:
        r.run()
        return [(l["decision"], l["reason"]) for l in r.lines if l["type"] == "decision" and l["pass"] == "r1"]


def test_the_gate_decides_by_the_applied_policy_after_a_restart(tmp_path):
    """A drill on the default config (fever line 37.3): 37.4 is retested, and after
    `gate policy apply` with 37.5 the restarted gate lets the same reading in."""
    assert decisions(tmp_path / "before.db")[0] == ("retest", "high_temperature")
    store = tmp_path / "after.db"
    conf = tmp_path / "gate.toml"
    conf.write_text('[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\n')
    new = tmp_path / "new.toml"
    new.write_text("fever_c = 37.5\n")  # a policy document may also be the bare table
    done = subprocess.run([sys.executable, "-m", "gate.cli.main", "policy", "apply", str(new), "--by", "李书记", "-c", str(conf),
                           "--store", str(store)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert decisions(store) == [("allow", "ok")]


def test_a_running_gate_picks_up_a_policy_applied_at_the_desk(tmp_path: Path) -> None:
    """`gate policy apply` while the daemon runs: the lanes switch without a restart."""
    import textwrap as _tw

    from gate.drill import file as _df
    from gate.drill.runner import Rehearsal
    from gate.drill.file import Step


    d = _df.parse(_tw.dedent("""
        name: live policy
        start: "2026-11-22T10:00:00+08:00"
        passes: [{id: r1, holder: 王芳, unit: 3-2-501, category: resident}, {id: r2, holder: 王强, unit: 3-2-502, category: resident}]
        """))
    with Rehearsal(d) as r:
        r.step(Step(at=0, lane="in", qr="r1"))
        r.step(Step(at=0.5, lane="in", temperature=37.2))
        s = r.app.open_store()
        try:
            s.set_meta("policy_json", '{"fever_c": 37.0}')
            s.set_meta("policy_version", "9")
        finally:
            s.close()
        assert r.app.pick_up_stored_policy()
        assert not r.app.pick_up_stored_policy()  # nothing newer the second time
        r.step(Step(at=10, lane="in", qr="r2"))
        r.step(Step(at=10.5, lane="in", temperature=37.2))
    assert [l["decision"] for l in r.lines if l["type"] == "decision"] == ["allow", "retest"]
