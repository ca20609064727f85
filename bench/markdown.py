"""Render BENCHMARKS.md's table from bench/results.json: `python -m bench.markdown`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.core import PI4_FACTOR, fmt

HERE = Path(__file__).resolve().parent


def render(doc: dict) -> str:  # type: ignore[type-arg]
    lo, hi = PI4_FACTOR
    m = doc["machine"]
    notes = doc.get("notes", {})
    out = [
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('arch')}, {m.get('system')}, Python {m.get('python')}.",
        "",
        "| figure | this machine | baseline | ratio | what |",
        "|---|---|---|---|---|",
    ]
    for f in doc["figures"]:
        ratio = "-" if f["ratio"] is None else (
            f"1/{1 / f['ratio']:.0f}" if f["unit"] == "ms" and 0 < f["ratio"] < 0.5 else f"{f['ratio']:.3g}")
        out.append(f"| `{f['name']}` | {fmt(f['value'], f['unit'])} | {fmt(f['baseline'], f['unit'])} | {ratio} | {notes.get(f['name'], '')} |")
    out += ["", f"What it implies (Pi 4 assumed {lo:g}–{hi:g}× slower than this machine):", ""]
    out += [f"- {line}" for line in doc.get("implications", [])]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    print(render(json.loads(path.read_text(encoding="utf-8"))))
