"""The benchmark suite runs and writes well-formed results. It never judges times:
benchmarks are not pass/fail tests (issue 8)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=480)


def test_quick_scan_run_writes_well_formed_results(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    # A file from an earlier run: another group's figure and a stale one of scan's.
    out.write_text(json.dumps({
        "machine": {}, "groups": {"sync": ["outbox.drain_vs_paho"], "scan": ["scan.old"]},
        "figures": [{"name": "outbox.drain_vs_paho", "value": 1.0, "unit": "x", "baseline": None, "ratio": None},
                    {"name": "scan.old", "value": 1.0, "unit": "ms", "baseline": None, "ratio": None}],
    }))
    res = run_bench("--quick", "--only", "scan", "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))

    machine = doc["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["python"].count(".") == 2
    assert "zxing-cpp" in machine["libraries"] and "pyzbar" in machine["libraries"]

    figures = {f["name"]: f for f in doc["figures"]}
    for f in doc["figures"]:
        assert set(f) == {"name", "value", "unit", "baseline", "ratio"}
        assert isinstance(f["value"], (int, float)) and math.isfinite(f["value"])
        assert f["baseline"] is None or isinstance(f["baseline"], (int, float))
        assert f["ratio"] is None or (isinstance(f["ratio"], (int, float)) and f["ratio"] > 0)
    for size in ("640x480", "1280x720", "1920x1080"):
        for kind in ("empty", "near", "far"):
            fig = figures[f"scan.{kind}.{size}"]
            assert fig["unit"] == "ms" and fig["value"] > 0 and fig["baseline"] > 0
    assert figures["scan.photos.decode_rate"]["unit"] == "fraction"
    assert 0 < figures["scan.photos.decode_rate"]["value"] <= 1
    assert doc["groups"]["scan"] and all(n.startswith(("scan.", "cpu.")) for n in doc["groups"]["scan"])
    for name in ("scan.phone.decode_rate.live", "scan.phone.decode_rate", "scan.phone.frames_to_read",
                 "scan.appear.frames_to_read", "cpu.idle_30fps_720p"):
        assert name in figures, name

    # --only replaced scan's figures and kept the other group's.
    assert "outbox.drain_vs_paho" in figures and "scan.old" not in figures
    assert doc["groups"]["sync"] == ["outbox.drain_vs_paho"]

    # One table on stdout, with this machine named and every figure in it.
    assert "this machine:" in res.stdout and "scan.empty.1280x720" in res.stdout
    assert "Pi 4" in res.stdout


def test_unknown_group_is_refused(tmp_path: Path) -> None:
    res = run_bench("--only", "nosuch", "--out", str(tmp_path / "r.json"))
    assert res.returncode == 2 and "nosuch" in res.stderr
    assert not (tmp_path / "r.json").exists()


def test_the_whole_quick_suite_runs_every_group(tmp_path: Path) -> None:
    """`python -m bench --quick`: every group gives its figures (a group that broke
    would otherwise only show up in someone's next full run)."""
    out = tmp_path / "all.json"
    res = run_bench("--quick", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(out.read_text(encoding="utf-8"))
    names = {f["name"] for f in doc["figures"]}
    for wanted in ("scan.empty.1280x720", "scan.photos.decode_rate", "decision.p99_ms", "voice.first_sample_ms",
                   "outbox.drain_vs_paho", "delta.10k_s", "fleet.lost", "fleet.duplicated", "rss_mb", "ready_s", "stop_s", "disk.bytes_written_per_hour",
                   "decision.p99_ms_20rules", "decision.p999_ms", "decision.first_ms", "print.1000_cards_s",
                   "faults.events", "faults.central_kill.lost", "faults.rogue_share_subscriber.duplicated",
                   "console.search_p99_ms", "central.ingest_bare_msg_s", "central.ingest_msg_s.sqlite",
                   "central.ingest_ratio.sqlite", "presence.latency_p50_s",
                   "presence.latency_p99_s", "console.roster_diff_s.10k", "console.report_page_ms", "console.map_3000_ms"):
        assert wanted in names, f"{wanted} missing from a --quick run"
    figures = {f["name"]: f for f in doc["figures"]}
    # PostgreSQL is measured where it can start (as in tests/test_central.py); where not, the run says why.
    from importlib.util import find_spec

    from bench.procs import _pg_bin

    if _pg_bin("initdb") and _pg_bin("pg_ctl") and find_spec("psycopg"):
        assert {"central.ingest_msg_s.postgres", "central.ingest_ratio.postgres"} <= names
    else:
        assert any("PostgreSQL not measured" in line for line in doc["implications"])
    ingest = figures["central.ingest_msg_s.sqlite"]
    assert ingest["baseline"] == figures["central.ingest_bare_msg_s"]["value"] and ingest["ratio"] > 0
    assert figures["fleet.lost"]["value"] == 0 and figures["fleet.duplicated"]["value"] == 0
    assert set(doc["groups"]) == {"scan", "decision", "voice", "sync", "fleet", "presence", "central", "footprint", "desk",
                                  "faults", "console", "console_map"}
    assert figures["faults.gate_kill.lost"]["value"] == 0 and figures["faults.broker_restart_off.lost"]["value"] == 0
    # The plots go beside the results file, not into the repository.
    assert (tmp_path / "decision_scaling.png").stat().st_size > 0 and (tmp_path / "outbox_drain.png").exists()
