"""`gate doctor`: every configured device checked, a table, advice and the exit status."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gate import config as cfgmod
from gate.ops import doctor

ROOT = Path(__file__).resolve().parents[1]


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gate.cli.main", *args], cwd=ROOT, capture_output=True,
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


def test_fresh_gate_with_the_example_config_gets_a_table_not_a_traceback(tmp_path: Path) -> None:
    # As installed: the example config, central's public key not copied in yet.
    example = (ROOT / "config" / "gate.example.toml").read_text(encoding="utf-8")
    key = tmp_path / "keys" / "central.pub"
    cfg = tmp_path / "gate.toml"
    cfg.write_text(example.replace('"/etc/gate/keys/central.pub"', f'"{key}"')
                   .replace('"/var/lib/gate/gate.db"', f'"{tmp_path / "gate.db"}"'))
    res = gate("doctor", "-c", str(cfg), "--seconds", "1", "--no-speak")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    table = rows(res.stdout)
    assert table[("gate", "keys")] == "FAIL"
    lines = res.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["gate", "keys"])
    said = "\n".join(lines[at:at + 3])
    assert f"{key}: public key not found" in said  # the file, and what is wrong with it
    assert f"-> copy central's public key (from whoever runs central) to {key}" in said  # what to do
    # The key does not stop the devices from being checked.
    for lane, device in (("in", "camera"), ("in", "thermometer"), ("in", "speaker"), ("out", "camera")):
        assert (lane, device) in table, (lane, device, res.stdout)


@pytest.mark.parametrize("where", ["construction", "start"])
def test_any_exception_setting_up_the_gate_is_a_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    where: str) -> None:
    from gate.app.gate_app import GateApp

    missing = str(tmp_path / "not-here.wav")

    def fail(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", missing)

    monkeypatch.setattr(GateApp, "__init__" if where == "construction" else "start", fail)
    conf = cfgmod.Config.model_validate({
        "store": {"path": str(tmp_path / "gate.db")},
        "lanes": [{"name": "in", "direction": "in", "camera": {"driver": "sim"}}]})
    checks = doctor.run(conf, seconds=0.1, speak=False)
    start = checks[0]
    assert (start.lane, start.device, start.status) == ("gate", "start", "fail")
    assert missing in start.detail and f"create {missing}" in start.advice
    assert ("gate", "disk") in [(c.lane, c.device) for c in checks]  # the rest of the table is there
    assert doctor.exit_code(checks) == 1


def test_gpio_that_cannot_start_is_a_row_and_the_other_devices_are_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers import gpio
    from gate.app import drivers as appmod

    def no_gpio(name: str) -> gpio.PinFactory:  # as off a Pi, or with lgpio missing on one
        raise gpio.GpioUnavailable(f"no GPIO backend found ({name}): lgpio: No module named 'lgpio'")

    monkeypatch.setattr(appmod, "make_factory", no_gpio)
    conf = cfgmod.Config.model_validate({
        "store": {"path": str(tmp_path / "gate.db")},
        "voice": {"cache_dir": str(tmp_path / "voice")},
        "lanes": [{"name": "in", "direction": "in", "camera": {"driver": "sim"},
                   "thermometer": {"driver": "sim"},
                   "card_reader": {"driver": "gpio", "d0": 5, "d1": 6},
                   "relay": {"driver": "gpio", "pin": 22},
                   "door_contact": {"driver": "gpio", "pin": 27},
                   "pir": {"driver": "sim", "pin": 17, "active_high": True}},
                  {"name": "out", "direction": "out", "camera": {"driver": "sim"},
                   "exit_button": {"driver": "gpio", "pin": 23}}]})
    checks = doctor.run(conf, seconds=1.5, speak=False)
    by = {(c.lane, c.device): c for c in checks}
    assert ("gate", "start") not in by
    g = by[("gate", "gpio")]
    assert g.status == "fail" and checks[0] is g
    assert "No module named 'lgpio'" in g.detail  # the backend's own reason
    assert "install lgpio" in g.advice
    # Everything else was really checked.
    assert by[("in", "camera")].status == "ok" and " fps, last frame " in by[("in", "camera")].figures
    assert by[("in", "thermometer")].status == "ok" and "readings/s, last 22.00" in by[("in", "thermometer")].figures
    assert by[("out", "camera")].status == "ok"
    assert by[("in", "pir")].status == "ok"  # simulated pins are checked as usual
    assert ("in", "speaker") in by and ("out", "speaker") in by
    # The devices on real pins ran on mock ones: not checked, and not shown as working.
    for lane, device in (("in", "card_reader"), ("in", "relay"), ("in", "door_contact"), ("out", "exit_button")):
        c = by[(lane, device)]
        assert c.status == "fail" and c.figures.startswith("not checked"), c
    assert doctor.exit_code(checks) == 1


def _gpio_conf(backend: str = "auto") -> cfgmod.Config:
    return cfgmod.Config.model_validate({
        "gpio": {"backend": backend},
        "lanes": [{"name": "in", "direction": "in", "card_reader": {"driver": "gpio", "d0": 5, "d1": 6},
                   "relay": {"driver": "gpio", "pin": 22}}]})


def test_gpio_advice_off_a_pi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "_on_a_pi", lambda: False)
    advice = doctor._gpio_advice(_gpio_conf())
    assert 'set driver = "sim" on card_reader, relay' in advice
    assert "install lgpio" in advice and "gpio group" in advice  # for when it is run on the Pi
    assert "Pi 5" not in advice and 'backend = "lgpio"' not in advice


def test_gpio_advice_on_a_pi_is_lgpio_and_the_gpio_group(monkeypatch: pytest.MonkeyPatch) -> None:
    import grp

    monkeypatch.setattr(doctor, "_on_a_pi", lambda: True)
    monkeypatch.setattr(doctor.grp, "getgrnam", lambda name: grp.struct_group((name, "x", 997, [])))
    monkeypatch.setattr(doctor.os, "getgroups", lambda: [1000])
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(doctor.getpass, "getuser", lambda: "pi")
    advice = doctor._gpio_advice(_gpio_conf())
    # lgpio on every Pi: RPi.GPIO 0.7.1 fails at edge detection on kernel 6.6+, even on a Pi 4.
    assert advice.startswith("install lgpio (")
    assert "scripts/setup --pi" in advice or "sudo apt install python3-lgpio" in advice
    assert "sudo usermod -aG gpio pi" in advice
    assert "sim" not in advice and "Pi 5" not in advice
    # A config that pins RPi.GPIO (or lgpio) is told to let auto choose.
    assert 'set [gpio] backend = "auto"' in doctor._gpio_advice(_gpio_conf("rpigpio"))
    # In the gpio group already: nothing to say about it.
    monkeypatch.setattr(doctor.os, "getgroups", lambda: [1000, 997])
    assert "gpio group" not in doctor._gpio_advice(_gpio_conf())


def test_lgpio_is_installed_where_the_gate_s_python_finds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The gate's venv (scripts/setup) does not see the system's packages: apt's python3-lgpio would not help.
    monkeypatch.setattr(doctor, "_isolated_venv", lambda: True)
    assert doctor._lgpio_install() == f"cd {ROOT} && scripts/setup --pi"
    monkeypatch.setattr(doctor, "_isolated_venv", lambda: False)
    assert doctor._lgpio_install() == "sudo apt install python3-lgpio"


def test_keys(tmp_path: Path) -> None:
    from gate.core.tokens import new_keypair

    priv, pub = new_keypair(tmp_path / "keys", "central")

    def keys(**section: object) -> doctor.Check:
        return doctor._keys(cfgmod.Config.model_validate({"keys": section, "lanes": [{"name": "in", "direction": "in"}]}))

    assert keys(trusted=[str(pub)], signing=str(priv)).status == "ok"
    assert keys().status == "warn"  # no trusted key: central's passes are all refused
    bad = keys(trusted=[str(pub)], signing=str(tmp_path / "keys" / "gate.key"))
    assert bad.status == "fail" and "signing key not found" in bad.detail
    assert f"gate keys new gate --dir {tmp_path / 'keys'}" in bad.advice


def test_central_keys_are_checked_apart_from_pass_keys(tmp_path: Path) -> None:
    from gate.core.tokens import new_keypair

    _, pub = new_keypair(tmp_path / "keys", "central")
    conf = cfgmod.Config.model_validate({"keys": {"trusted": [str(pub)]}, "lanes": [{"name": "in", "direction": "in"}],
                                         "sync": {"central_keys": [str(tmp_path / "keys" / "hq.pub")]}})
    bad = doctor._keys(conf)
    assert bad.status == "fail" and bad.figures == f"[sync] central_keys: {tmp_path / 'keys' / 'hq.pub'} unusable"
    assert f"gate keys new hq --dir {tmp_path / 'keys'}" in bad.advice
    ok = doctor._keys(conf.model_copy(update={"sync": conf.sync.model_copy(update={"central_keys": [pub]})}))  # type: ignore[union-attr]
    assert ok.status == "ok" and ok.figures == "1 pass-signing key(s), 1 central key(s)"
    # Central withdrew the configured pass key: the row says so.
    from gate.store import withdrawn
    from gate.core.tokens import key_id, load_public
    from gate.store.database import Store

    kid = key_id(load_public(pub))
    conf = conf.model_copy(update={"store": cfgmod.StoreSection(path=tmp_path / "gate.db"), "sync": None})
    s = Store(tmp_path / "gate.db")
    try:
        withdrawn.save(s, 2, frozenset({kid}), "{}")
    finally:
        s.close()
    row = doctor._keys(conf)
    assert row.status == "warn" and row.figures == f"1 pass-signing key(s); withdrawn by central: {pub} ({kid})"


def test_secret_files_readable_by_others_are_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from gate.drill.runner import Rehearsal
    from gate.drill.file import parse
    from gate.core.tokens import new_keypair

    priv, _ = new_keypair(tmp_path / "keys", "gate")  # 0600
    pin = tmp_path / "pin"
    pin.write_text("4711\n")
    pin.chmod(0o644)
    conf = cfgmod.Config.model_validate({"keys": {"signing": str(priv)}, "guard": {"pin_file": str(pin)},
                                         "lanes": [{"name": "in", "direction": "in"}]})
    row = doctor._secrets(conf)
    assert row.status == "warn" and row.figures == "1 of 2 secret file(s) readable by others"
    assert f"guard.pin_file {pin} is readable by its group and everyone (mode -rw-r--r--): chmod 600 {pin}" in row.advice
    # At start: logged, and the gate starts all the same.
    drill = parse(f'name: modes\nstart: "2026-11-22T10:00:00+08:00"\nconfig: {{guard: {{pin_file: "{pin}"}}}}\n')
    with caplog.at_level("WARNING"), Rehearsal(drill) as r:
        assert r.app.lanes
    assert f"guard.pin_file {pin} is readable by its group and everyone" in caplog.text
    pin.chmod(0o600)
    assert doctor._secrets(conf).status == "ok"
