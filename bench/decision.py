"""Decision path: a valid pass reaching the lane → relay command and prompt started.

Measured on a real Lane (engine thread, SQLite store in WAL with synchronous=FULL,
Ed25519 verification, the event and outbox rows committed before the relay is
told) with 1,000,000 passes in the table; decoding is excluded (the scan group
measures it). Baseline: a plain sqlite3 SELECT of the same pass by id.
"""
from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.core import Context, Figure
from gate.core.clock import SystemClock
from gate.config import DoorSection, LaneConfig, PolicyConfig
from gate.core.events import QrSeen
from gate.core.lane import Lane
from gate.core.tokens import KeyRing, PassToken, sign
from gate.store.database import Store

TITLE = "decision path: pass to relay and prompt"


class _Relay:
    def __init__(self) -> None:
        self.at = 0.0

    def unlock(self) -> None:
        self.at = time.perf_counter()

    def lock(self) -> None:
        pass


class _Speaker:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.at = 0.0
        self.key = ""

    def say(self, key: str, text: str, lang: str) -> None:
        self.key = key
        if not self.done.is_set():
            self.at = time.perf_counter()
            self.done.set()


def _store(path: Path, n: int) -> None:
    s = Store(path)
    now = time.time()
    rows = [(f"p{i:07d}", "住户", f"{i % 30}-{i % 6}-{i % 900}", "resident", "1234", None, None, None, None, None, 0, now)
            for i in range(n)]
    s.replace_pass_rows(rows, {}, 1)
    s.close()


def twenty_rules() -> list[dict[str, object]]:
    """20 community rules of the kinds DRILLS.md describes, all met by the bench's
    residents, so every decision evaluates all of them (the worst case)."""
    prompt = {"zh": "不符合规定", "en": "Not allowed."}
    out: list[dict[str, object]] = []
    for i in range(20):
        if i % 4 == 0:
            out.append({"name": f"r{i}", "when": "pass.category == 'staff'", "require": "pass.attributes.course == true", "prompt": prompt})
        elif i % 4 == 1:
            out.append({"name": f"r{i}", "when": "pass.category in ['resident', 'renter']",
                        "require": "!has(pass.attributes.blocked) && time.hour >= 0", "prompt": prompt})
        elif i % 4 == 2:
            out.append({"name": f"r{i}", "require": "lane.direction == 'in' && pass.unit != ''", "prompt": prompt})
        else:
            out.append({"name": f"r{i}", "when": "time.weekday <= 7", "require": "pass.listed", "prompt": prompt})
    return out


class Bench:
    def __init__(self, n_passes: int, directory: Path, *, rules: list[dict[str, object]] | None = None) -> None:
        from zoneinfo import ZoneInfo

        self.n = n_passes
        self.path = directory / f"gate-{n_passes}.db"
        if not self.path.exists():  # the same table for the run with rules
            _store(self.path, n_passes)
        key = Ed25519PrivateKey.generate()
        rnd = random.Random(1)
        self.tokens = [sign(PassToken(f"p{rnd.randrange(n_passes):07d}", "resident", ""), key) for _ in range(2000)]
        self.relay, self.speaker = _Relay(), _Speaker()
        self.lane = Lane(
            LaneConfig(name="in", direction="in", relay={"driver": "sim", "pin": 22}),
            policy=PolicyConfig.model_validate({"passback": "off", "rules": rules or []}),
            door=DoorSection(unlock_s=0.001),
            languages=["zh"],
            clock=SystemClock(ZoneInfo("Asia/Shanghai")),
            keyring=KeyRing([key.public_key()]),
            open_store=lambda: Store(self.path),
            relay=self.relay,
            speaker=self.speaker,
        )
        self.lane.start()
        self.db = sqlite3.connect(self.path)
        self.i = 0
        self.first_s = 0.0

    def decide(self) -> float:
        token = self.tokens[self.i % len(self.tokens)]
        self.i += 1
        self.speaker.done.clear()
        t0 = time.perf_counter()
        self.lane.post(QrSeen(token))
        if not self.speaker.done.wait(10):
            raise RuntimeError("the lane did not decide within 10 s")
        self.lane.join()  # the relock and bookkeeping, outside the measured span
        return max(self.relay.at, self.speaker.at) - t0

    def select(self) -> None:
        pid = f"p{random.randrange(self.n):07d}"
        self.db.execute("SELECT * FROM passes WHERE id = ?", (pid,)).fetchone()

    def close(self) -> None:
        self.lane.stop()
        self.db.close()


