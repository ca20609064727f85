"""The fault harness: real `gate run` daemons streaming decisions into a real
`gate central` through a mosquitto started from the shipped docs/mosquitto.conf
and docs/mosquitto.acl, while gates and central are killed (-9), the broker is
restarted with persistence on and off, a rogue gate joins `$share/central/...`,
a gate tries central's client id, and a gate user sends malformed JSON.

After each fault the harness waits for the gates' events of that phase to be at
central and prints, per fault: events made, stored at central, lost, duplicated
(one (gate, seq) stored under two ids). Target: 0 lost, 0 duplicated, every line.
`tests/test_faults.py` runs a short form of the same plan."""
from __future__ import annotations

import json
import random
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.core import Context, Figure
from bench.procs import CentralProcess

TITLE = "faults: kills, broker restarts, rogue clients during a stream"
SITE = "faults"


@dataclass(frozen=True)
class Plan:
    gates: int = 3
    gate_kills: int = 20
    central_kills: int = 10
    restarts_persistent: int = 5
    restarts_volatile: int = 5
    rogue_s: float = 8.0
    settle_s: float = 90.0  # how long a phase's events may take to reach central

    @classmethod
    def short(cls) -> "Plan":
        return cls(gates=2, gate_kills=2, central_kills=1, restarts_persistent=1, restarts_volatile=1, rogue_s=3.0, settle_s=60.0)


@dataclass
class Line:
    fault: str
    times: int
    made: int
    stored: int
    lost: int
    duplicated: int

    def text(self) -> str:
        return f"{self.fault:<34} {self.times:>5} {self.made:>7} {self.stored:>7} {self.lost:>5} {self.duplicated:>5}"


HEADER = f"{'fault':<34} {'times':>5} {'made':>7} {'stored':>7} {'lost':>5} {'dup':>5}"


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return list(con.execute(sql))
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        con.close()


class Harness:
    def __init__(self, directory: Path, plan: Plan, log: Callable[[str], None]) -> None:
        from tests.crash_harness import Daemon, write_config, write_fast_demo
        from tests.docs_broker import docs_broker
        from tests.mqtt_broker import Broker

        self.dir, self.plan, self.log = directory, plan, log
        self.rng = random.Random(12)
        self.gate_ids = [f"g{k + 1}" for k in range(plan.gates)]
        self.users = {g: f"pw-{g}" for g in self.gate_ids} | {"central": "pw-central", "rogue": "pw-rogue", "g9": "pw-g9"}
        self.broker = docs_broker(lambda **kw: Broker(**kw).start(), directory / "broker", self.users, persistence=True,
                                  name="faults", extra=["max_connections -1"])
        self.central = CentralProcess(directory / "central", self.broker, site=SITE, user="central",
                                      password=self.users["central"])
        self.daemons: dict[str, Any] = {}
        self.stores: dict[str, Path] = {}
        try:
            self.central.start()
            self._start_gates(Daemon, write_config, write_fast_demo)
        except BaseException:
            self.close()  # no broker or central left running behind a failed start
            raise
        self.seen: dict[str, int] = {g: 0 for g in self.gate_ids}  # per gate: highest seq already accounted

    def _start_gates(self, Daemon: Any, write_config: Any, write_fast_demo: Any) -> None:  # noqa: N803
        directory = self.dir
        for g in self.gate_ids:
            d = directory / g
            d.mkdir()
            (d / "mqtt.pw").write_text(self.users[g] + "\n", encoding="utf-8")
            script = write_fast_demo(d, people=400, interval_s=0.08)
            self.stores[g] = d / "gate.db"
            extra = (f'username = "{g}"\npassword_file = "{d / "mqtt.pw"}"\nreceipt_timeout_s = 2\n'
                     "backoff_s = [0.2, 2.0]\n")
            cfg = write_config(d, store=self.stores[g], script=script, broker=self.broker.url, gate=g, site=SITE,
                               trusted=self.central.dir / "central.pub", sync_extra=extra)
            self.daemons[g] = Daemon(cfg, d)
            self.daemons[g].start()

    # ------------------------------------------------------------ accounting
    def _made(self) -> dict[str, dict[int, str]]:
        """Per gate, events (seq -> id) not yet accounted; advances the mark."""
        out: dict[str, dict[int, str]] = {}
        for g in self.gate_ids:
            rows = _rows(self.stores[g], f"SELECT seq, id FROM events WHERE seq > {self.seen[g]}")
            out[g] = {int(s): i for s, i in rows}
            if rows:
                self.seen[g] = max(out[g])
        return out

    def _settle(self, fault: str, times: int) -> Line:
        made = self._made()
        want = {(g, s): i for g, m in made.items() for s, i in m.items()}
        deadline = time.monotonic() + self.plan.settle_s
        while True:
            stored = _rows(self.central.db, "SELECT id, gate, seq FROM events")
            ids = {r[0] for r in stored}
            missing = [k for k, i in want.items() if i not in ids]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        by_key: dict[tuple[str, int], int] = {}
        for _, g, s in stored:
            if (g, int(s)) in want:
                by_key[(g, int(s))] = by_key.get((g, int(s)), 0) + 1
        dup = sum(n - 1 for n in by_key.values() if n > 1)
        line = Line(fault, times, len(want), len(want) - len(missing), len(missing), dup)
        self.log(line.text())
        return line

    # ------------------------------------------------------------ faults
    def _decide_a_while(self, seconds: float) -> None:
        time.sleep(seconds)

    def gate_kills(self, n: int) -> Line:
        for k in range(n):
            g = self.gate_ids[k % len(self.gate_ids)]
            self._decide_a_while(self.rng.uniform(0.5, 2.0))
            self.daemons[g].kill()
            self.daemons[g].start()
        return self._settle("gate kill -9", n)

    def central_kills(self, n: int) -> Line:
        for _ in range(n):
            self._decide_a_while(self.rng.uniform(1.0, 2.5))
            self.central.kill()
            self._decide_a_while(self.rng.uniform(0.2, 1.5))
            self.central.start()
        return self._settle("central kill -9", n)

    def broker_restarts(self, n: int, persistence: bool) -> Line:
        self.broker.extra = [f"persistence {'true' if persistence else 'false'}" if x.startswith("persistence ") else x
                             for x in self.broker.extra]
        for _ in range(n):
            self._decide_a_while(self.rng.uniform(1.0, 2.5))
            self.broker.stop()
            self._decide_a_while(self.rng.uniform(0.2, 1.0))
            self.broker.start()
            self._wait_central()
        return self._settle(f"broker restart, persistence {'on' if persistence else 'off'}", n)

    def _wait_central(self) -> None:
        # central reconnects on its own; its SUBSCRIBE comes right after
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and f" as {self.central.client_id} (" not in self.broker.log().rsplit("--- start", 1)[-1]:
            time.sleep(0.1)

    def _client(self, user: str, client_id: str) -> Any:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(user, self.users[user])
        c.connect(self.broker.host, self.broker.port)
        c.loop_start()
        return c

    def rogue_share(self) -> Line:
        prefix = f"gate/v1/{SITE}"
        rogue = self._client("rogue", "rogue")
        for group in ("central", "gate", SITE):
            rogue.subscribe(f"$share/{group}/{prefix}/+/events", qos=1)
            rogue.subscribe(f"$share/{group}/gate/v1/+/+/events", qos=1)
        self._decide_a_while(self.plan.rogue_s)
        rogue.loop_stop()
        rogue.disconnect()
        return self._settle("rogue $share subscriber", 1)

    def takeover(self) -> Line:
        end = time.monotonic() + self.plan.rogue_s
        tries = 0
        while time.monotonic() < end:
            for cid in ("central", f"central-{SITE}-1", *self.gate_ids):
                c = self._client("rogue", cid)
                time.sleep(0.05)
                c.loop_stop()
                c.disconnect()
                tries += 1
        return self._settle("client-id takeover attempt", tries)

    def poison(self) -> Line:
        g9 = self._client("g9", "g9")
        topic = f"gate/v1/{SITE}/g9/events"
        for payload in (b"{not json", b'{"id": 1, "seq": "x"}', b"\xff\xfe", b"[]"):
            g9.publish(topic, payload, qos=1).wait_for_publish(5)
        self._decide_a_while(2.0)
        g9.loop_stop()
        g9.disconnect()
        return self._settle("poison messages (malformed JSON)", 4)

    def close(self) -> None:
        for d in self.daemons.values():
            if d.proc and d.proc.poll() is None:
                d.kill()
        self.central.stop()
        self.broker.cleanup()


