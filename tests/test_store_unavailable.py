"""Only corruption is corruption: a store that cannot be used at start-up (a full
disk, an I/O error, no permission) is kept, never moved aside; the gate says why and
waits with the door locked, and starts on its own store, events intact, once it can."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from gate.store.integrity import StoreUnavailable
from tests.conftest import ROOT
from tests.disk_helpers import Ext2Image, fill, tmpfs

DRILL = drill_file.parse(textwrap.dedent("""
    name: store unavailable
    start: "2026-11-22T08:00:00+08:00"
    config: {policy: {passback: "off"}}
    passes:
      - {id: r1, holder: 王芳, unit: 3-2-501, category: resident}
    """))


def make_store(store: Path, people: int = 5) -> int:
    with Rehearsal(DRILL, store_path=store) as r:
        for i in range(people):
            r.step(Step(at=i * 10, lane="in", qr="r1"))
            r.step(Step(at=i * 10 + 1, lane="in", temperature=36.5))
    return events(store)


def events(store: Path) -> int:
    c = sqlite3.connect(store)
    try:
        return c.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        c.close()


def set_aside(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".corrupt-" in p.name)


def test_a_full_disk_at_start_up_keeps_the_store_and_waits_with_the_door_locked(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        store = disk / "gate.db"
        before = make_store(store)
        filler = fill(disk)
        r = Rehearsal(DRILL, store_path=store)
        with pytest.raises(StoreUnavailable, match="the disk is full"):
            r.app.start()  # no one to wait: says why at once
        r.app.stop()
        assert set_aside(disk) == [] and store.exists()

        # As `gate run` starts it: waits, relay held locked, until there is room.
        r = Rehearsal(DRILL, store_path=store)
        said: list[str] = []
        relay_levels: list[int] = []
        waiting = threading.Event()

        def wait(err: StoreUnavailable) -> bool:
            said.append(str(err))
            relay_levels.append(r.app.drivers._sim_pins["in"].pin(22).read())
            waiting.set()
            threading.Event().wait(0.05)  # gate run waits 5 s between tries
            return len(said) < 500

        starter = threading.Thread(target=lambda: r.app.start(waiting=wait))
        starter.start()
        assert waiting.wait(30)
        filler.unlink()  # the operator frees space
        starter.join(60)
        try:
            assert not starter.is_alive() and r.app.lanes, said[-1:]
            r.step(Step(at=100, lane="in", qr="r1"))
            r.step(Step(at=101, lane="in", temperature=36.5))
        finally:
            r.app.stop()
            r._tmp.cleanup()
        assert "disk is full" in said[0]
        assert relay_levels and set(relay_levels) == {0}  # locked (active high: 0) all along
        assert set_aside(disk) == []
        c = sqlite3.connect(store)
        kinds = [row[0] for row in c.execute("SELECT kind FROM events WHERE type = 'alarm'")]
        decisions = c.execute("SELECT count(*) FROM events WHERE type = 'decision'").fetchone()[0]
        c.close()
        assert "store_unavailable" in kinds
        assert events(store) > before and decisions == 6  # the 5 before the restart kept, one more


def test_an_io_error_reading_the_store_keeps_it(tmp_path: Path) -> None:
    img = Ext2Image(tmp_path / "card.img", tmp_path / "card")
    img.mount()
    try:
        store = img.mnt / "gate.db"
        make_store(store, people=20)
        assert store.stat().st_size > 64 * 1024 and not Path(str(store) + "-wal").exists()
    finally:
        img.umount()
    img.break_block("gate.db")
    img.mount()
    try:
        with open(store, "rb") as f:  # the card now fails to read part of the file
            with pytest.raises(OSError) as err:
                f.read()
            assert err.value.errno == 5
        r = Rehearsal(DRILL, store_path=store)
        try:
            with pytest.raises(StoreUnavailable, match="I/O error"):
                r.app.start()
        finally:
            r.app.stop()
            r._tmp.cleanup()
        assert set_aside(img.mnt) == [] and store.exists()
    finally:
        img.umount()


EACCES_PROBE = """
import sys
from pathlib import Path
from gate.drill.runner import Rehearsal
from tests.test_store_unavailable import DRILL
r = Rehearsal(DRILL, store_path=Path(sys.argv[1]))
try:
    r.app.start()
    print("started")