def measure(b: Bench, reps: int) -> tuple[list[float], list[float]]:
    """Interleaved: one decision, one plain SELECT, ... (per-item seconds). The first
    decision after the lane started is kept apart (Bench.first_s): the cold one."""
    ds, ss = [], []
    b.first_s = b.decide()
    for _ in range(20):
        b.decide()
        b.select()
    for _ in range(reps):
        ds.append(b.decide())
        t0 = time.perf_counter()
        b.select()
        ss.append(time.perf_counter() - t0)
    return ds, ss


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(ctx: Context) -> list[Figure]:
    sizes = [10_000, 100_000] if ctx.quick else [10_000, 100_000, 1_000_000]
    reps = ctx.reps(1000, 10_000)
    figures: list[Figure] = []
    curve: list[tuple[int, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-decision-") as tmp:
        for n in sizes:
            ctx.log(f"  decision: {n:,} passes, {reps:,} decisions")
            b = Bench(n, Path(tmp))
            try:
                ds, ss = measure(b, reps if n == sizes[-1] else max(500, reps // 5))
            finally:
                b.close()
            p50, p99, mx = statistics.median(ds), pct(ds, 0.99), max(max(ds), b.first_s)  # the cold first one counts
            s50, s99 = statistics.median(ss), pct(ss, 0.99)
            curve.append((n, p50 * 1e3, p99 * 1e3))
            tag = "" if n == sizes[-1] else f"@{n // 1000}k"
            figures.append(Figure(f"decision.p99_ms{tag}", p99 * 1e3, "ms", s99 * 1e3, p99 / s99,
                                  note=f"pass → relay + prompt, {n:,} passes; baseline: plain SELECT p99", pi4=True))
            if n == sizes[-1]:
                figures.append(Figure("decision.p50_ms", p50 * 1e3, "ms", s50 * 1e3, p50 / s50,
                                      note=f"median over {len(ds):,} decisions, {n:,} passes", pi4=True))
                figures.append(Figure("decision.max_ms", mx * 1e3, "ms", note="worst decision, the first after start included (target <= 20 ms)", pi4=True))
                figures.append(Figure("decision.p999_ms", pct(ds, 0.999) * 1e3, "ms",
                                      note=f"99.9th percentile over {len(ds):,} decisions", pi4=True))
                figures.append(Figure("decision.first_ms", b.first_s * 1e3, "ms",
                                      note="the first decision after the lane started (cold caches)", pi4=True))
                ctx.log(f"  decision: {n:,} passes, 20 community rules, {reps:,} decisions")
                b = Bench(n, Path(tmp), rules=twenty_rules())
                try:
                    rs, rss = measure(b, reps)
                    assert b.speaker.key == "welcome", f"the rules refused the bench's residents ({b.speaker.key})"
                finally:
                    b.close()
                r99, rs99 = pct(rs, 0.99), pct(rss, 0.99)
                figures.append(Figure("decision.p99_ms_20rules", r99 * 1e3, "ms", rs99 * 1e3, r99 / rs99,
                                      note="as decision.p99_ms with 20 CEL rules evaluated per decision (target <= 5 ms)",
                                      pi4=True))
    _plot(curve, ctx.plot_dir)
    last = curve[-1]
    ctx.implications.append(
        f"decision p99 {last[2]:.2f} ms here with {sizes[-1]:,} passes: about {last[2] * 5:.0f}–{last[2] * 8:.0f} ms on a Pi 4 "
        f"(target: < 5 ms of work beyond decoding; on an SD card the commit's fsync dominates)"
    )
    return figures


def _plot(curve: list[tuple[int, float, float]], directory: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ns = [c[0] for c in curve]
    ax.plot(ns, [c[1] for c in curve], "o-", label="p50")
    ax.plot(ns, [c[2] for c in curve], "s-", label="p99")
    ax.set_xscale("log")
    ax.set_xlabel("passes in the table")
    ax.set_ylabel("ms, pass → relay + prompt")
    ax.set_title("Decision latency (this machine)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(directory / "decision_scaling.png", dpi=120)
    plt.close(fig)
