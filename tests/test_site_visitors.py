"""Visitors known everywhere, for the visit: a visitor registered at one gate of a site
is admitted at another, because central vouches for the registering gate's key (its
signed list of the site's gate keys, sync/gatekeys.py); a gate key that is not on the
list is refused; a gate key on it cannot mint a resident's pass; the visit's end is
enforced at every gate; a visitor still inside after the end raises `overstay`, one who
left does not.

Two gates in-process (a `gates:` drill: presence between them as central carries it),
central's list signed with the drill's central key and handed to the gate as the
downstream worker does (gatekeys.accept, then the app's vouch_gate_keys)."""
from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.core.tokens import KeyRing, PassToken, key_id, load_private, new_keypair, sign
from gate.desk.visitors import VisitorDesk
from gate.drill import file as drill_file
from gate.drill.file import Step
from gate.drill.runner import Rehearsal
from gate.store import gatekeys as kept
from sync import codec, gatekeys

START = "2026-11-22T09:00:00+08:00"
DRILL = f"""
    name: visitors at a site of two gates
    start: "{START}"
    config:
      policy: {{passback: hard}}
    gates: [east, west]
    passes:
      - {{id: r1, holder: 王芳, unit: 3-2-501, category: resident}}
"""


def site() -> Rehearsal:
    return Rehearsal(drill_file.parse(textwrap.dedent(DRILL)))


def desk_for(r: Rehearsal, gate: str, tmp_path: Path) -> VisitorDesk:
    """Gate's guard page desk, signing with a key of its own ([keys] signing)."""
    priv, _ = new_keypair(tmp_path / gate, "signing")
    app = r.apps[gate]
    return VisitorDesk(signer=load_private(priv), open_store=app.open_store, now=app.clock.now, tz=app.tz,
                       keyring=app.keyring)


def central_list(r: Rehearsal, version: int, gates: dict[str, Ed25519PrivateKey]) -> dict[str, Any]:
    """Central's signed gate key list as it arrives on {prefix}/gatekeys."""
    payload = gatekeys.signed_list(r.keys.central, version, {
        g: {"kid": key_id(k.public_key()), "key": gatekeys.key_text(k.public_key())} for g, k in gates.items()
    }, "central", "2026-11-22T01:00:00+00:00")
    return codec.decode(codec.encode(payload), "gatekeys", KeyRing([r.keys.central.public_key()]))


def take_list(r: Rehearsal, gate: str, msg: dict[str, Any]) -> str:
    """What sync/downstream.py does with a verified list."""
    app = r.apps[gate]
    store = app.open_store()
    try:
        outcome = gatekeys.accept(store, msg)
    finally:
        store.close()
    if outcome.result == "applied":
        app.vouch_gate_keys(outcome.keys, "central:test")
    return outcome.result


def decide(r: Rehearsal, at: float, gate: str, pass_id: str, lane: str = "in") -> dict[str, Any]:
    r.step(Step(at=at, gate=gate, lane=lane, qr=pass_id))
    if lane == "in":
        r.step(Step(at=at + 0.5, gate=gate, lane=lane, temperature=36.5))
    return [x for x in r.lines if x["type"] == "decision" and x["gate"] == gate][-1]


def register(r: Rehearsal, d: VisitorDesk, name: str, length: str) -> str:
    vp = d.register(name, "1234", "5678", "7-1-101", length=length)
    r.tokens[vp.pass_id] = vp.token
    return vp.pass_id


def test_a_visitor_registered_at_east_is_admitted_at_west_once_central_vouches_for_east(tmp_path: Path) -> None:
    with site() as r:
        east = desk_for(r, "east", tmp_path)
        assert east.signer is not None
        v1 = register(r, east, "刘洋", "2h")
        # West does not know east's key yet: the visitor's pass is as good as forged there.
        refused = decide(r, 10, "west", v1)
        assert (refused["decision"], refused["reason"]) == ("deny", "forged")
        # Central's signed list vouches for east's key: west admits east's visitors.
        assert take_list(r, "west", central_list(r, 1, {"east": east.signer})) == "applied"
        ok = decide(r, 20, "west", v1)
        assert (ok["decision"], ok["reason"], ok["category"]) == ("allow", "ok", "visitor")
        # West recorded what it took, and keeps the list for a restart.
        store = r.apps["west"].open_store()
        try:
            assert key_id(east.signer.public_key()) in kept.load(store).keys()
            [ev] = [e for e in store.events() if e["type"] == "admin" and e["action"] == "gate_keys"]
            assert key_id(east.signer.public_key()) in ev["detail"] and ev["who"] == "central:test"
        finally:
            store.close()
        # The same list again (central's retained copy) changes nothing; an older one is refused.
        assert take_list(r, "west", central_list(r, 1, {"east": east.signer})) == "duplicate"
        assert take_list(r, "west", central_list(r, 2, {})) == "applied"  # east taken off the list ...
        assert decide(r, 40, "west", v1)["reason"] == "forged"  # ... and its visitors refused again
        assert take_list(r, "west", central_list(r, 1, {"east": east.signer})) == "old"  # a replay cannot bring it back
        assert decide(r, 50, "west", v1)["reason"] == "forged"


