"""The page's live state, from the record stream alone (no browser)."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gate.core.records import AckRecord, AlarmRecord, DecisionRecord, DoorRecord, OverrideRecord
from gate.store.database import Store
from gate.web.live import LiveState, mask_phone
from gate.web.status import parse_when

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 22, 8, 0, tzinfo=TZ)


def state(tmp_path: Path) -> tuple[LiveState, Store]:
    store = Store(tmp_path / "g.db", gate_id="g", tz=TZ)
    store.upsert_passes([{"id": "r1", "holder": "王芳", "unit": "3-2-501", "category": "resident", "phone_last4": "1234"}])
    live = LiveState(tz=TZ, open_store=lambda: Store(tmp_path / "g.db", gate_id="g", tz=TZ))
    live.start()
    return live, store


def dec(**kw: object) -> DecisionRecord:
    base = dict(at=AT, lane="in", pass_id="r1", credential="qr", category="resident", decision="allow", reason="ok",
                temperature_c=36.5, holder="王芳", unit="3-2-501")
    base.update(kw)
    return DecisionRecord(**base)  # type: ignore[arg-type]


def feed(live: LiveState, store: Store, *recs: object) -> None:
    before = live.handled
    for r in recs:
        store.record(r)  # type: ignore[arg-type]
        live.sink(r)  # type: ignore[arg-type]
    assert live.wait_handled(before + len(recs))


def test_challenges_open_until_decided_and_a_passback_alarm_rides_with_its_check(tmp_path: Path) -> None:
    live, store = state(tmp_path)
    try:
        sub, first = live.subscribe()
        assert first.startswith("event: snapshot")
        feed(live, store, dec(decision="challenge", reason="passback", challenge_id="in-1"))
        alarm = AlarmRecord(at=AT, lane="in", kind="passback", detail="pass already inside", pass_id="r1")
        feed(live, store, alarm)
        snap = live.snapshot()
        [ch] = snap["challenges"]
        assert ch["phone_masked"] == "***-****-1234" and ch["alarm_id"] == alarm.id
        assert snap["alarms"] == []  # not a separate alarm: the check answers it
        feed(live, store, dec(decision="deny", reason="guard_rejected", challenge_id="in-1", who="guard"))
        assert live.snapshot()["challenges"] == []
        names = []
        while not sub.queue.empty():
            msg = sub.queue.get_nowait()
            assert msg is not None
            names.append(msg.split("\n")[0])
        assert names == ["event: decision", "event: challenges", "event: challenges", "event: decision", "event: challenges"]
    finally:
        live.stop()
        store.close()


def test_alarms_stay_until_acknowledged_and_come_back_after_a_restart(tmp_path: Path) -> None:
    live, store = state(tmp_path)
    fever = AlarmRecord(at=AT, lane="in", kind="fever", detail="37.9 °C", pass_id="r1")
    door = AlarmRecord(at=AT, lane="in", kind="door_held", detail="door open longer than 30 s")
    try:
        feed(live, store, dec(), DoorRecord(at=AT, lane="in", action="unlock"), fever, door,
             OverrideRecord(at=AT, lane="in", action="open_door", reason="visitor", who="guard"))
        snap = live.snapshot()
        assert [a["kind"] for a in snap["alarms"]] == ["fever", "door_held"]
        assert snap["alarms"][0]["holder"] == "王芳" and snap["alarms"][0]["tone"]
        assert snap["doors"]["in"]["action"] == "unlock"
        assert [r["kind"] for r in snap["recent"]] == ["decision", "override"]
        feed(live, store, AckRecord(at=AT, lane="in", alarm_id=door.id, kind="door_held", who="guard"))
        assert [a["kind"] for a in live.snapshot()["alarms"]] == ["fever"]
    finally:
        live.stop()
    again = LiveState(tz=TZ, open_store=lambda: Store(tmp_path / "g.db", gate_id="g", tz=TZ))
    again.load_history(store, AT + timedelta(minutes=5))
    snap = again.snapshot()
    assert [a["id"] for a in snap["alarms"]] == [fever.id]  # the unacknowledged one survives
    assert (snap["alarms"][0]["holder"], snap["alarms"][0]["unit"]) == ("王芳", "3-2-501")  # with whose fever it is
    assert [r["kind"] for r in snap["recent"]] == ["decision", "override"]
    assert snap["recent"][0]["holder"] == "王芳" and snap["recent"][0]["time"] == "08:00:00"
    store.close()


def test_a_slow_page_is_dropped_not_waited_for(tmp_path: Path) -> None:
    live, store = state(tmp_path)
    try:
        sub, _ = live.subscribe()
        for i in range(600):
            live.publish("health", {"n": i})
        assert live.subscribers == 0
        assert sub.queue.get_nowait() is None  # its stream ends; the page reconnects and gets a snapshot
        subs = [live.subscribe(f"127.0.0.{i}")[0] for i in range(6)]  # type: ignore[index]
        assert live.subscribers == live.max_subscribers and subs[0].queue.get_nowait() is None
    finally:
        live.stop()
        store.close()


def test_streams_are_capped_per_client_and_the_lan_never_takes_the_kiosks(tmp_path: Path) -> None:
    live, store = state(tmp_path)
    try:
        kiosk = live.subscribe("127.0.0.1")
        assert kiosk is not None
        a1, a2, a3 = (live.subscribe("192.0.2.7", local=False) for _ in range(3))
        assert a1 and a2 and a3 and a1[0].queue.get_nowait() is None  # its own oldest gave way
        b = live.subscribe("192.0.2.8", local=False)
        assert b is not None and live.subscribers == live.max_subscribers == 4
        assert live.subscribe("192.0.2.9", local=False) is None  # full: another machine waits
        assert kiosk[0].queue.empty()  # the kiosk's stream was never touched
        again = live.subscribe("127.0.0.1")  # the kiosk reloading takes another machine's stream
        assert again is not None and a2[0].queue.get_nowait() is None and kiosk[0].queue.empty()
    finally:
        live.stop()
        store.close()


def test_small_helpers() -> None:
    assert mask_phone("0707") == "***-****-0707" and mask_phone(None) is None
    assert parse_when("1700000000") == datetime.fromtimestamp(1700000000, ZoneInfo("UTC"))
    assert parse_when("2026-11-22T08:00:00+08:00") == AT
    assert parse_when("2026-11-22T00:00:00") == datetime(2026, 11, 22, tzinfo=ZoneInfo("UTC"))
    assert parse_when("soon") is None and parse_when(None) is None