except Exception as exc:
    print(type(exc).__name__, exc)
finally:
    r.app.stop()
"""


def test_a_store_the_gate_may_not_read_is_kept(tmp_path: Path) -> None:
    """Someone ran a desk command as another user: the gate may not open its store."""
    store = tmp_path / "gate.db"
    before = make_store(store)
    os.chown(store, 65534, 65534)
    os.chmod(store, 0o600)
    # Root without the capability to override file permissions: as the `gate` user would be.
    res = subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-c", EACCES_PROBE, str(store)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("StoreUnavailable") and "no permission" in res.stdout, res.stdout + res.stderr
    assert "owned by nobody, mode 600" in res.stdout
    assert set_aside(tmp_path) == [] and events(store) == before


def test_a_corrupt_store_is_still_set_aside(tmp_path: Path) -> None:
    store = tmp_path / "gate.db"
    make_store(store)
    with open(store, "r+b") as f:
        f.seek(4096)
        f.write(b"\xde\xad\xbe\xef" * 2048)
    with Rehearsal(DRILL, store_path=store) as r:
        assert not r.app.integrity.ok
    assert [n for n in set_aside(tmp_path) if not n.endswith(("-wal", "-shm"))] != []


def test_a_full_disk_at_start_up_gets_the_reserve(tmp_path: Path) -> None:
    """The reserve beside the store is for exactly this: the gate starts on it."""
    with tmpfs(tmp_path / "disk", "4m") as disk:
        store = disk / "gate.db"
        before = make_store(store)
        assert (disk / "gate.db.reserve").stat().st_size >= 2 << 20
        fill(disk)
        with Rehearsal(DRILL, store_path=store) as r:
            r.step(Step(at=100, lane="in", qr="r1"))
            r.step(Step(at=101, lane="in", temperature=36.5))
        assert [l["decision"] for l in r.lines if l["type"] == "decision"] == ["allow"]
        alarms = [l["detail"] for l in r.lines if l["type"] == "alarm" and l["kind"] == "store_unavailable"]
        assert alarms and "reserve was released" in alarms[0] and "disk is full" in alarms[0]
        assert set_aside(disk) == [] and events(store) > before


def test_gate_run_says_why_it_waits_and_starts_when_there_is_room(tmp_path: Path) -> None:
    import signal
    import socket
    import urllib.error
    import urllib.request

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    with tmpfs(tmp_path / "disk", "1m") as disk:
        store = disk / "gate.db"
        before = make_store(store)
        filler = fill(disk)
        cfg = tmp_path / "gate.toml"
        cfg.write_text(f'[store]\npath = "{store}"\n[guard]\nlisten = "127.0.0.1:{port}"\n[[lanes]]\nname = "in"\n'
                       'direction = "in"\nrelay = { driver = "sim", pin = 22 }\n', encoding="utf-8")
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
        proc = subprocess.Popen([sys.executable, "-m", "gate.cli.main", "run", "-c", str(cfg)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            messages = [sock.recv(4096).decode()]
            assert "STATUS=door locked, waiting for the store" in messages[0] and "disk is full" in messages[0]
            # The guard's screen says so too, on the guard page's own address.
            with pytest.raises(urllib.error.HTTPError) as shown:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
            page = shown.value.read().decode()
            assert shown.value.code == 503 and "门已锁" in page and "the disk is full" in page
            filler.unlink()
            while "lanes running" not in messages[-1]:
                messages.append(sock.recv(4096).decode())
            for _ in range(100):  # then the real guard page, on the same port
                try:
                    real = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
                    break
                except (urllib.error.URLError, ConnectionError):
                    threading.Event().wait(0.1)
            assert real.status == 200 and "门已锁 · Door locked" not in real.read().decode()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            sock.close()
        err = proc.stderr.read() if proc.stderr else ""
        assert rc == 0, err
        assert "gate: waiting for the store:" in err and "the disk is full" in err
        assert set_aside(disk) == []
        c = sqlite3.connect(store)
        kinds = [row[0] for row in c.execute("SELECT kind FROM events WHERE type = 'alarm'")]
        c.close()
        assert "store_unavailable" in kinds and events(store) > before