def test_a_gate_key_not_on_central_s_list_is_refused(tmp_path: Path) -> None:
    with site() as r:
        east = desk_for(r, "east", tmp_path)
        assert east.signer is not None
        take_list(r, "west", central_list(r, 1, {"east": east.signer}))
        # A third desk (a rogue Pi, a stolen key that was replaced) signs a perfect visitor pass.
        rogue = Ed25519PrivateKey.generate()
        now = r.clock.now()
        r.tokens["v-rogue"] = sign(PassToken("v-rogue", "visitor", "7-1-101", now, now + timedelta(hours=2)), rogue)
        for gate in ("west", "east"):
            d = decide(r, 10 if gate == "west" else 20, gate, "v-rogue")
            assert (d["decision"], d["reason"]) == ("deny", "forged"), gate


def test_a_list_whose_key_does_not_match_its_id_is_refused(tmp_path: Path) -> None:
    with site() as r:
        east, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        payload = gatekeys.signed_list(r.keys.central, 1, {"east": {"kid": key_id(east.public_key()),
                                                                    "key": gatekeys.key_text(other.public_key())}},
                                       "central", "2026-11-22T01:00:00+00:00")
        msg = codec.decode(codec.encode(payload), "gatekeys", KeyRing([r.keys.central.public_key()]))
        assert take_list(r, "west", msg) == "mismatch"
        # Signed by anyone but central: refused before it is read.
        forged = gatekeys.signed_list(other, 1, {}, "central", "2026-11-22T01:00:00+00:00")
        with pytest.raises(codec.PayloadError) as err:
            codec.decode(codec.encode(forged), "gatekeys", KeyRing([r.keys.central.public_key()]))
        assert err.value.reason == "forged"


@pytest.mark.parametrize("category, until_h, device, why", [
    ("resident", 2, False, "visitor passes only"),
    ("staff", 2, False, "visitor passes only"),
    ("visitor", 25, False, "a day at most"),
    ("visitor", None, False, "a start and an end"),
    ("visitor", 2, True, "phone pass"),
])
def test_a_gate_key_on_the_list_cannot_mint_anything_but_a_visitor_pass(
        tmp_path: Path, category: str, until_h: int | None, device: bool, why: str) -> None:
    with site() as r:
        east = desk_for(r, "east", tmp_path)
        assert east.signer is not None
        take_list(r, "west", central_list(r, 1, {"east": east.signer}))
        now = r.clock.now()
        token = PassToken("x1", category, "3-2-501", now, None if until_h is None else now + timedelta(hours=until_h),
                          device_key=Ed25519PrivateKey.generate().public_key().public_bytes_raw() if device else None)
        text = sign(token, east.signer)
        for gate in ("west", "east"):  # not at the gate that signed it either
            with pytest.raises(Exception) as err:
                r.apps[gate].keyring.verify(text)
            assert why in str(err.value) and getattr(err.value, "reason", "") == "forged", gate
        if not device:
            r.tokens["x1"] = text
            d = decide(r, 10, "west", "x1")
            assert (d["decision"], d["reason"]) == ("deny", "forged")
        # r1, the resident signed by central, is still admitted: central's key is another ring.
        assert decide(r, 20, "west", "r1")["decision"] == "allow"


