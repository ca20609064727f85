"""`gate doctor`: every configured device checked, a table, advice and the exit status."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gate import config as cfgmod
from gate import doctor

ROOT = Path(__file__).resolve().parents[1]


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gate.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def rows(stdout: str) -> dict[tuple[str, str], str]:
    """(lane, device) -> status, from the table."""
    out = {}
    for line in stdout.splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2] in ("ok", "warn", "FAIL"):
            out[(parts[0], parts[1])] = parts[2]
    return out


def test_demo_config_all_simulated_devices_are_ok(tmp_path: Path) -> None:
    demo = (ROOT / "config" / "demo.toml").read_text(encoding="utf-8")
    cfg = tmp_path / "demo.toml"  # the demo's devices, a store and voice cache of our own
    cfg.write_text(demo.replace('path = "../var/demo.db"', f'path = "{tmp_path / "demo.db"}"')
                   .replace('cache_dir = "../var/voice"', f'cache_dir = "{tmp_path / "voice"}"')
                   .replace('script = "demo-people.yaml"', f'script = "{ROOT / "config" / "demo-people.yaml"}"'))
    res = gate("doctor", "-c", str(cfg), "--seconds", "1.5")
    assert res.returncode == 0, res.stdout + res.stderr
    table = rows(res.stdout)
    for lane, devices in {"in": ("camera", "thermometer", "card_reader", "relay", "door_contact", "pir", "speaker"),
                          "out": ("camera", "card_reader", "exit_button", "speaker")}.items():
        for device in devices:
            assert table[(lane, device)] == "ok", (lane, device, res.stdout)
    assert table[("gate", "disk")] == "ok" and table[("gate", "store")] == "ok"
    assert ("gate", "clock") in table  # synchronised, or "unknown" where there is no timedatectl
    # The figures a technician asks for: fps and frame age, readings/s and the value, pins, prompt.
    assert " fps, last frame " in res.stdout
    assert "readings/s, last 22.00 °C" in res.stdout
    assert "D0 (GPIO 5) at 1, D1 (GPIO 6) at 1" in res.stdout
    assert "rendered zh" in res.stdout and "en " in res.stdout
    assert "all devices work" in res.stdout
    assert not (tmp_path / "demo.db").exists()  # the gate's own store is not touched


def test_missing_serial_port_fails_with_advice(tmp_path: Path) -> None:
    cfg = tmp_path / "gate.toml"
    port = "/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0-not-here"
    cfg.write_text(f'''
[store]
path = "gate.db"

[[lanes]]
name = "in"
direction = "in"
camera = {{ driver = "sim" }}
thermometer = {{ driver = "serial", port = "{port}" }}
''')
    res = gate("doctor", "-c", str(cfg), "--seconds", "1", "--no-speak")
    assert res.returncode == 1, res.stdout + res.stderr
    table = rows(res.stdout)
    assert table[("in", "thermometer")] == "FAIL"
    assert table[("in", "camera")] == "ok"
    lines = res.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["in", "thermometer"])
    said = "\n".join(lines[at:at + 3])
    assert f"cannot open {port}" in said  # what the driver said
    assert "-> plug in the USB-serial adapter" in said and "ls -l /dev/serial/by-id/" in said  # what to do
    assert "1 problem(s): in thermometer" in res.stdout


def test_a_thermometer_that_opens_but_says_nothing_is_a_fault(tmp_path: Path) -> None:
    from drivers.thermometer import SimThermometer

    sim = SimThermometer(protocol="modbus", slave=1)  # answers slave 1; the config asks slave 5
    sim.start()
    try:
        conf = cfgmod.Config.model_validate({
            "store": {"path": str(tmp_path / "gate.db")},
            "voice": {"cache_dir": str(tmp_path / "voice")},
            "lanes": [{"name": "in", "direction": "in",
                       "thermometer": {"driver": "serial", "port": sim.port, "protocol": "modbus",
                                       "slave": 5, "stale_s": 0.5}}]})
        checks = doctor.run(conf, seconds=1.5, speak=False)
    finally:
        sim.close()
    th = next(c for c in checks if c.device == "thermometer")
    assert th.status == "fail"
    assert "no valid frame" in th.detail
    assert "Modbus slave 5" in th.advice and "baud rate" in th.advice
    assert doctor.exit_code(checks) == 1


def test_gpio_that_cannot_start_is_reported_not_raised(tmp_path: Path) -> None:
    from drivers import gpio

    try:
        gpio.make_factory("auto").close()
        pytest.skip("this machine has a GPIO backend")
    except gpio.GpioUnavailable:
        pass
    conf = cfgmod.Config.model_validate({
        "store": {"path": str(tmp_path / "gate.db")},
        "lanes": [{"name": "in", "direction": "in", "card_reader": {"driver": "gpio", "d0": 5, "d1": 6}}]})
    checks = doctor.run(conf, seconds=0.2, speak=False)
    start = checks[0]
    assert (start.device, start.status) == ("start", "fail")
    assert "lgpio" in start.advice and 'driver = "sim"' in start.advice
    assert doctor.exit_code(checks) == 1
