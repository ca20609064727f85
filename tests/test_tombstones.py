"""Removed means refused (issue 12, finding 5): a pass removed from the table keeps a
tombstone, and its still validly signed QR is refused `revoked`, never admitted as
unlisted (policy.admit_unlisted is true by default)."""
from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from gate.app.maintenance import Maintenance
from gate.desk.privacy import erase
from gate.store.database import Store, Tombstone
from sync.central import quarantine
from sync.central import Central, load_central_config
from sync.central.cli import central as central_cli
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, trust_central

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(tmp_path / "gate.db")
    yield s
    s.close()


def refused_revoked(s: Store, pass_id: str) -> bool:
    rec = s.get_pass(pass_id)
    return rec is not None and rec.revoked and rec.listed and rec.holder is None and rec.unit is None


# ---------------------------------------------------------------- the store


def test_removing_a_pass_leaves_a_tombstone_that_refuses_it(store: Store) -> None:
    store.upsert_passes([{"id": "a", "category": "renter", "holder": "王芳", "unit": "3-2-501"},
                         {"id": "b", "category": "resident"}], {"11": "a"})
    assert store.remove_passes(["a", "a", "zz"], until=T0 + timedelta(days=30)) == 2
    rec = store.get_pass("a")
    assert rec is not None and rec.revoked and rec.listed and rec.category == "renter"  # the lane refuses it `revoked`
    assert rec.holder is None and rec.unit is None and rec.phone_last4 is None  # no personal data kept
    assert store.pass_count() == 1
    assert store.card_pass("11") == "a" and refused_revoked(store, store.card_pass("11"))  # its card: refused too
    assert refused_revoked(store, "zz") and store.get_pass("zz").category == "resident"  # never known: resident
    assert store.get_pass("b") is not None and not store.get_pass("b").revoked
    assert store.get_pass("never") is None
    # central issues it again: the tombstone is lifted
    store.upsert_passes([{"id": "a", "category": "renter", "holder": "王芳"}])
    assert not store.get_pass("a").revoked and store.get_pass("a").holder == "王芳"
    assert [t.pass_id for t in store.tombstones()] == ["zz"]


def test_batches_carry_tombstones_and_the_last_change_of_an_id_wins(store: Store) -> None:
    store.upsert_passes([{"id": p, "category": "staff"} for p in ("a", "b", "c")], {"1": "a"})
    store.apply_pass_changes([], {}, ["a", Tombstone("b", "staff", T0)], 2)
    assert refused_revoked(store, "a") and refused_revoked(store, "b") and store.card_pass("1") == "a"
    assert {t.pass_id: t.until for t in store.tombstones()} == {"a": None, "b": T0}
    store.apply_pass_changes([{"id": "a", "category": "staff"}], {"a": None}, [], 3)  # re-issued, without its card
    assert not store.get_pass("a").revoked and store.card_pass("1") is None


def test_a_removed_pass_s_card_stays_refused_until_it_is_bound_again(store: Store) -> None:
    """A swipe of a removed pass's card is refused `revoked`, through central's snapshots
    (which bind only listed passes' cards), until the card is given to someone else or
    the tombstone is forgotten; an erasure takes the binding away at once."""
    store.upsert_passes([{"id": p, "category": "resident"} for p in ("a", "b", "c", "d")],
                        {"1": "a", "2": "b", "3": "c", "4": "d"})
    store.apply_pass_changes([], {}, ["a", Tombstone("b", "resident", T0), "c"], 2)
    # central's snapshot: a and b removed, card 3 now bound to d, c issued again without a card
    store.replace_passes([{"id": "c", "category": "resident"}, {"id": "d", "category": "resident"}],
                         {"3": "d", "4": "d"}, 3, [Tombstone("a", "resident", None), Tombstone("b", "resident", T0)])
    assert store.card_pass("1") == "a" and refused_revoked(store, "a")
    assert store.card_pass("2") == "b" and refused_revoked(store, "b")
    assert store.card_pass("3") == "d" and not store.get_pass("d").revoked  # bound to another: theirs
    assert not store.get_pass("c").revoked
    # b's tombstone is forgotten once its pass would have expired: its card with it
    assert store.forget_tombstones(now=(T0 + timedelta(days=1)).timestamp()) == 1
    assert store.card_pass("2") is None and store.card_pass("1") == "a"
    erase(store, "a")
    assert store.card_pass("1") is None and refused_revoked(store, "a")


