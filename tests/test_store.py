"""The SQLite store: durable, gapless events with their outbox rows, and what the
gate remembers (passes, cards, who is inside)."""
from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gate.core.records import AlarmRecord, DecisionRecord, DoorRecord, PromptRecord
from gate.app.maintenance import Maintenance
from gate.store.database import Store

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=TZ)


def decision(at=T0, *, lane="in", pass_id="r1", decision="allow", reason="ok", card=None, credential=None, **kw):
    return DecisionRecord(
        at=at,
        lane=lane,
        pass_id=pass_id,
        credential=credential or ("card" if card else "qr"),
        category=kw.pop("category", "resident"),
        decision=decision,
        reason=reason,
        temperature_c=kw.pop("temperature_c", 36.5),
        holder=kw.pop("holder", "王芳"),
        unit=kw.pop("unit", "3-2-501"),
        card=card,
        **kw,
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gate.db", gate_id="east-gate-1", tz=TZ)
    yield s
    s.close()


def rows(store: Store, sql: str, *args):
    return store.conn.execute(sql, args).fetchall()


# ---------------------------------------------------------------- opening


def test_fresh_store_is_wal_with_full_sync(tmp_path):
    s = Store(tmp_path / "sub" / "dir" / "gate.db")  # parent folders are made
    try:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        s.close()
    raw = sqlite3.connect(tmp_path / "sub" / "dir" / "gate.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persisted in the file
    finally:
        raw.close()


def test_reopening_applies_no_migration_twice_and_keeps_data(tmp_path):
    path = tmp_path / "gate.db"
    s = Store(path)
    s.upsert_passes([{"id": "r1", "category": "resident"}])
    s.record(decision())
    applied = rows(s, "SELECT name FROM _sqlite_migrations ORDER BY name")
    s.close()
    for _ in range(2):
        s = Store(path)
        assert rows(s, "SELECT name FROM _sqlite_migrations ORDER BY name") == applied
        assert s.pass_count() == 1
        assert [e["seq"] for e in s.events()] == [1]
        s.close()
    s = Store(path)
    assert s.record(decision()).seq == 2
    s.close()


def test_stores_opened_at_once_on_a_fresh_file_all_work(tmp_path):
    for round_ in range(5):
        path = tmp_path / f"fresh{round_}.db"
        errors: list[BaseException] = []
        barrier = threading.Barrier(3)

        def open_one() -> None:
            barrier.wait()
            try:
                Store(path).close()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


# ---------------------------------------------------------------- events and outbox


def test_record_writes_event_and_outbox_row_with_the_same_seq_and_id(store):
    rec = decision()
    ev = store.record(rec)
    assert ev.seq == 1 and ev.body["id"] == ev.id == rec.id and ev.body["seq"] == 1
    (seq, eid, body), = rows(store, "SELECT seq, id, body FROM events")
    (oseq, oid, payload, state), = rows(store, "SELECT seq, event_id, payload, state FROM outbox")
    assert (seq, eid) == (oseq, oid) == (ev.seq, ev.id)
    assert state == "pending"
    assert json.loads(body) == json.loads(payload) == ev.body


def test_a_failed_outbox_write_leaves_no_event_and_no_gap(tmp_path, store):
    other = sqlite3.connect(tmp_path / "gate.db")
    other.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    other.commit()
    with pytest.raises(sqlite3.DatabaseError):
        store.record(decision(), direction="in")
    assert rows(store, "SELECT count(*) FROM events") == [(0,)]
    assert store.inside_since("r1") is None  # nor what the event would have changed
    other.execute("DROP TRIGGER refuse")
    other.commit()
    other.close()
    assert store.record(decision()).seq == 1  # the failed attempt used no number


def test_an_event_is_visible_to_another_connection_once_record_returns(tmp_path, store):
    ev = store.record(decision())
    reader = Store(tmp_path / "gate.db")
    try:
        assert [e["id"] for e in reader.events()] == [ev.id]
    finally:
        reader.close()


def test_seq_is_gapless_across_two_stores_writing_in_turn(tmp_path, store):
    other = Store(tmp_path / "gate.db", gate_id="east-gate-1", tz=TZ)
    try:
        got = [(store if i % 2 == 0 else other).record(decision(T0 + i * timedelta(seconds=1))).seq for i in range(10)]
    finally:
        other.close()
    assert got == list(range(1, 11))
    assert [r[0] for r in rows(store, "SELECT seq FROM events ORDER BY seq")] == got
    assert [r[0] for r in rows(store, "SELECT seq FROM outbox ORDER BY seq")] == got


def test_seq_is_gapless_with_threads_writing_concurrently(tmp_path):
    path = tmp_path / "gate.db"
    Store(path).close()  # migrate once, as the app does before the lanes start
    per_thread, n_threads = 60, 3
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def lane(k: int) -> None:
        s = Store(path, gate_id="east-gate-1", tz=TZ)  # each thread owns its Store
        try:
            barrier.wait()
            results[k] = [
                s.record(decision(T0 + timedelta(seconds=i), lane=f"lane{k}", pass_id=f"p{k}-{i}")).seq
                for i in range(per_thread)
            ]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=lane, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    total = per_thread * n_threads
    seqs = sorted(s for r in results.values() for s in r)
    assert seqs == list(range(1, total + 1))
    for r in results.values():
        assert r == sorted(r)  # each lane sees its own events in order
    s = Store(path)
    try:
        events = s.events()
        assert [e["seq"] for e in events] == list(range(1, total + 1))
        assert len({e["id"] for e in events}) == total
        outbox = rows(s, "SELECT seq, event_id FROM outbox ORDER BY seq")
        assert outbox == [(e["seq"], e["id"]) for e in events]
        # the event a thread was told it wrote is the one stored under that seq
        by_seq = {e["seq"]: e for e in events}
        for k, r in results.items():
            assert [by_seq[q]["pass"] for q in r] == [f"p{k}-{i}" for i in range(per_thread)]
    finally:
        s.close()


class _WriteBetweenReadAndBump:
    """A connection proxy that lets another lane try to write right after this one
    has read the seq counter, before it bumps it: the worst moment for a race."""

    def __init__(self, conn: sqlite3.Connection, other_lane) -> None:
        self._conn, self._other_lane = conn, other_lane

    def execute(self, sql: str, *args):
        cur = self._conn.execute(sql, *args)
        if self._other_lane is not None and sql.lstrip().upper().startswith("SELECT") and "meta" in sql and "seq" in sql:
            row = cur.fetchone()
            other, self._other_lane = self._other_lane, None
            other()
            return type("Fetched", (), {"fetchone": staticmethod(lambda: row)})()
        return cur

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def test_the_seq_counter_is_read_under_the_write_lock(tmp_path, store):
    other = Store(tmp_path / "gate.db", gate_id="east-gate-1", tz=TZ)
    other.conn.execute("PRAGMA busy_timeout = 200")
    seen: list[str] = []

    def other_lane_writes() -> None:
        try:
            other.record(decision(lane="out", pass_id="r2"))
            seen.append("wrote")
        except sqlite3.OperationalError:
            seen.append("waited")

    store.conn = _WriteBetweenReadAndBump(store.conn, other_lane_writes)
    try:
        mine = store.record(decision(pass_id="r1"))
        assert seen == ["waited"]  # the other lane could not slip in between
        assert mine.seq == 1
        assert other.record(decision(lane="out", pass_id="r2")).seq == 2
    finally:
        store.conn = store.conn._conn
        other.close()
    assert [(e["seq"], e["pass"]) for e in store.events()] == [(1, "r1"), (2, "r2")]


def test_decision_event_body_carries_the_drills_fields_and_no_name(store):
    rec = decision(temperature_c=36.456, holder="王芳", card="1234567", credential="card")
    ev = store.record(rec, direction="in")
    body = ev.body
    assert body["id"] == ev.id and body["seq"] == 1 and body["gate"] == "east-gate-1"
    assert datetime.fromisoformat(body["ts"]) == rec.at
    assert body["type"] == "decision" and body["lane"] == "in"
    assert (body["pass"], body["credential"], body["category"]) == ("r1", "card", "resident")
    assert (body["decision"], body["reason"], body["temperature_c"]) == ("allow", "ok", 36.46)
    assert body["card"] == "1234567"
    (stored,), = rows(store, "SELECT body FROM events")
    (payload,), = rows(store, "SELECT payload FROM outbox")
    for text in (stored, payload, json.dumps(body, ensure_ascii=False)):
        assert "王芳" not in text
    assert "holder" not in body


def test_decision_without_pass_or_temperature_keeps_nulls(store):
    ev = store.record(decision(pass_id=None, category=None, decision="deny", reason="malformed", temperature_c=None))
    assert ev.body["pass"] is None and ev.body["category"] is None and ev.body["temperature_c"] is None
    assert "card" not in ev.body


def test_other_lane_records_are_events_too(store):
    at = T0 + timedelta(minutes=1)
    store.record(AlarmRecord(at=at, lane="in", kind="fever", detail="38.1", pass_id="r1"))
    store.record(DoorRecord(at=at, lane="in", action="unlock"))
    store.record(PromptRecord(at=at, lane="in", key="reminder", text="请出示通行证"))
    alarm, door, prompt = store.events()
    assert (alarm["type"], alarm["kind"], alarm["gate"]) == ("alarm", "fever", "east-gate-1")
    assert (door["type"], door["action"]) == ("door", "unlock")
    assert (prompt["type"], prompt["key"], prompt["text"]) == ("prompt", "reminder", "请出示通行证")
    assert [e["seq"] for e in (alarm, door, prompt)] == [1, 2, 3]
    assert rows(store, "SELECT kind, action FROM events ORDER BY seq") == [("fever", None), (None, "unlock"), (None, None)]


def test_events_are_filed_under_the_local_day_and_hour(store):
    late = datetime(2026, 11, 22, 16, 30, tzinfo=timezone.utc)  # 00:30 on the 23rd in Beijing
    store.record(decision(late))
    assert rows(store, "SELECT day, hour FROM events") == [("2026-11-23", 0)]
    assert [e["seq"] for e in store.events(day="2026-11-23")] == [1]
    assert store.events(day="2026-11-22") == []


def test_events_since_and_limit(store):
    for i in range(5):
        store.record(decision(T0 + timedelta(seconds=i)))
    assert [e["seq"] for e in store.events(since_seq=2)] == [3, 4, 5]
    assert [e["seq"] for e in store.events(since_seq=1, limit=2)] == [2, 3]


# ---------------------------------------------------------------- inside


def test_allow_in_marks_inside_and_allow_out_clears_it(store):
    store.record(decision(T0), direction="in")
    assert store.inside_since("r1") == T0
    later = T0 + timedelta(hours=3)
    store.record(decision(later), direction="in")  # a second entry moves the time on
    assert store.inside_since("r1") == later
    store.record(decision(later + timedelta(hours=1), lane="out"), direction="out")
    assert store.inside_since("r1") is None


@pytest.mark.parametrize("verdict", [("deny", "fever"), ("challenge", "passback"), ("retest", "high_temperature")])
def test_only_an_allow_marks_inside(store, verdict):
    store.record(decision(decision=verdict[0], reason=verdict[1]), direction="in")
    assert store.inside_since("r1") is None


def test_a_refused_exit_does_not_clear_inside(store):
    store.record(decision(T0), direction="in")
    store.record(decision(T0 + timedelta(hours=1), lane="out", decision="deny", reason="observation"), direction="out")
    assert store.inside_since("r1") == T0


def test_guard_confirmed_entry_marks_inside(store):
    store.record(decision(decision="allow", reason="guard_confirmed", who="guard-1"), direction="in")
    assert store.inside_since("r1") == T0


def test_a_record_without_direction_changes_no_one(store):
    store.record(decision())
    assert store.inside_since("r1") is None


# ---------------------------------------------------------------- cards


def card_row(store: Store, number: str):
    """(pass it is bound to, first_seen, last_seen, swipes): the binding and the history."""
    history = store.conn.execute(
        "SELECT first_seen, last_seen, swipes FROM cards WHERE number = ?", (number,)
    ).fetchone() or (None, None, 0)
    return (store.card_pass(number), *history)


def test_a_card_decision_sets_first_seen_once_and_counts_swipes(store):
    t1, t2, t3 = T0, T0 + timedelta(hours=2), T0 + timedelta(days=1)
    store.record(decision(t1, pass_id=None, decision="deny", reason="unknown_card", card="999"))
    assert card_row(store, "999") == (None, t1.timestamp(), t1.timestamp(), 1)
    store.record(decision(t2, pass_id=None, decision="deny", reason="unknown_card", card="999"))
    store.record(decision(t3, pass_id=None, decision="deny", reason="unknown_card", card="999"))
    assert card_row(store, "999") == (None, t1.timestamp(), t3.timestamp(), 3)
    assert store.card_pass("999") is None


def test_a_bound_card_keeps_its_pass_through_swipes_and_reimports(store):
    store.upsert_passes([{"id": "r1", "category": "resident"}], {"1234567": "r1"})
    assert card_row(store, "1234567") == ("r1", None, None, 0)  # bound, never swiped
    store.record(decision(T0, card="1234567"), direction="in")
    store.record(decision(T0 + timedelta(hours=1), card="1234567"), direction="in")
    assert card_row(store, "1234567") == ("r1", T0.timestamp(), (T0 + timedelta(hours=1)).timestamp(), 2)
    store.upsert_passes([{"id": "r1", "category": "resident"}], {"1234567": "r1"})  # the roster again
    assert card_row(store, "1234567") == ("r1", T0.timestamp(), (T0 + timedelta(hours=1)).timestamp(), 2)


def test_a_swiped_unknown_card_can_be_bound_later(store):
    store.record(decision(T0, pass_id=None, decision="deny", reason="unknown_card", card="555"))
    store.upsert_passes([{"id": "r2", "category": "renter"}], {"555": "r2"})
    assert store.card_pass("555") == "r2"
    assert card_row(store, "555")[1:] == (T0.timestamp(), T0.timestamp(), 1)


# ---------------------------------------------------------------- passes


def test_upsert_passes_round_trips_every_field(store):
    row = {
        "id": "3-2-501-王芳",
        "holder": "王芳",
        "unit": "3-2-501",
        "category": "returnee",
        "phone_last4": "1234",
        "valid_from": datetime(2026, 11, 1, tzinfo=TZ),
        "valid_until": datetime(2026, 12, 31, 23, 59, 59, tzinfo=TZ),
        "observation_until": datetime(2026, 12, 5, tzinfo=TZ),
        "pcr_at": datetime(2026, 11, 21, 9, 30, tzinfo=TZ),
        "health_code": "green",
        "revoked": False,
    }
    assert store.upsert_passes([row], {"1234567": row["id"]}) == 1
    p = store.get_pass(row["id"])
    assert (p.id, p.holder, p.unit, p.category, p.phone_last4, p.health_code) == (
        "3-2-501-王芳", "王芳", "3-2-501", "returnee", "1234", "green")
    for f in ("valid_from", "valid_until", "observation_until", "pcr_at"):
        assert getattr(p, f) == row[f], f
        assert getattr(p, f).tzinfo is not None
    assert p.revoked is False and p.listed is True
    assert store.card_pass("1234567") == row["id"]
    assert store.get_pass("nobody") is None


def test_upsert_replaces_a_pass_and_rebinds_cards(store):
    store.upsert_passes([{"id": "a", "category": "resident"}, {"id": "b", "category": "renter"}], {"77": "a"})
    assert store.upsert_passes([{"id": "a", "category": "resident", "revoked": True}], {"77": "b"}) == 1
    assert store.get_pass("a").revoked is True
    assert store.get_pass("b").category == "renter"
    assert store.card_pass("77") == "b"
    assert store.pass_count() == 2


def test_upsert_is_all_or_nothing(store):
    store.upsert_passes([{"id": "a", "category": "resident"}])
    with pytest.raises(sqlite3.IntegrityError):
        store.upsert_passes([{"id": "b", "category": "renter"}, {"id": "c", "category": None}], {"88": "b"})
    assert store.pass_count() == 1 and store.get_pass("b") is None and store.card_pass("88") is None
    assert not store.conn.in_transaction
    store.upsert_passes([{"id": "b", "category": "renter"}])  # the store is still usable
    assert store.pass_count() == 2


def test_a_failed_card_binding_leaves_the_passes_untouched(tmp_path, store):
    store.upsert_passes([{"id": "a", "category": "resident", "holder": "旧"}])
    other = sqlite3.connect(tmp_path / "gate.db")
    other.execute("CREATE TRIGGER refuse BEFORE INSERT ON card_bindings BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    other.commit()
    try:
        with pytest.raises(sqlite3.DatabaseError):
            store.upsert_passes([{"id": "a", "category": "resident", "holder": "新"}, {"id": "b", "category": "renter"}], {"88": "b"})
    finally:
        other.close()
    assert store.pass_count() == 1 and store.get_pass("a").holder == "旧"


def test_meta_values_persist(tmp_path, store):
    assert store.get_meta("policy_version") is None
    store.set_meta("policy_version", "3")
    store.set_meta("policy_version", "4")
    other = Store(tmp_path / "gate.db")
    try:
        assert other.get_meta("policy_version") == "4"
    finally:
        other.close()


# ---------------------------------------------------------------- schema m006: bindings apart from history


def old_schema_store(path) -> None:
    """A store as gates had it before m006 (card bindings in cards.pass_id), with data."""
    from sqlite_utils import Database

    from gate.store.migrations import migrations

    db = Database(path)
    migrations.apply(db, stop_before="m006_card_bindings")
    with db.conn:
        db.conn.executemany(
            "INSERT INTO passes(id, category, holder, revoked) VALUES (?, ?, ?, 0)",
            [("r1", "resident", "王芳"), ("r2", "renter", "李雷"), ("r3", "resident", "张伟")],
        )
        db.conn.executemany(
            "INSERT INTO cards(number, pass_id, first_seen, last_seen, swipes) VALUES (?, ?, ?, ?, ?)",
            [
                ("111", "r1", 1000.0, 2000.0, 5),  # bound and swiped
                ("112", "r1", None, None, 0),  # r1's second card, never swiped
                ("222", "r2", 1500.0, 1500.0, 1),
                ("999", None, 1200.0, 1300.0, 2),  # an unknown card, swiped twice
            ],
        )
        # A snapshot that was being staged when the old code crashed.
        db.conn.execute("CREATE TABLE snapshot_cards (number TEXT PRIMARY KEY, pass_id TEXT) WITHOUT ROWID")
        db.conn.execute("INSERT INTO snapshot_cards VALUES ('333', 'r3')")
        db.conn.execute("CREATE TABLE passes_new AS SELECT * FROM passes")
    db.conn.close()


def test_m006_moves_bindings_out_of_cards_and_keeps_the_history(tmp_path):
    from gate.desk import pass_admin
    from gate.desk import privacy
    from gate.store.daily import daily

    path = tmp_path / "gate.db"
    old_schema_store(path)
    s = Store(path, tz=TZ)
    try:
        assert "m006_card_bindings" in [r[0] for r in rows(s, "SELECT name FROM _sqlite_migrations")]
        assert [r[1] for r in rows(s, "PRAGMA table_info(cards)")] == ["number", "first_seen", "last_seen", "swipes"]
        assert rows(s, "SELECT name FROM sqlite_master WHERE name = 'idx_cards_pass_id'") == []
        # The same lookups ...
        assert [s.card_pass(n) for n in ("111", "112", "222", "333", "999")] == ["r1", "r1", "r2", None, None]
        assert (s.has_card("r1"), s.has_card("r2"), s.has_card("r3")) == (True, True, False)
        # ... and the same history.
        assert card_row(s, "111") == ("r1", 1000.0, 2000.0, 5)
        assert card_row(s, "112") == ("r1", None, None, 0)
        assert card_row(s, "222") == ("r2", 1500.0, 1500.0, 1)
        assert card_row(s, "999") == (None, 1200.0, 1300.0, 2)
        assert rows(s, "SELECT number FROM cards ORDER BY number") == [("111",), ("222",), ("999",)]
        assert [(c["number"], c["swipes"]) for c in pass_admin.show(s, "r1")["cards"]] == [("111", 5), ("112", 0)]
        assert privacy.export(s, "r2")["cards"] == [{"number": "222", "first_seen": 1500.0, "last_seen": 1500.0, "swipes": 1}]
        day = datetime.fromtimestamp(1000.0, TZ).date().isoformat()
        assert daily(s, day)["new_cards"] == ["111", "999", "222"]
        # The crashed staging of the old code is cleared by maintenance, and the store
        # goes on working.
        Maintenance(lambda: s, retention_days=90).run_once(s)
        assert s.snapshot_leftovers() == []
        s.record(decision(T0, card="112"), direction="in")
        assert card_row(s, "112") == ("r1", T0.timestamp(), T0.timestamp(), 1)
    finally:
        s.close()


# ---------------------------------------------------------------- snapshots


def stage(store: Store, passes: list[str], cards: dict[str, str], version: int, *, commit: bool = True) -> None:
    now = 1.7e9
    store.snapshot_begin()
    store.snapshot_add(
        [(p, None, None, "resident", None, None, None, None, None, None, 0, now) for p in passes], list(cards.items())
    )
    if commit:
        store.snapshot_commit(version)


def test_a_snapshot_swaps_passes_and_bindings_in_and_leaves_no_table_behind(store):
    store.upsert_passes(
        [{"id": p, "category": "resident"} for p in ("a", "b", "c")], {"1": "a", "2": "b", "3": "c", "5": "a"}
    )
    store.record(decision(T0, pass_id="a", card="1"), direction="in")
    store.record(decision(T0, pass_id=None, decision="deny", reason="unknown_card", card="9"))
    # While the snapshot is staged the lanes still see the table in force.
    stage(store, ["a", "b", "d"], {"1": "b", "4": "d", "9": "a", "5": "a"}, 7, commit=False)
    assert store.card_pass("1") == "a" and store.card_pass("4") is None and store.pass_count() == 3
    store.snapshot_commit(7)
    assert store.snapshot_leftovers() == []
    assert store.passes_version() == 7 and store.pass_count() == 3 and store.get_pass("c") is None
    assert store.card_pass("1") == "b"  # moved to another pass
    assert store.card_pass("2") is None  # unbound: not in the snapshot
    assert store.card_pass("3") is None  # its pass is gone
    assert store.card_pass("4") == "d"  # new
    assert store.card_pass("9") == "a"  # an unknown card, bound now
    assert store.card_pass("5") == "a"  # unchanged
    assert [store.has_card(p) for p in ("a", "b", "c", "d")] == [True, True, False, True]
    # The gate's own history is untouched by the swap.
    assert card_row(store, "1") == ("b", T0.timestamp(), T0.timestamp(), 1)
    assert card_row(store, "9") == ("a", T0.timestamp(), T0.timestamp(), 1)
    # Another snapshot after it: the index names do not collide, the lookups still use one.
    stage(store, ["d"], {"4": "d"}, 8)
    assert store.snapshot_leftovers() == [] and store.pass_count() == 1
    assert (store.card_pass("1"), store.card_pass("4")) == (None, "d")
    plan = " ".join(r[-1] for r in rows(store, "EXPLAIN QUERY PLAN SELECT 1 FROM card_bindings WHERE pass_id = 'd'"))
    assert "USING COVERING INDEX idx_card_bindings_pass_id_" in plan
    # Deltas and swipes after a swap land in the swapped-in tables.
    store.apply_pass_changes([{"id": "e", "category": "renter"}], {"e": "6", "d": None}, [], 9)
    assert (store.card_pass("6"), store.card_pass("4"), store.has_card("d")) == ("e", None, False)


def test_an_aborted_snapshot_changes_nothing(store):
    store.upsert_passes([{"id": "a", "category": "resident"}], {"1": "a"})
    stage(store, ["b"], {"1": "b"}, 3, commit=False)
    store.snapshot_abort()
    assert store.snapshot_leftovers() == []
    assert store.pass_count() == 1 and store.card_pass("1") == "a" and store.passes_version() == 0


def swap_writes(store: Store, n_cards: int) -> tuple[int, list[int]]:
    """Rows the swap transaction of a snapshot changes (sqlite3 total_changes), and
    those of each other write transaction of snapshot_commit (the cleanup)."""
    from contextlib import contextmanager

    ids = [f"p{i:06d}" for i in range(n_cards)]
    store.upsert_passes([{"id": p, "category": "resident"} for p in ids], {f"{i:08d}": p for i, p in enumerate(ids)})
    with store.write() as c:  # every card has history too
        c.executemany("INSERT INTO cards(number, first_seen, last_seen, swipes) VALUES (?, 1.0, 2.0, 3)",
                      [(f"{i:08d}",) for i in range(n_cards)])
    # Every binding changes: each card moves to the next pass.
    stage(store, ids, {f"{i:08d}": ids[(i + 1) % n_cards] for i in range(n_cards)}, 2, commit=False)
    real_write, txns = store.write, []
    statements: list[str] = []

    @contextmanager
    def counted():
        before, statements[:] = store.conn.total_changes, []
        with real_write() as c:
            yield c
        txns.append((" ".join(statements), store.conn.total_changes - before))

    store.conn.set_trace_callback(statements.append)
    store.write = counted  # type: ignore[method-assign]
    try:
        store.snapshot_commit(2)
    finally:
        store.conn.set_trace_callback(None)
        del store.write
    (swap,) = [n for sql, n in txns if "RENAME TO passes_old" in sql]
    assert store.card_pass("00000000") == ids[1] and card_row(store, "00000001")[1:] == (1.0, 2.0, 3)
    return swap, [n for sql, n in txns if "RENAME TO passes_old" not in sql]


def test_the_swap_rewrites_no_card_row_whatever_the_number_of_cards(tmp_path, monkeypatch):
    import gate.store.snapshot

    monkeypatch.setattr(gate.store.snapshot, "CLEANUP_CHUNK", 1000)
    swaps = []
    for n in (1000, 10_000):
        s = Store(tmp_path / f"{n}.db")
        try:
            swap, cleanup = swap_writes(s, n)
            assert s.snapshot_leftovers() == []
        finally:
            s.close()
        swaps.append(swap)
        # The old tables went in chunks, each its own short transaction.
        assert sum(cleanup) == 2 * n and max(cleanup) <= 1000 and len(cleanup) >= 2 * n // 1000
    # The old swap (UPDATE cards SET pass_id = NULL, then upsert every binding) changed
    # 2 rows a card; this one changes the two meta rows, for 1,000 cards as for 10,000.
    assert swaps == [2, 2]


def test_a_crash_between_the_swap_and_its_cleanup_is_cleared_by_maintenance(tmp_path, monkeypatch):
    path = tmp_path / "gate.db"
    s = Store(path)
    s.upsert_passes([{"id": "a", "category": "resident"}], {"1": "a"})
    stage(s, ["b"], {"1": "b"}, 5, commit=False)
    monkeypatch.setattr(s, "clear_snapshot_leftovers", lambda **kw: 0)  # the power fails after the swap
    s.snapshot_commit(5)
    assert s.snapshot_leftovers() == ["card_bindings_old", "passes_old"]
    s.conn.close()
    s = Store(path)
    try:
        # Opening leaves them (a million rows take seconds: the gate starts first) ...
        assert s.snapshot_leftovers() == ["card_bindings_old", "passes_old"]
        assert (s.card_pass("1"), s.pass_count(), s.get_pass("b") is not None, s.passes_version()) == ("b", 1, True, 5)
        # ... and maintenance's first pass clears them.
        Maintenance(lambda: s, retention_days=90).run_once(s)
        assert s.snapshot_leftovers() == []
    finally:
        s.close()


def test_leftovers_are_cleared_at_the_next_snapshot(store, monkeypatch):
    stage(store, ["a"], {"1": "a"}, 1)
    with monkeypatch.context() as m:
        m.setattr(store, "clear_snapshot_leftovers", lambda **kw: 0)
        stage(store, ["b"], {"1": "b"}, 2)
    assert store.snapshot_leftovers() == ["card_bindings_old", "passes_old"]
    stage(store, ["c"], {"1": "c"}, 3)
    assert store.snapshot_leftovers() == []
    assert (store.card_pass("1"), store.pass_count(), store.passes_version()) == ("c", 1, 3)


def test_a_staging_under_way_is_left_alone_by_maintenance_and_an_abandoned_one_is_cleared(tmp_path):
    path = tmp_path / "gate.db"
    stager = Store(path)
    stage(stager, ["a"], {"1": "a"}, 1, commit=False)
    other = Store(path)  # maintenance, in another thread or process, runs meanwhile
    Maintenance(lambda: other, retention_days=90).run_once(other)
    other.close()
    assert stager.snapshot_leftovers() == ["card_bindings_new", "passes_new", "tombstones_new"]
    stage(stager, ["a", "b"], {"1": "b"}, 2)  # a restarted staging replaces the first
    assert stager.snapshot_leftovers() == [] and stager.card_pass("1") == "b"
    stage(stager, ["c"], {"1": "c"}, 3, commit=False)
    stager.close()  # died mid-staging: the lock goes with it
    s = Store(path)
    try:
        Maintenance(lambda: s, retention_days=90).run_once(s)
        assert s.snapshot_leftovers() == []
        assert (s.card_pass("1"), s.pass_count(), s.passes_version()) == ("b", 2, 2)
    finally:
        s.close()


def test_a_second_stager_is_refused_and_the_first_goes_on(tmp_path, monkeypatch):
    from gate.store.database import StagingBusy

    path = tmp_path / "gate.db"
    a, b = Store(path), Store(path)
    try:
        a.upsert_passes([{"id": "old", "category": "resident"}], {"1": "old"})
        a.snapshot_begin()
        a.snapshot_add([("a1", None, None, "resident", None, None, None, None, None, None, 0, 1.7e9)], [("1", "a1")])
        monkeypatch.setattr(Store, "STAGING_WAIT_S", 0.0)
        with pytest.raises(StagingBusy, match="another process is staging"):
            b.snapshot_begin()
        b.snapshot_abort()  # the loser's abort leaves the winner's staging alone
        a.snapshot_add([("a2", None, None, "resident", None, None, None, None, None, None, 0, 1.7e9)], [])
        a.snapshot_commit(9)
        assert sorted(r[0] for r in a.conn.execute("SELECT id FROM passes")) == ["a1", "a2"]
        assert (b.card_pass("1"), b.passes_version()) == ("a1", 9)
    finally:
        a.close()
        b.close()


def test_reads_in_one_reading_see_one_snapshot(tmp_path):
    path = tmp_path / "gate.db"
    lane, sync = Store(path), Store(path)
    try:
        sync.upsert_passes([{"id": "a", "category": "resident"}], {"1": "a"})
        with lane.reading():
            assert lane.card_pass("1") == "a"
            stage(sync, ["b"], {"1": "b"}, 2)  # swapped in between the lane's two reads
            assert lane.get_pass("a") is not None  # still the table the binding came from
        assert lane.card_pass("1") == "b" and lane.get_pass("a") is None
    finally:
        lane.close()
        sync.close()
