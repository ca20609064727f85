"""The drill runner: a timeline of what happens in front of a gate, run through the
real lane logic with simulated hardware on a clock the runner moves.

For each step the runner first fires every lane timer due before it (door relock,
temperature wait, night reminder ...), then sets the clock to the step, drives the
simulated device (QR frames into the camera, GY-MCU90614 frames into the pty,
a Wiegand train onto the mock pins), waits until the real driver has consumed it
and the lane has decided, and moves on.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo


from gate import config as cfgmod
from gate.core import site as sitemod
from gate.app.gate_app import GateApp
from sync.attach import services as sync_services  # a drill with [sync] or --broker runs sync as `gate run` does
from gate.core.clock import DrillClock
from gate.drill.file import Drill, Step
from gate.drill.broker_site import BrokerSite
from gate.drill.site import DrillSite
from gate.core.records import LaneRecord
from gate.store.daily import daily
from gate.drill.stimuli import SETTLE_S, DrillError, Keys, _fire_timers, apply_step, pass_rows, seed_store  # noqa: F401

PRINTED = ("decision", "prompt", "alarm", "door")

DEFAULT_CONFIG: dict[str, Any] = {
    "gate": {"id": "drill", "site": "drill"},
    "lanes": [
        {
            "name": "in",
            "direction": "in",
            "camera": {"driver": "sim"},
            "thermometer": {"driver": "sim"},
            "card_reader": {"driver": "sim", "d0": 5, "d1": 6},
            "pir": {"driver": "sim", "pin": 17, "active_high": True, "debounce_ms": 0},
            "relay": {"driver": "sim", "pin": 22},
            "door_contact": {"driver": "sim", "pin": 27, "debounce_ms": 0},
        },
        {
            "name": "out",
            "direction": "out",
            "camera": {"driver": "sim"},
            "card_reader": {"driver": "sim", "d0": 12, "d1": 13},
            "exit_button": {"driver": "sim", "pin": 23, "debounce_ms": 0},
        },
    ],
}

def simulated(data: dict[str, Any]) -> dict[str, Any]:
    """The same lanes with every device simulated (a drill never touches hardware)."""
    data = copy.deepcopy(data)
    for lane in data.get("lanes", []):
        if not isinstance(lane, dict):
            continue
        cam = lane.get("camera")
        if isinstance(cam, dict):
            lane["camera"] = {"driver": "sim", **({"decoder": cam["decoder"]} if "decoder" in cam else {})}
        th = lane.get("thermometer")
        if isinstance(th, dict):
            lane["thermometer"] = {"driver": "sim", **({"compensation": th["compensation"]} if "compensation" in th else {})}
        for dev in ("card_reader", "relay", "door_contact", "exit_button", "pir"):
            if isinstance(lane.get(dev), dict):
                lane[dev] = {**lane[dev], "driver": "sim"}
        lane["speaker"] = {"driver": "sim"}
    data.pop("demo", None)
    return data


@dataclass
class DrillResult:
    lines: list[dict[str, Any]]
    unmet: dict[str, Any] | None = None
    report: dict[str, Any] | None = None  # the first gate's; `reports` has every gate's
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    forbidden: tuple[dict[str, Any], dict[str, Any]] | None = None  # (the forbid object, the line that matched it)
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.unmet is None and self.forbidden is None


def match_expectations(lines: list[dict[str, Any]], expect: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first expected object with no matching line after the previous match, or None."""
    i = 0
    for want in expect:
        while i < len(lines) and not all(lines[i].get(k) == v for k, v in want.items()):
            i += 1
        if i == len(lines):
            return want
        i += 1
    return None