def test_an_id_issued_again_does_not_take_the_removed_pass_s_cards(store: Store, tmp_path: Path) -> None:
    """The old holder's card was kept under the tombstone only to be refused: whoever is
    given the id next (central's upsert, a roster imported at the gate) does not get it."""
    from gate.desk.roster import read_roster
    from gate.desk.roster_changes import apply_roster

    store.upsert_passes([{"id": p, "category": "renter"} for p in ("a", "b", "c")], {"1": "a", "2": "b", "3": "c"})
    store.remove_passes(["a", "b", "c"])
    assert [store.card_pass(n) for n in "123"] == ["a", "b", "c"]
    store.upsert_passes([{"id": "a", "category": "renter", "holder": "新租户"}])  # issued again, no card
    assert store.card_pass("1") is None and not store.get_pass("a").revoked
    roster = tmp_path / "roster.csv"
    roster.write_text("id,holder,unit,category\nb,新租户,9-9-909,renter\n", encoding="utf-8")
    apply_roster(store, read_roster(roster), who="desk", source=str(roster))
    assert store.card_pass("2") is None and store.get_pass("b").holder == "新租户"  # the old card opens nothing
    roster.write_text("id,holder,unit,category,card\nc,回来的人,9-9-910,renter,3\n", encoding="utf-8")
    apply_roster(store, read_roster(roster), who="desk", source=str(roster))
    assert store.card_pass("3") == "c" and not store.get_pass("c").revoked  # bound again, as the file says
    assert store.tombstones() == []


def test_a_snapshot_without_the_pass_but_with_its_tombstone_refuses_it(store: Store) -> None:
    store.upsert_passes([{"id": p, "category": "resident"} for p in ("a", "b", "c")])
    store.remove_passes(["local"])  # an erasure here: kept through central's snapshot
    store.replace_passes([{"id": "a", "category": "resident"}, {"id": "local", "category": "resident"}], {}, 7,
                         [Tombstone("b", "resident", None), Tombstone("c", "visitor", T0 + timedelta(days=1))])
    assert store.passes_version() == 7 and store.pass_count() == 2
    assert refused_revoked(store, "b") and refused_revoked(store, "c") and store.get_pass("c").category == "visitor"
    assert not store.get_pass("local").revoked  # listed again by central: issued again
    assert store.snapshot_leftovers() == []
    # maintenance forgets a tombstone once its pass would have expired anyway
    assert store.forget_tombstones(now=(T0 + timedelta(days=2)).timestamp()) == 1
    assert store.get_pass("c") is None and refused_revoked(store, "b")


def test_privacy_erase_leaves_a_tombstone_until_the_pass_would_expire(store: Store, tmp_path: Path) -> None:
    until = datetime.now(timezone.utc) + timedelta(days=10)
    store.upsert_passes([{"id": "r1", "category": "resident", "holder": "李雷", "valid_until": until}], {"5": "r1"})
    assert erase(store, "r1")["passes"] == 1
    assert refused_revoked(store, "r1") and store.card_pass("5") is None  # the card number was the holder's
    assert store.tombstones()[0].until == until.replace(microsecond=until.microsecond)
    Maintenance(lambda: store, retention_days=30).run_once(store)  # not expired yet: kept
    assert refused_revoked(store, "r1")


# ---------------------------------------------------------------- end to end


DRILL = drill_file.parse(textwrap.dedent("""
    name: tombstones
    start: "2026-11-22T10:00:00+08:00"
    config: {policy: {passback: "off"}}
    passes:
      - {id: r1, holder: 王芳, unit: 3-2-501, category: resident}
      - {id: r2, holder: 王强, unit: 3-2-502, category: resident}
      - {id: r3, holder: 李雷, unit: 3-2-503, category: renter}
      - {id: r4, holder: 韩梅, unit: 3-2-504, category: resident}
    """))


