"""scripts/setup installs three kinds of machine: the demo (light), the test bench
and a Pi. `--dry-run` says what each would install without installing it."""
from __future__ import annotations

import subprocess

from tests.conftest import ROOT

SERVERS_BROWSER_AND_TEST_TOOLS = {"postgresql", "mosquitto", "chromium", "sox", "poppler-utils", "systemd"}


def plan(*args: str) -> dict[str, str]:
    res = subprocess.run(["bash", str(ROOT / "scripts" / "setup"), *args, "--dry-run"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    out = {}
    for line in res.stdout.splitlines():
        key, _, value = line.partition(": ")
        out[key] = value
    return out


def test_the_demo_installs_no_server_browser_or_test_tool() -> None:
    demo = plan("--demo")
    assert set(demo["apt"].split()).isdisjoint(SERVERS_BROWSER_AND_TEST_TOOLS), demo["apt"]
    assert demo["pip"].split()[0] == "."  # the gate without extras: no pytest, playwright, psycopg
    assert "config/constraints.txt" in demo["pip"]


def test_the_test_bench_installs_what_the_tests_start() -> None:
    bench = plan()
    assert set(bench["apt"].split()) >= SERVERS_BROWSER_AND_TEST_TOOLS | set(plan("--demo")["apt"].split())
    assert bench["pip"].split()[0] == ".[test]"


def test_a_pi_gets_the_gate_and_not_the_test_bench() -> None:
    pi = plan("--pi")
    apt = set(pi["apt"].split())
    assert apt.isdisjoint(SERVERS_BROWSER_AND_TEST_TOOLS)
    # Printed passes and PDF reports need a TrueType CJK font on the gate too.
    assert {"espeak-ng", "alsa-utils", "fonts-wqy-microhei"} <= apt
    assert pi["apt, if the sources have them (Raspberry Pi OS)"].split() == ["python3-picamera2", "python3-lgpio"]
    assert pi["pip"].startswith(".[pi]") and "pi-constraints.txt" in pi["pip"]


def test_every_debian_package_named_exists() -> None:
    # A misspelt package would only show when a fresh machine runs setup.
    names = set()
    for mode in ("--demo", "--test", "--pi"):
        names |= set(plan(mode)["apt"].split())
    res = subprocess.run(["apt-cache", "show", "--no-all-versions", *sorted(names)],
                         capture_output=True, text=True, timeout=60)
    found = {line.split(": ", 1)[1] for line in res.stdout.splitlines() if line.startswith("Package: ")}
    assert names <= found, sorted(names - found)


def test_an_unknown_option_is_refused_by_name() -> None:
    res = subprocess.run(["bash", str(ROOT / "scripts" / "setup"), "--demo", "--light"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "--light" in res.stderr
