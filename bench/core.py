"""What every benchmark group shares: the figure record, the machine description,
interleaved A/B timing against a baseline, the table and the results file.

A group is a module of this package with ``TITLE`` and ``run(ctx) -> list[Figure]``
(see ``bench/scan.py``); ``bench/__main__.py`` lists the groups. Figures are named
``<group>.<what>[.<size>]``, so a results file can be updated one group at a time.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

# A Raspberry Pi 4 is about this many times slower than the machines the suite is
# developed on (FIELD-NOTES; re-measure on a Pi before relying on it).
PI4_FACTOR = (5.0, 8.0)


@dataclass
class Figure:
    """One figure of the results file: ``value`` in ``unit``; ``baseline`` the same
    quantity for the baseline measured in the same run (None if the figure has
    none); ``ratio`` value/baseline (for timings: the median of the per-pair ratios
    of interleaved runs, which a noisy machine disturbs less than a ratio of
    medians). ``note`` says what was measured; it goes to the table and to the
    file's ``notes``, not into the figure record."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    note: str = ""
    pi4: bool = False  # a per-item time that scales with CPU speed: show a Pi 4 estimate

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "value": _round(self.value), "unit": self.unit,
                "baseline": _round(self.baseline), "ratio": _round(self.ratio)}


def _round(x: float | None) -> float | None:
    if x is None:
        return None
    return float(f"{x:.4g}")


@dataclass
class Context:
    """What a group gets: how hard to try, where the shared data lives, and a
    place to say how it went."""

    quick: bool
    shared: Path
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    implications: list[str] = field(default_factory=list)
    plot_dir: Path = Path(__file__).resolve().parent  # beside the results file

    def reps(self, quick: int, full: int) -> int:
        return quick if self.quick else full


@dataclass
class Pair:
    """Interleaved timings of A (ours) and B (baseline), seconds per item."""

    a: list[float]
    b: list[float]

    @property
    def a_median(self) -> float:
        return statistics.median(self.a)

    @property
    def b_median(self) -> float:
        return statistics.median(self.b)

    @property
    def ratio(self) -> float:
        return statistics.median(x / y for x, y in zip(self.a, self.b))


def interleaved(a: Callable[[], Any], b: Callable[[], Any], *, reps: int,
                a_items: int = 1, b_items: int = 1, warmup: int = 1) -> Pair:
    """Time ``a`` and ``b`` alternately (A B A B ...), ``reps`` times each.

    Each call of ``a`` handles ``a_items`` items (frames); the per-item time of
    each call is recorded, so a scheme whose cost varies from item to item (a pass
    every few frames) is measured over whole cycles.
    """
    for _ in range(warmup):
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append((t1 - t0) / a_items)
        tb.append((t2 - t1) / b_items)
    return Pair(ta, tb)


def machine() -> dict[str, Any]:
    """The machine the figures belong to."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)  # a busy machine reads slower
    except OSError:
        pass
    versions = {}
    for dist in ("zxing-cpp", "pyzbar", "opencv-python-headless", "numpy", "segno",
                 "pyserial", "paho-mqtt", "pyttsx3", "sqlite-utils"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    info["libraries"] = versions
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# --------------------------------------------------------------------------- output


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "fraction":
        return f"{value * 100:.2f} %"
    if unit == "frames":
        return f"{value:g} frames"
    if unit == "count":
        return f"{value:g}"
    return f"{value:.4g} {unit}"


def table(figures: list[Figure], info: dict[str, Any]) -> str:
    """The one table: figure, this machine's value, baseline, ratio, Pi 4 estimate."""
    lo, hi = PI4_FACTOR
    rows = [("figure", "this machine", "baseline", "ratio", f"Pi 4 (x{lo:g}-{hi:g})", "what")]
    for f in figures:
        ratio = "-" if f.ratio is None else (
            f"1/{1 / f.ratio:.0f}" if f.unit == "ms" and 0 < f.ratio < 0.5 else f"{f.ratio:.3g}")
        pi4 = f"{f.value * lo:.3g}-{f.value * hi:.3g} {f.unit}" if f.pi4 else ""
        rows.append((f.name, fmt(f.value, f.unit), fmt(f.baseline, f.unit), ratio, pi4, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out = [f"this machine: {info.get('cpu')}, {info.get('cores')} cores, Python "
           f"{info.get('python')}, load {info.get('load_avg_1m', '?')}"]
    for k, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
        if k == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(out)


def write_results(path: Path, figures: list[Figure], info: dict[str, Any], *,
                  groups: list[str], quick: bool, implications: list[str],
                  duration_s: float, owners: dict[str, str] | None = None) -> dict[str, Any]:
    """Write ``{"machine": ..., "figures": [...]}`` (plus notes and which group made
    which figure). Figures of groups not run this time are kept from an existing
    file, so ``--only`` updates a part. ``owners`` maps a figure name to its group
    (figure names need not start with it: ``rss_mb``, ``outbox.drain_vs_paho``)."""
    owners = dict(owners or {})
    kept: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    old_owners: dict[str, str] = {}
    new_names = {f.name for f in figures}
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            old_owners = {n: g for g, names in (old.get("groups") or {}).items() for n in names}

            def stale(name: str) -> bool:
                return name in new_names or old_owners.get(name, name.split(".")[0]) in groups

            kept = [f for f in old.get("figures", [])
                    if isinstance(f, dict) and not stale(str(f.get("name", "")))]
            notes = {k: v for k, v in (old.get("notes") or {}).items() if not stale(k)}
        except (ValueError, AttributeError, TypeError):
            kept, notes, old_owners = [], {}, {}
    kept_names = {str(f.get("name")) for f in kept}
    owners = {**{n: g for n, g in old_owners.items() if n in kept_names}, **owners}
    notes.update({f.name: f.note for f in figures if f.note})
    by_group: dict[str, list[str]] = {}
    for name, group in owners.items():
        by_group.setdefault(group, []).append(name)
    doc = {
        "machine": info,
        "figures": kept + [f.record() for f in figures],
        "notes": notes,
        "groups": by_group,
        "implications": implications,
        "run": {"groups": groups, "quick": quick, "duration_s": round(duration_s, 1),
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return doc
