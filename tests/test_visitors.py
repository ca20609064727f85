"""Visitor registration: a pink pass that ends today, signed by this gate's key, in
the pass table, with its registration event on the way upstream."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gate.core.tokens import KeyRing, load_private, new_keypair
from gate.store.database import Store
from gate.desk.visitors import NoSigningKey, RegistrationError, VisitorDesk, valid_until_today

TZ = ZoneInfo("Asia/Shanghai")


def desk(tmp_path: Path, now: datetime, *, key: bool = True, until: str = "23:59") -> tuple[VisitorDesk, KeyRing]:
    ring = KeyRing()
    signer = None
    if key:
        priv, _ = new_keypair(tmp_path / "keys", "gate")
        signer = load_private(priv)
    d = VisitorDesk(
        signer=signer, open_store=lambda: Store(tmp_path / "gate.db", gate_id="g1", tz=TZ),
        now=lambda: now, tz=TZ, valid_until=until, keyring=ring,
    )
    return d, ring


def test_a_registration_issues_a_pass_for_today_and_records_it(tmp_path: Path) -> None:
    now = datetime(2026, 11, 22, 9, 30, tzinfo=TZ)
    d, ring = desk(tmp_path, now)
    vp = d.register(" 刘洋 ", "１２３x", "3300", "3-2-501", who="guard")  # full-width digits from an IME are fine
    assert (vp.holder, vp.id_last4, vp.phone_last4, vp.unit) == ("刘洋", "123X", "3300", "3-2-501")
    assert vp.valid_until == datetime(2026, 11, 22, 23, 59, 59, tzinfo=TZ)
    token = ring.verify(vp.token)  # the desk put its own key on the ring: the gate admits what it issues
    assert (token.pass_id, token.category, token.holder_ref) == (vp.pass_id, "visitor", "3-2-501")
    assert token.valid_until == vp.valid_until and token.valid_from == now
    store = Store(tmp_path / "gate.db", gate_id="g1", tz=TZ)
    try:
        p = store.get_pass(vp.pass_id)
        assert p is not None and (p.category, p.holder, p.unit, p.phone_last4) == ("visitor", "刘洋", "3-2-501", "3300")
        [ev] = store.events()
        assert ev["type"] == "registration" and ev["id"] == vp.record.id and ev["pass"] == vp.pass_id
        assert (ev["holder"], ev["id_last4"], ev["who"], ev["category"]) == ("刘洋", "123X", "guard", "visitor")
        assert ev["valid_until"] == vp.valid_until.isoformat()
        assert store.conn.execute("SELECT state FROM outbox WHERE event_id = ?", (ev["id"],)).fetchone() == ("pending",)
    finally:
        store.close()
    assert vp.qr_png().startswith(b"\x89PNG") and vp.qr_data_uri().startswith("data:image/png;base64,")


def test_the_qr_carries_the_token(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from drivers.qr import make_decoder

    d, _ = desk(tmp_path, datetime(2026, 11, 22, 9, 30, tzinfo=TZ))
    vp = d.register("Liu Yang", "0000", "1111", "7-1-101")
    img = cv2.imdecode(np.frombuffer(vp.qr_png(), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert make_decoder("auto").decode(img) == [vp.token]


@pytest.mark.parametrize(
    "fields, code, field",
    [
        (("", "1234", "1234", "1-1-101"), "name_missing", "name"),
        (("x" * 33, "1234", "1234", "1-1-101"), "name_invalid", "name"),
        (("刘\x07洋", "1234", "1234", "1-1-101"), "name_invalid", "name"),
        (("刘洋", "12", "1234", "1-1-101"), "id_invalid", "id_last4"),
        (("刘洋", "12X4", "1234", "1-1-101"), "id_invalid", "id_last4"),
        (("刘洋", "1234", "12a4", "1-1-101"), "phone_invalid", "phone_last4"),
        (("刘洋", "1234", "1234", ""), "unit_invalid", "unit"),
        (("刘洋", "1234", "1234", "<script>"), "unit_invalid", "unit"),
    ],
)
def test_bad_input_is_refused_and_names_the_field(tmp_path: Path, fields: tuple[str, ...], code: str, field: str) -> None:
    d, _ = desk(tmp_path, datetime(2026, 11, 22, 9, 30, tzinfo=TZ))
    with pytest.raises(RegistrationError) as err:
        d.register(*fields)
    assert (err.value.code, err.value.field) == (code, field)
    assert not (tmp_path / "gate.db").exists()  # nothing written


def test_without_a_signing_key_registration_says_so(tmp_path: Path) -> None:
    d, _ = desk(tmp_path, datetime(2026, 11, 22, 9, 30, tzinfo=TZ), key=False)
    assert not d.ready
    with pytest.raises(NoSigningKey, match="keys.signing"):
        d.register("刘洋", "1234", "1234", "1-1-101")
    signer, why = VisitorDesk.load_signer(tmp_path / "missing.key")
    assert signer is None and "not found" in why
    assert VisitorDesk.load_signer(None) == (None, "no signing key is configured (keys.signing)")


def test_after_the_day_s_end_time_no_pass_is_issued(tmp_path: Path) -> None:
    d, _ = desk(tmp_path, datetime(2026, 11, 22, 21, 0, 30, tzinfo=TZ), until="21:00")
    assert valid_until_today(datetime(2026, 11, 22, 21, 0, 30, tzinfo=TZ), "21:00", TZ) == datetime(2026, 11, 22, 21, 0, 59, tzinfo=TZ)
    d.register("刘洋", "1234", "1234", "1-1-101")  # still within the minute
    late, _ = desk(tmp_path / "b", datetime(2026, 11, 22, 21, 1, tzinfo=TZ), until="21:00")
    with pytest.raises(RegistrationError) as err:
        late.register("刘洋", "1234", "1234", "1-1-101")
    assert err.value.code == "too_late"
    # 24:00 means the end of the day; the day is the gate's, not UTC's.
    utc_evening = datetime(2026, 11, 22, 17, 0, tzinfo=ZoneInfo("UTC"))  # 01:00 on the 23rd in Shanghai
    assert valid_until_today(utc_evening, "24:00", TZ) == datetime(2026, 11, 23, 23, 59, 59, tzinfo=TZ)
    assert valid_until_today(utc_evening, "24:00", TZ) - utc_evening < timedelta(days=1)


def test_a_signing_key_central_withdrew_issues_no_visitor_pass(tmp_path: Path) -> None:
    from gate.core.tokens import key_id

    d, ring = desk(tmp_path, datetime(2026, 11, 22, 9, 30, tzinfo=TZ))
    assert d.signer is not None
    kid = key_id(d.signer.public_key())
    ring.withdraw({kid})  # central's key list, as the gate applies it
    with pytest.raises(NoSigningKey, match=f"signing key {kid} was withdrawn by central"):
        d.register("刘洋", "1234", "3300", "3-2-501")
    store = Store(tmp_path / "gate.db", gate_id="g1", tz=TZ)
    try:
        assert store.events() == [] and store.pass_count() == 0  # nothing issued that every gate would refuse
    finally:
        store.close()
    ring.withdraw(set())  # a newer list gives it back
    assert d.register("刘洋", "1234", "3300", "3-2-501").pass_id