def run_plan(plan: Plan, log: Callable[[str], None], directory: Path | None = None) -> list[Line]:
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        h = Harness(Path(directory or tmp), plan, log)
        lines: list[Line] = []
        try:
            time.sleep(3.0)  # the gates come up and start deciding
            log(HEADER)
            lines.append(h._settle("none (warm-up)", 0))
            lines.append(h.gate_kills(plan.gate_kills))
            lines.append(h.central_kills(plan.central_kills))
            lines.append(h.broker_restarts(plan.restarts_persistent, True))
            lines.append(h.broker_restarts(plan.restarts_volatile, False))
            lines.append(h.rogue_share())
            lines.append(h.takeover())
            lines.append(h.poison())
        finally:
            h.close()
        return lines


def run(ctx: Context) -> list[Figure]:
    plan = Plan.short() if ctx.quick else Plan()
    lines = run_plan(plan, ctx.log)
    table = "\n".join([HEADER, *(line.text() for line in lines)])
    print(table)
    made = sum(x.made for x in lines)
    lost = sum(x.lost for x in lines)
    dup = sum(x.duplicated for x in lines)
    ctx.implications.append(f"fault harness: {made:,} events through {sum(x.times for x in lines)} faults, {lost} lost, {dup} duplicated")
    figures = [Figure("faults.events", float(made), "events", note=f"{plan.gates} gates streaming decisions through every fault")]
    for x in lines[1:]:
        key = x.fault.split(" (")[0].replace(" -9", "").replace(", persistence ", "_").replace(" ", "_").replace("$", "")
        figures.append(Figure(f"faults.{key}.lost", float(x.lost), "events", note=f"{x.times}× {x.fault}: {x.made} made, {x.stored} stored (target 0 lost)"))
        figures.append(Figure(f"faults.{key}.duplicated", float(x.duplicated), "events", note="target 0"))
    return figures


def _main() -> None:
    import sys

    plan = Plan.short() if "--quick" in sys.argv else Plan()
    lines = run_plan(plan, lambda s: print(s, flush=True))
    print(json.dumps([x.__dict__ for x in lines]))


if __name__ == "__main__":
    _main()
