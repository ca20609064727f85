"""``python -m bench``: run the benchmark groups, print one table, write results.json.

Never a pass/fail test on time: it reports, it does not judge. Exit status is 0
unless a group could not run at all.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from bench.core import Context, Figure, machine, table, write_results

# Each name is a module bench/<name>.py with TITLE and run(ctx) -> list[Figure].
# Later issues add theirs here ("decision", "sync", "voice", "footprint").
GROUPS = ("scan", "decision", "voice", "sync", "fleet", "presence", "central", "footprint", "desk", "faults", "console", "console_map")

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (under a minute)")
    ap.add_argument("--only", default="", metavar="GROUP[,GROUP]",
                    help=f"run only these groups (of: {', '.join(GROUPS)})")
    ap.add_argument("--out", type=Path, default=HERE / "results.json",
                    help="results file (default: bench/results.json)")
    ap.add_argument("--shared", type=Path,
                    default=Path(os.environ.get("GATE_SHARED", HERE.parent.parent / "shared")),
                    help="the shared folder with datasets/ (default: ../shared or $GATE_SHARED)")
    args = ap.parse_args(argv)

    groups = [g.strip() for g in args.only.split(",") if g.strip()] or list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        ap.error(f"unknown group(s): {', '.join(unknown)} (known: {', '.join(GROUPS)})")

    ctx = Context(quick=args.quick, shared=args.shared, plot_dir=args.out.resolve().parent)
    info = machine()
    t0 = time.monotonic()
    figures: list[Figure] = []
    owners: dict[str, str] = {}
    failed = []
    for name in groups:
        module = importlib.import_module(f"bench.{name}")
        ctx.log(f"bench: {name} ({module.TITLE}){' quick' if args.quick else ''} ...")
        try:
            made = module.run(ctx)
        except Exception as exc:  # one broken group must not lose the others' figures
            failed.append(name)
            ctx.log(f"bench: group {name} failed: {type(exc).__name__}: {exc}")
            continue
        figures += made
        owners.update((f.name, name) for f in made)
    duration = time.monotonic() - t0
    print(table(figures, info))
    for line in ctx.implications:
        print(f"  {line}")
    # A group that failed keeps its figures from the last run that had them.
    write_results(args.out, figures, info, groups=[g for g in groups if g not in failed],
                  quick=args.quick,
                  implications=ctx.implications, duration_s=duration, owners=owners)
    print(f"wrote {args.out} ({len(figures)} figures, {duration:.0f} s; absolute times are "
          "this machine's)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