def match_forbidden(
    lines: list[dict[str, Any]], forbid: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The first forbidden object that some line matches, with that line, or None."""
    for line in lines:
        for bad in forbid:
            if all(line.get(k) == v for k, v in bad.items()):
                return bad, line
    return None


class Rehearsal:
    """A drill in progress: the app (one per gate of a `gates:` drill) on a drill
    clock, fresh stores, the drill's passes and tokens. `run()` plays a whole drill;
    tests use it to add what a drill file cannot say (garbage on the serial line, a
    broken Wiegand train)."""

    def __init__(
        self,
        drill: Drill,
        *,
        base: dict[str, Any] | None = None,
        on_line: Callable[[dict[str, Any]], None] | None = None,
        broker: str | None = None,
        store_path: Path | None = None,
        central: Path | None = None,
    ) -> None:
        if drill.gates and store_path:
            raise DrillError("a drill with several gates keeps each gate's store in its own temporary folder")
        if central is not None and not (drill.gates and broker):
            raise DrillError("--central is for a drill with several gates run with --broker")
        self.drill = drill
        self._tmp = tempfile.TemporaryDirectory(prefix="gate-drill-")
        tmpdir = Path(self._tmp.name)
        self.keys = Keys(tmpdir)
        merged = simulated(cfgmod.deep_merge(base if base is not None else DEFAULT_CONFIG, drill.config))
        # Several gates: news travels in-process (DrillSite), or with --broker through a
        # real broker and a `gate central` the drill starts (BrokerSite).
        self.site: DrillSite | BrokerSite | None = None
        if drill.gates and broker:
            site_id = str(merged.get("gate", {}).get("site") or "drill")
            self.site = BrokerSite(drill.gates, broker, site_id, self.keys.central, tmpdir, central)
            merged = cfgmod.deep_merge(merged, {"sync": {}})  # central_keys below: the drill's key
        elif drill.gates:
            self.site = DrillSite(drill.gates)
        self.lines: list[dict[str, Any]] = []
        self.records: list[LaneRecord] = []
        self._on_line = on_line
        configs = {
            gate: cfgmod.from_dict(
                cfgmod.deep_merge(
                    merged,
                    {
                        "keys": {"trusted": [str(self.keys.central_pub)]},
                        "store": {"path": str(store_path or tmpdir / f"{gate or 'gate'}.db")},
                        **({"gate": {"id": gate}} if gate else {}),
                        # A drill's [sync] talks to a central that signs with the drill's key.
                        **({"sync": {"central_keys": [str(self.keys.central_pub)]}}
                           if isinstance(merged.get("sync"), dict) and not merged["sync"].get("central_keys") else {}),
                        **(self.site.gate_config(gate, self.keys.central_pub)
                           if isinstance(self.site, BrokerSite) and gate else {}),
                    },
                ),
                "drill config",
            )
            for gate in drill.gates or [None]
        }
        self.config = next(iter(configs.values()))
        self.tz = ZoneInfo(self.config.gate.timezone)
        self.clock = DrillClock(drill.start, self.tz)
        self.apps: dict[str | None, GateApp] = {
            gate: GateApp(
                config, clock=self.clock, sinks=[self._sink_for(gate)], seed=0, prerender=False,
                services=sync_services(config, self.site.broker_for(gate) if isinstance(self.site, BrokerSite) and gate
                                       else broker),
                site=self.site.views[gate] if self.site and gate else None,
            )
            for gate, config in configs.items()
        }
        if isinstance(self.site, BrokerSite):
            for app in self.apps.values():
                # Central's signed timestamps are real time: they must not move the drill's
                # judged time (its floor) to today; the drill runs on its own clock.
                app.floor.from_central = _ignore_central_time  # type: ignore[method-assign]
        self.app = next(iter(self.apps.values()))
        self.tokens = {p.id: self.keys.token(p) for p in drill.passes}

    def _sink_for(self, gate: str | None) -> Callable[[LaneRecord], None]:
        def sink(rec: LaneRecord) -> None:
            self.records.append(rec)
            if self.site is not None and gate is not None:
                lane = self.apps[gate].lanes.get(rec.lane)
                news = sitemod.news_of(rec, lane.direction if lane else "", gate)
                if news is not None:
                    self.site.post(gate, news)
            if rec.type in PRINTED:
                line = rec.to_json(t=self.clock.since_start(rec.at))
                if gate is not None:
                    line = {"t": line.pop("t"), "gate": gate, **line}
                self.lines.append(line)
                if self._on_line:
                    self._on_line(line)

        return sink

    def __enter__(self) -> "Rehearsal":
        started: list[GateApp] = []
        try:
            if isinstance(self.site, BrokerSite):
                self.site.start_central()
            for gate, app in self.apps.items():
                app.start()  # checks the store first: seeding comes after
                started.append(app)
                seed_store(app, self.drill.passes)
                if self.site is not None and gate is not None:
                    self.site.attach(gate, app.open_store())
            if isinstance(self.site, BrokerSite):
                self.site.bind({g: a for g, a in self.apps.items() if g is not None})
            self._pump()
        except BaseException:
            for app in started:
                app.stop()
            if self.site is not None:
                self.site.close()
            self._tmp.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for app in self.apps.values():
                app.stop()
            if self.site is not None:
                self.site.close()
        finally:
            self._tmp.cleanup()

    def _pump(self) -> None:
        if self.site is not None:
            self.site.pump(self.clock.now())

    def advance(self, at: float) -> None:
        """Fire the timers due before `at` seconds, then set the clock to it."""
        _fire_timers(list(self.apps.values()), self.clock, self.clock.at(at), self._pump)
        self.clock.set(max(at, self.clock.elapsed))
        self._pump()

    def step(self, step: Step) -> None:
        self.advance(step.at)
        if step.link is not None:
            assert self.site is not None and step.gate is not None
            self.site.set_link(step.gate, step.link == "up", self.clock.now())
            return
        apply_step(self.apps[step.gate], step, self.tokens)
        self._pump()

    def finish(self) -> None:
        """Let what the last steps set in motion finish (door relock, waits, retests)."""
        _fire_timers(list(self.apps.values()), self.clock, self.clock.now() + timedelta(days=1, seconds=1), self._pump)

    def reports(self) -> list[dict[str, Any]]:
        """The daily report of the drill's first day, one per gate."""
        day = self.clock.start.astimezone(self.tz).date().isoformat()
        out = []
        for gate, app in self.apps.items():
            store = app.open_store()
            try:
                out.append({"type": "report", **({"gate": gate} if gate else {}), **daily(store, day)})
            finally:
                store.close()
        return out

    def report(self) -> dict[str, Any]:
        return self.reports()[0]

    def run(self, *, with_report: bool = False) -> DrillResult:
        for step in self.drill.steps:
            self.step(step)
        self.finish()
        counters = {
            (f"{gate}/{name}" if gate else name): lane.counters.snapshot()
            for gate, app in self.apps.items()
            for name, lane in app.lanes.items()
        }
        # The report is an output line like the others (the last): a drill may expect
        # or forbid one, and then has it whether or not --report was given.
        asks = any(o.get("type") == "report" for o in [*self.drill.expect, *self.drill.forbid])
        reports = self.reports() if with_report or asks else []
        lines = [*self.lines, *reports]
        return DrillResult(
            self.lines,
            match_expectations(lines, self.drill.expect),
            reports[0] if reports else None,
            counters,
            match_forbidden(lines, self.drill.forbid),
            reports,
        )

    def drain(self, timeout: float) -> bool:
        """With a broker: wait until every event is acknowledged upstream (every gate's
        whose link is up)."""
        ok = True
        for gate, app in self.apps.items():
            if app.sync is None or (self.site is not None and gate is not None and not self.site.linked[gate]):
                continue
            app.sync.publisher.nudge()
            ok = app.sync.publisher.wait_drained(timeout) and ok
        return ok


def _ignore_central_time(moment: Any) -> None:
    return None


def run(
    drill: Drill,
    *,
    base: dict[str, Any] | None = None,
    with_report: bool = False,
    on_line: Callable[[dict[str, Any]], None] | None = None,
    broker: str | None = None,
    central: Path | None = None,
    drain_timeout: float = 60.0,
) -> DrillResult:
    with Rehearsal(drill, base=base, on_line=on_line, broker=broker, central=central) as r:
        result = r.run(with_report=with_report)
        if broker and not r.drain(drain_timeout):
            raise DrillError(f"events not delivered to {broker} within {drain_timeout:g} s")
        return result
