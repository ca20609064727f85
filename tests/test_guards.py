"""Named guards (issue 16): each with a PIN of their own, kept hashed; the page knows who
is on duty, records their name with what they do, and a shift starts with a handover
of what the last one leaves open; the daily report lists the shifts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gate.desk.guards import GuardsError, add, load
from gate.store.daily import daily
from tests.conftest import ROOT
from tests.test_web import guard_env
from tests.test_web_guard import csrf_of, open_door

import pytest


def test_gate_guards_add_keeps_a_hash_and_refuses_a_pin_twice(tmp_path: Path) -> None:
    guards = tmp_path / "guards.json"
    conf = tmp_path / "gate.toml"
    conf.write_text(f'[guard]\nguards_file = "{guards}"\n[[lanes]]\nname = "in"\ndirection = "in"\ncamera = {{driver = "sim"}}\n')
    run = lambda *a, pin="": subprocess.run([sys.executable, "-m", "gate.cli.main", "guards", *a, "-c", str(conf)],  # noqa: E731
                                            input=pin, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run("add", "王师傅", "--pin-stdin", pin="135790\n").returncode == 0
    assert run("add", "李阿姨", "--pin-stdin", pin="135790\n").returncode == 2  # the same PIN: who would it be?
    assert "that PIN is 王师傅's already" in run("add", "李阿姨", "--pin-stdin", pin="135790\n").stderr
    assert run("add", "李阿姨", "--pin-stdin", pin="24680\n").returncode == 0
    assert run("list").stdout.split() == ["李阿姨", "王师傅"]
    text = guards.read_text(encoding="utf-8")
    assert "135790" not in text and "24680" not in text  # hashed
    assert os.stat(guards).st_mode & 0o777 == 0o600
    assert run("remove", "李阿姨").returncode == 0 and list(load(guards)) == ["王师傅"]
    with pytest.raises(GuardsError):
        add(guards, "x", "12")  # too short


def test_a_shift_names_the_guard_hands_over_and_is_in_the_report(tmp_path: Path) -> None:
    guards = tmp_path / "guards.json"
    add(guards, "王师傅", "135790")
    add(guards, "李阿姨", "24680")
    with guard_env(tmp_path, {"guard": {"guards_file": str(guards)}}) as env:
        # An alarm the night shift leaves open, and a visitor still inside.
        env.step(lane="in", door="open")
        env.settle()
        kiosk = env.gp.flask.test_client()
        token = csrf_of(kiosk)
        shift = lambda pin: kiosk.post("/api/shift", json={"secret": pin} if pin else {},  # noqa: E731
                                       headers={"X-CSRF-Token": token})
        assert shift(None).status_code == 401  # a shift starts with the guard's own PIN
        r = shift("135790")
        assert r.status_code == 200, r.get_json()
        first = r.get_json()
        assert first["guard"] == "王师傅" and first["previous"] is None
        assert [a["kind"] for a in first["alarms"]] == ["door_forced"]
        # What the guard does now carries their name.
        assert open_door(kiosk, token).status_code == 202
        env.settle()
        assert [o["who"] for o in env.events("override")] == ["王师傅"]
        # The next guard takes over from the first.
        r = shift("24680")
        assert r.status_code == 200 and r.get_json()["previous"] == "王师傅"
        assert shift("0000").status_code == 401  # nobody's PIN
        store = env.app.open_store()
        try:
            report = daily(store, env.app.clock.now().date().isoformat())
        finally:
            store.close()
        assert [s["who"] for s in report["shifts"]] == ["王师傅", "李阿姨"]
        admin = [e for e in env.events("admin") if e["action"] == "shift_start"]
        assert admin[1]["detail"] == "took over from 王师傅"
        json.dumps(report)


def test_a_guard_added_or_removed_counts_on_the_running_page(tmp_path: Path) -> None:
    """A dismissed guard's PIN must stop opening the door at once, not at the next restart."""
    from gate.desk.guards import remove, save

    guards = tmp_path / "guards.json"
    add(guards, "王师傅", "135790")
    with guard_env(tmp_path, {"guard": {"guards_file": str(guards)}}) as env:
        kiosk = env.gp.flask.test_client()
        token = csrf_of(kiosk)
        shift = lambda pin: kiosk.post("/api/shift", json={"secret": pin},  # noqa: E731
                                       headers={"X-CSRF-Token": token})
        assert shift("135790").status_code == 200
        add(guards, "李阿姨", "24680")  # `gate guards add` while the gate runs
        r = shift("24680")
        assert r.status_code == 200 and r.get_json()["guard"] == "李阿姨"
        remove(guards, "王师傅")
        assert shift("135790").status_code == 401
        guards.write_text("{half", encoding="utf-8")  # broken by hand: nobody named unlocks
        r = shift("24680")
        assert r.status_code == 503 and r.get_json()["error"] == "guards_file_broken"
        assert str(guards) in r.get_json()["message"]  # the guard can tell the desk which file
        save(guards, {})  # mended, but nobody named
        r = shift("24680")
        assert r.status_code == 400 and r.get_json()["error"] == "no_guards"