def test_passes_removed_at_central_are_refused_revoked_at_the_gate(broker: Broker, tmp_path: Path) -> None:
    """Real mosquitto, real central, a real gate: r2 deleted with `gate central passes
    delete`, r3 left out of `passes import --replace` before the gate syncs (it gets a
    snapshot), r4 deleted while it runs (a batch): each refused `revoked`, never
    admitted as unlisted; r2 issued again is admitted."""
    with trust_central(Rehearsal(DRILL, broker=broker.url)) as r:
        key = tmp_path / "central.key"
        key.write_bytes(r.keys.central.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        conf = tmp_path / "central.toml"
        # batch_size 1, snapshot_backlog 1: the gate, behind, is sent only the head and asks for a snapshot
        conf.write_text(f'site = "drill"\nbroker = "{broker.url}"\nsigning_key = "central.key"\ndb = "central.db"\n'
                        'poll_s = 0.1\nbatch_size = 1\nsnapshot_backlog = 1\n')

        def cli(*args: str) -> str:
            res = CliRunner().invoke(central_cli, ["-c", str(conf), *args], catch_exceptions=False)
            assert res.exit_code == 0, res.output
            return res.output

        roster = tmp_path / "roster.csv"
        roster.write_text("编号,姓名,房号,类别\nr1,王芳,3-2-501,常住\nr2,王强,3-2-502,常住\nr3,李雷,3-2-503,租住\n"
                          "r4,韩梅,3-2-504,常住\n", encoding="utf-8")
        cli("passes", "import", str(roster))
        cli("passes", "delete", "r2")
        roster.write_text("编号,姓名,房号,类别\nr1,王芳,3-2-501,常住\nr2,王强,3-2-502,常住\nr4,韩梅,3-2-504,常住\n",
                          encoding="utf-8")
        cli("passes", "import", "--replace", str(roster))  # r2 is back in this file; r3 is not
        cli("passes", "delete", "r2")
        assert "r3" not in cli("passes", "list")
        assert r.app.sync.link.wait_connected(10)
        c = Central(load_central_config(conf)).start()
        try:
            assert c.wait_connected(10)
            s = r.app.open_store()
            try:
                head = c.passes_version
                down = r.app.sync.downstream
                assert Listener.wait_for(lambda: down.counters.get("snapshots_applied") == 1, 20), "central's snapshot"
                assert s.passes_version() == head
                assert refused_revoked(s, "r2") and refused_revoked(s, "r3") and s.get_pass("r3").category == "renter"
                r.step(Step(at=1, lane="in", qr="r2"))
                r.step(Step(at=10, lane="in", qr="r3"))
                r.step(Step(at=20, lane="in", qr="r1"))
                r.step(Step(at=20.5, lane="in", temperature=36.6))
                c.delete_pass("r4")  # while the gate runs: a batch
                assert Listener.wait_for(lambda: s.passes_version() == head + 1, 20), "the delete batch"
                r.step(Step(at=30, lane="in", qr="r4"))
                c.add_pass(id="r2", holder="王强", unit="3-2-502", category="resident")  # issued again
                assert Listener.wait_for(lambda: s.get_pass("r2") is not None and not s.get_pass("r2").revoked, 20)
                r.step(Step(at=40, lane="in", qr="r2"))
                r.step(Step(at=40.5, lane="in", temperature=36.6))
                # what this real gate sends passes central's strict schemas: nothing quarantined
                assert r.drain(20)
                assert Listener.wait_for(lambda: c.store.event_count() >= 5 and "drill" in c.store.statuses(), 20)
                assert quarantine.entries(c.store.db) == [] and c.stats().get("quarantined", 0) == 0
            finally:
                s.close()
        finally:
            c.stop()
        got = [(line["pass"], line["decision"], line["reason"]) for line in r.lines if line["type"] == "decision"]
        assert got == [("r2", "deny", "revoked"), ("r3", "deny", "revoked"), ("r1", "allow", "ok"),
                       ("r4", "deny", "revoked"), ("r2", "allow", "ok")]


# ---------------------------------------------------------------- passes end by default


def test_passes_are_issued_with_an_end_date_by_default(tmp_path: Path) -> None:
    """A pass that ends lets its tombstone end: `gate central passes add` and `gate
    passes issue` give a year unless told otherwise (configurable; 0: no end)."""
    import json
    from zoneinfo import ZoneInfo

    from gate.cli.main import main
    from gate.core.tokens import KeyRing, load_public, new_keypair

    priv, pub = new_keypair(tmp_path / "keys", "central")
    conf = tmp_path / "central.toml"
    conf.write_text('site = "s1"\nsigning_key = "keys/central.key"\ndb = "central.db"\n')
    run = CliRunner()
    out = run.invoke(central_cli, ["-c", str(conf), "passes", "add", "--id", "P1", "--holder", "李雷", "--unit", "1-1",
                                   "--category", "resident"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    wire = json.loads(run.invoke(central_cli, ["-c", str(conf), "passes", "list", "--json"]).stdout.splitlines()[0])
    tz = ZoneInfo("Asia/Shanghai")
    until = datetime.fromisoformat(wire["valid_until"])
    assert until.date() == (datetime.now(tz) + timedelta(days=365)).date() and until.hour == 23
    conf.write_text(conf.read_text() + "pass_valid_days = 0\n")
    run.invoke(central_cli, ["-c", str(conf), "passes", "add", "--id", "P2", "--holder", "韩梅", "--unit", "1-2",
                             "--category", "resident"], catch_exceptions=False)
    listed = [json.loads(x) for x in run.invoke(central_cli, ["-c", str(conf), "passes", "list", "--json"]).stdout.splitlines()]
    assert "valid_until" not in listed[1]
    # the desk's `gate passes issue`
    ring = KeyRing([load_public(pub)])
    for extra, days in (([], 365), (["--valid-days", "30"], 30), (["--valid-days", "0"], None)):
        res = run.invoke(main, ["passes", "issue", "--id", "X1", "--category", "visitor", "--key", str(priv),
                                "--out", str(tmp_path / "x.png"), *extra], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        token = ring.verify(res.output.strip().split(": ", 1)[1])
        if days is None:
            assert token.valid_until is None
        else:
            assert token.valid_until.astimezone(tz).date() == (datetime.now(tz) + timedelta(days=days)).date()


def test_a_store_rebuilt_from_its_pass_snapshot_keeps_its_tombstones(tmp_path: Path) -> None:
    from gate.store.integrity import ensure_sound, save_snapshot

    path = tmp_path / "gate.db"
    s = Store(path)
    s.upsert_passes([{"id": "a", "category": "resident"}, {"id": "b", "category": "staff"}])
    s.remove_passes(["b"])
    save_snapshot(s.conn, path)
    s.close()
    path.write_bytes(b"not a database" * 1000)  # corrupt: moved aside, rebuilt from the snapshot
    assert ensure_sound(path).ok is False
    s = Store(path)
    try:
        assert s.get_pass("a") is not None and not s.get_pass("a").revoked
        assert refused_revoked(s, "b") and s.get_pass("b").category == "staff"
    finally:
        s.close()


def test_central_keeps_tombstones_until_the_pass_would_have_expired(tmp_path: Path) -> None:
    import json

    from sync.central import CentralStore

    s = CentralStore(str(tmp_path / "central.db"))
    try:
        soon = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
        past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
        s.upsert_passes([{"id": "a", "category": "staff", "holder": "甲", "valid_until": soon},
                         {"id": "b", "category": "resident", "holder": "乙", "valid_until": past},
                         {"id": "c", "category": "courier", "holder": "丙"}])
        for pid in ("a", "b", "c"):
            s.delete_pass(pid)
        deletes = [json.loads(ch) for _, ch in s.changes_after(3, 10)]
        assert deletes[0] == {"op": "delete", "id": "a", "category": "staff", "until": soon}  # no holder, no unit
        v, lines = s.snapshot_lines()
        stones = {json.loads(x)["id"]: json.loads(x) for x in lines}
        assert set(stones) == {"a", "c"}  # b's QR has expired anyway: its tombstone no longer travels
        assert stones["a"] == {"id": "a", "category": "staff", "revoked": True, "removed": True, "valid_until": soon}
        assert stones["c"] == {"id": "c", "category": "courier", "revoked": True, "removed": True}
        s.add_pass(id="a", category="staff", holder="甲")  # issued again: no longer removed
        assert [json.loads(x)["id"] for x in s.snapshot_lines()[1] if json.loads(x).get("removed")] == ["c"]
    finally:
        s.close()


def test_passes_show_says_a_removed_pass_is_refused(tmp_path: Path) -> None:
    from gate.cli.main import main

    db = tmp_path / "gate.db"
    s = Store(db)
    s.upsert_passes([{"id": "r1", "category": "resident", "holder": "李雷"}])
    s.remove_passes(["r1"])
    s.close()
    conf = Path(__file__).resolve().parents[1] / "config" / "demo.toml"
    res = CliRunner().invoke(main, ["passes", "show", "r1", "-c", str(conf), "--store", str(db)])
    assert res.exit_code == 1 and "was removed from the pass table: its QR is refused (revoked) for good" in res.output
