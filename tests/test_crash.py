"""Kill -9 and power cuts: nothing the gate acted on is lost, nothing reaches
central twice. The long form (20 kills, 2,000+ events) runs with `-m long`."""
from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest

from tests.crash_harness import Daemon, copy_db, wait_until, write_config, write_fast_demo
from tests.mqtt_broker import Broker

KILLS = int(os.environ.get("GATE_CRASH_KILLS", "4"))
EVENTS = int(os.environ.get("GATE_CRASH_EVENTS", "300"))


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return c.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # not migrated yet
        return 0
    finally:
        c.close()


def run_kills(tmp_path: Path, broker: Broker, kills: int, events: int) -> dict[str, int]:

    store = tmp_path / "gate.db"
    script = write_fast_demo(tmp_path, people=400, interval_s=0.06)
    cfg = write_config(tmp_path, store=store, script=script, broker=broker.url, trusted=tmp_path / "central.pub")
    central = _central(tmp_path, broker)
    daemon = Daemon(cfg, tmp_path)
    rnd = random.Random(os.getpid())
    lost_on_power_cut = 0
    try:
        for k in range(kills):
            daemon.start()
            # Let it come up and decide a while, then cut it down mid-stream.
            wait_until(lambda: store.exists() and count(store, "SELECT count(*) FROM events") > 0, 30)
            target = count(store, "SELECT count(*) FROM events") + rnd.randint(5, 60)
            wait_until(lambda: count(store, "SELECT count(*) FROM events") >= target, 30, step=0.01)
            daemon.kill()
            # The files as a power cut would leave them: they open, pass the check, and
            # hold every decision the gate acted on (printed only after its commit).
            copy = copy_db(store, tmp_path / f"cut{k}")
            c = sqlite3.connect(copy)
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            in_copy = c.execute("SELECT count(*) FROM events WHERE type = 'decision'").fetchone()[0]
            c.close()
            lost_on_power_cut += max(0, daemon.printed_decisions() - in_copy)
        daemon.start()
        wait_until(lambda: count(store, "SELECT count(*) FROM events") >= events, 300, step=0.2)
        assert daemon.term() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.proc.kill()
    stored = count(store, "SELECT count(*) FROM events")
    decisions = count(store, "SELECT count(*) FROM events WHERE type = 'decision'")
    # Deliver what is left, then compare with central.
    import subprocess
    import sys
    from tests.conftest import ROOT

    res = subprocess.run([sys.executable, "-m", "gate.cli.main", "sync", "--drain", "-c", str(cfg), "--timeout", "120"],
                         capture_output=True, text=True, cwd=ROOT, timeout=200)
    assert res.returncode == 0, res.stderr
    assert wait_until(lambda: central.store.event_count("g1") >= stored, 60)
    rows = central.store.events("g1")
    central.stop()
    ids = [r["id"] for r in rows]
    seqs = [r["seq"] for r in rows]
    gate_ids = {r[0] for r in sqlite3.connect(store).execute("SELECT id FROM events")}
    assert len(ids) == len(set(ids)), "central holds an event twice"
    assert set(ids) == gate_ids, "central and the gate disagree on the events"
    assert seqs == list(range(1, stored + 1)), "central's events are not gapless in seq order"
    assert daemon.printed_decisions() <= decisions, "a decision the gate acted on is missing from the store"
    assert lost_on_power_cut == 0
    return {"runs": daemon.runs, "events": stored, "decisions": decisions, "lost": 0, "duplicated": len(ids) - len(set(ids))}


def _central(tmp_path: Path, broker: Broker):  # type: ignore[no-untyped-def]
    from sync.central import Central, load_central_config

    key = tmp_path / "central.key"
    from gate.core.tokens import new_keypair

    new_keypair(tmp_path, "central")
    conf = tmp_path / "central.toml"
    conf.write_text(f'site = "crash"\nbroker = "{broker.url}"\nsigning_key = "{key}"\ndb = "{tmp_path / "central.db"}"\n', encoding="utf-8")
    central = Central(load_central_config(conf))
    central.start()
    # Until central's shared subscription exists, the broker would drop events (reason 16).
    assert central.wait_connected(30)
    return central


def test_sigkill_and_power_cuts_lose_nothing(tmp_path: Path, broker: Broker) -> None:
    result = run_kills(tmp_path, broker, KILLS, EVENTS)
    print(f"crash: {result}")


@pytest.mark.long
def test_sigkill_20_times_during_a_2000_event_run(tmp_path: Path, broker: Broker) -> None:
    result = run_kills(tmp_path, broker, 20, 2000)
    print(f"crash (long): {result}")
