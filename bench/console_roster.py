"""The console's roster upload: the dry-run diff of a roster file against central's
roster (sync/central/roster.py: read and check every row, then ``plan_import``: the
file's passes looked up by id, a chunk of 900 a query, and compared field by field).

Called by bench/console.py on its table of 1,000,000 passes (SQLite). The roster:
100,000 rows (10,000 with --quick) with English headers, nine in ten of them passes
already there (one in twenty of those moved to another unit), one in ten new. Reported:
seconds for the whole dry run (reading included). Baseline, in the same run: the same
file read and compared the way ``gate central passes import`` did before the console
(every pass of the table read, its wire text compared), which is what reading a
1,000,000-pass roster costs without the id lookups.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from bench.core import Context, Figure, interleaved


def write_roster(path: Path, rows: list[tuple[Any, ...]], n: int, rng: random.Random) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "unit", "category"])
        for r in rng.sample(rows, n - n // 10):
            unit = r[3] if rng.random() >= 0.05 else r[3] + "0"  # one in twenty moved
            w.writerow([r[0], r[2], unit, "resident"])
        for i in range(n // 10):
            w.writerow([f"N{i:07d}", "新住户", f"900-1-{i % 30 + 1}01", "resident"])


def run(ctx: Context, db_path: Path, rows: list[tuple[Any, ...]]) -> list[Figure]:
    from sync.central.roster import plan_import, read
    from sync.central.store import CentralStore
    from sync.central.wire import wire_pass, wire_text

    n = ctx.reps(10_000, 100_000)
    path = db_path.parent / "roster.csv"
    write_roster(path, rows, n, random.Random(5))
    st = CentralStore(str(db_path))
    made: dict[str, Any] = {}

    def ours() -> None:
        made["plan"] = plan_import(st, read(path, tz="Asia/Shanghai"))

    def whole_table() -> None:
        roster = read(path, tz="Asia/Shanghai")
        current = {r[0]: r[1] for r in st.db.all("SELECT id, wire FROM passes")}
        made["old"] = sum(1 for r in roster.rows if current.get(r["id"]) != wire_text(wire_pass(r)))

    try:
        pair = interleaved(ours, whole_table, reps=ctx.reps(1, 3), warmup=0)
    finally:
        st.close()
    plan = made["plan"]
    size = f"{n // 1000}k"
    ctx.log(f"  console: roster dry run of {n:,} rows against {len(rows):,} passes: {pair.a_median:.2f} s "
            f"({plan.summary()}); whole-table baseline {pair.b_median:.2f} s")
    ctx.implications.append(f"console: the dry-run diff of a {n:,}-row roster against {len(rows):,} passes takes "
                            f"{pair.a_median:.1f} s (SQLite), progress shown while it runs")
    return [Figure(f"console.roster_diff_s.{size}", pair.a_median, "s", pair.b_median, pair.ratio,
                   note=f"console roster upload: dry-run diff of a {n:,}-row CSV against {len(rows):,} passes (SQLite), "
                        f"reading included ({plan.summary()}); baseline: read + every pass's wire compared (the CLI's "
                        "former import)")]
