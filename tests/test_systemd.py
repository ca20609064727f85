"""The service unit: hardened, notify-typed, watchdogged; the installer idempotent."""
from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "gate.service"


def unit_lines() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_has_what_the_appliance_needs() -> None:
    u = unit_lines()
    assert u["Type"] == ["notify"]
    assert u["Restart"] == ["on-failure"]
    assert int(u["WatchdogSec"][0]) > 0
    assert u["User"] == ["gate"]
    assert set(u["SupplementaryGroups"][0].split()) >= {"gpio", "dialout", "video", "audio"}
    assert u["StateDirectory"] == ["gate"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (CI installs systemd)")
def test_systemd_analyze_rates_the_unit_1_5_or_better() -> None:
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    m = re.search(r"Overall exposure level for gate.service: ([0-9.]+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    score = float(m.group(1))
    print(f"systemd-analyze security: {score}")
    assert score <= 1.5


def test_install_is_idempotent_and_keeps_site_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    script = ROOT / "systemd" / "install.sh"
    first = subprocess.run(["bash", str(script), "--root", str(root)], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    cfg = root / "etc" / "gate" / "gate.toml"
    assert (root / "etc" / "systemd" / "system" / "gate.service").read_text() == UNIT.read_text()
    assert cfg.stat().st_mode & 0o777 == 0o640
    assert (root / "opt" / "gate" / "gate" / "core" / "lane.py").exists()
    # ModemManager is told to leave the thermometer's USB-serial adapter alone.
    rules = (root / "etc" / "udev" / "rules.d" / "99-gate-serial.rules").read_text()
    lines = [ln for ln in rules.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) >= 4 and all('ENV{ID_MM_DEVICE_IGNORE}="1"' in ln for ln in lines)
    assert 'ATTRS{idVendor}=="1a86"' in rules  # CH340, the GY-MCU90614 boards' adapter
    cfg.write_text(cfg.read_text() + "\n# edited on site\n")
    second = subprocess.run(["bash", str(script), "--root", str(root)], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "kept" in second.stdout
    assert cfg.read_text().endswith("# edited on site\n")


def _size_mb(value: str) -> float:
    units = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}
    return float(value[:-1]) * units[value[-1].upper()] if value[-1].upper() in units else int(value) / 2**20


def test_install_limits_the_journal_for_an_sd_card(tmp_path: Path) -> None:
    root = tmp_path / "root"
    res = subprocess.run(["bash", str(ROOT / "systemd" / "install.sh"), "--root", str(root)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    dropin = root / "etc" / "systemd" / "journald.conf.d" / "60-gate.conf"
    # journald reads it: systemd's own tool lists it among journald.conf's drop-ins.
    shown = subprocess.run(["systemd-analyze", "cat-config", "systemd/journald.conf", f"--root={root}"],
                           capture_output=True, text=True, timeout=60)
    assert f"# {dropin}" in shown.stdout, shown.stdout + shown.stderr
    cfg = configparser.ConfigParser()
    cfg.optionxform = str  # type: ignore[assignment,method-assign]  (journald's keys are case-sensitive)
    cfg.read(dropin)
    journal = dict(cfg["Journal"])
    # Every key is one journald knows: Debian's stock journald.conf lists them all, commented.
    stock = Path("/etc/systemd/journald.conf").read_text(encoding="utf-8")
    assert all(f"#{key}=" in stock for key in journal), sorted(journal)
    # Small on the card and in RAM (an overlay root keeps /var/log/journal in RAM).
    assert _size_mb(journal["SystemMaxUse"]) <= 100
    assert _size_mb(journal["RuntimeMaxUse"]) <= 64
    assert "MaxRetentionSec" in journal