def test_the_visit_s_end_is_enforced_at_every_gate(tmp_path: Path) -> None:
    with site() as r:
        east = desk_for(r, "east", tmp_path)
        assert east.signer is not None
        take_list(r, "west", central_list(r, 1, {"east": east.signer}))
        v = register(r, east, "刘洋", "2h")
        assert decide(r, 60, "west", v)["decision"] == "allow"
        assert decide(r, 3600, "east", v, lane="out")["decision"] == "allow"
        # Back two hours and a minute after registering: the pass has ended, at both gates.
        for i, gate in enumerate(("west", "east")):
            d = decide(r, 2 * 3600 + 60 + 10 * i, gate, v)
            assert (d["decision"], d["reason"]) == ("deny", "expired"), gate
        # Half a day is four hours; today lasts until guard.visitor_valid_until (23:59).
        half = east.register("王五", "1234", "5678", "7-1-101", length="half_day")
        today = east.register("赵六", "1234", "5678", "7-1-101", length="today")
        assert half.valid_until - half.valid_from == timedelta(hours=4)
        assert today.valid_until == datetime(2026, 11, 22, 23, 59, 59, tzinfo=r.tz)


def test_a_visitor_inside_after_the_visit_raises_overstay_and_one_who_left_does_not(tmp_path: Path) -> None:
    with site() as r:
        east = desk_for(r, "east", tmp_path)
        assert east.signer is not None
        take_list(r, "west", central_list(r, 1, {"east": east.signer}))
        stays = register(r, east, "刘洋", "2h")
        leaves = register(r, east, "王五", "2h")
        assert decide(r, 60, "west", stays)["decision"] == "allow"  # in at west ...
        assert decide(r, 70, "west", leaves)["decision"] == "allow"
        assert decide(r, 3600, "west", leaves, lane="out")["decision"] == "allow"  # ... one goes home in time
        app = r.apps["east"]
        assert app.check_overstays() == 0  # the visits have not ended
        r.advance(2 * 3600 + 5)
        # East registered them; presence from west tells it who is still inside.
        assert app.check_overstays() == 1
        [alarm] = [rec for rec in r.records if rec.type == "alarm" and rec.kind == "overstay"]
        assert alarm.pass_id == stays and alarm.lane == "gate" and "7-1-101" in alarm.detail
        assert app.check_overstays() == 0  # raised once per visit
        store = app.open_store()
        try:
            [ev] = [e for e in store.events() if e["type"] == "alarm" and e["kind"] == "overstay"]
            assert ev["pass"] == stays  # upstream, central's register names the visitor
            assert store.conn.execute("SELECT state FROM outbox WHERE event_id = ?", (ev["id"],)).fetchone() == ("pending",)
        finally:
            store.close()
        # Once they leave, nothing more.
        assert decide(r, 2 * 3600 + 600, "east", stays, lane="out")["decision"] == "allow"
        r.advance(3 * 3600)
        assert app.check_overstays() == 0


def test_default_length_is_validated_with_a_clear_error(tmp_path: Path) -> None:
    from gate import config as cfgmod

    bad = tmp_path / "gate.toml"
    bad.write_text('[[lanes]]\nname = "in"\ndirection = "in"\n[visitors]\ndefault_length = "3h"\n', encoding="utf-8")
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load(bad)
    assert "visitors.default_length" in str(err.value) and "'2h', 'half_day', 'today'" in str(err.value)
    bad.write_text('[[lanes]]\nname = "in"\ndirection = "in"\n[visitors]\ndefault_length = "half_day"\n', encoding="utf-8")
    assert cfgmod.load(bad).visitors.default_length == "half_day"


def test_the_vouched_keys_are_kept_across_a_restart(tmp_path: Path) -> None:
    one = textwrap.dedent(f"""
        name: one gate
        start: "{START}"
        passes: []
    """)
    east = Ed25519PrivateKey.generate()
    store = tmp_path / "west.db"
    with Rehearsal(drill_file.parse(one), store_path=store) as r:
        payload = gatekeys.signed_list(r.keys.central, 1, {"east": {"kid": key_id(east.public_key()),
                                                                    "key": gatekeys.key_text(east.public_key())}},
                                       "central", "2026-11-22T01:00:00+00:00")
        s = r.app.open_store()
        try:
            assert gatekeys.accept(s, payload).result == "applied"
        finally:
            s.close()
    with Rehearsal(drill_file.parse(one), store_path=store) as again:
        assert again.app.keyring.vouched == {key_id(east.public_key())}
        now = again.clock.now()
        again.tokens["v9"] = sign(PassToken("v9", "visitor", "7-1-101", now, now + timedelta(hours=2)), east)
        again.step(Step(at=1, lane="in", qr="v9"))
        again.step(Step(at=1.5, lane="in", temperature=36.5))
        d = [x for x in again.lines if x["type"] == "decision"][-1]
        assert (d["decision"], d["pass"]) == ("allow", "v9")
