"""`gate thermometer calibrate`: an offset derived against a reference, through the real
serial path (the simulator on a pseudo-terminal, in both protocols)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivers.thermometer import Compensation, Frame, SimThermometer
from gate import config as cfgmod
from gate.ops.calibrate import CalibrationError, derive
from gate.cli.main import main


@pytest.fixture
def blackbody():
    """A simulated sensor with a blackbody held in front of it."""
    sims: list[SimThermometer] = []

    def make(raw_c: float, **kw) -> SimThermometer:  # type: ignore[no-untyped-def]
        sim = SimThermometer(ambient_c=22.0, rate_hz=100.0, stream=True, **kw)
        sim.hold(raw_c)
        sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.close()


def write_config(tmp_path: Path, thermometer: str) -> Path:
    cfg = tmp_path / "gate.toml"
    cfg.write_text(f'''
[store]
path = "gate.db"

[[lanes]]
name = "in"
direction = "in"
thermometer = {thermometer}

[[lanes]]
name = "out"
direction = "out"
thermometer = {{ driver = "sim" }}
''')
    return cfg


def pasted_compensation(output: str) -> cfgmod.CompensationConfig:
    line = next(l.strip() for l in output.splitlines() if l.strip().startswith("compensation = {"))
    return cfgmod.CompensationConfig.model_validate(tomllib.loads(line)["compensation"])


def test_calibrate_a_configured_lane_against_a_blackbody(tmp_path: Path, blackbody) -> None:
    sim = blackbody(36.2)  # the sensor reads a 37.0 °C blackbody as 36.2 at this ambient
    cfg = write_config(tmp_path, f'{{ driver = "serial", port = "{sim.port}", compensation = '
                                 '{ offset_c = 0.3, ambient_ref_c = 25.0, ambient_k = 0.1 } }')
    res = CliRunner().invoke(main, ["thermometer", "calibrate", "--reference", "37.0", "-c", str(cfg),
                                    "--lane", "in", "--readings", "30"])
    assert res.exit_code == 0, res.output
    # body = 36.2 + offset + 0.1 * (25 - 22): the reference needs offset 0.5 (was 0.3)
    assert "object 36.20 °C" in res.output and "ambient 22.0 °C" in res.output
    assert "the lane reads 36.80 °C with offset_c = 0.30; offset_c = 0.50 makes it 37.00 °C" in res.output
    comp = pasted_compensation(res.output)
    assert (comp.offset_c, comp.ambient_ref_c, comp.ambient_k) == (0.5, 25.0, 0.1)  # the rest kept
    c = Compensation(comp.offset_c, comp.ambient_ref_c, comp.ambient_k)
    assert c.body(36.2, 22.0) == pytest.approx(37.0)


def test_calibrate_a_modbus_sensor_by_port(blackbody) -> None:
    sim = blackbody(36.6, protocol="modbus", ambient_register=None)
    res = CliRunner().invoke(main, ["thermometer", "calibrate", "--reference", "37.0", "--port", sim.port,
                                    "--protocol", "modbus", "--readings", "20"])
    assert res.exit_code == 0, res.output
    assert pasted_compensation(res.output).offset_c == pytest.approx(0.4)
    assert sim.polls >= 20  # through real Modbus RTU polls


def test_the_only_serial_thermometer_is_chosen_without_lane(tmp_path: Path, blackbody) -> None:
    sim = blackbody(35.9)
    cfg = write_config(tmp_path, f'{{ driver = "serial", port = "{sim.port}" }}')
    res = CliRunner().invoke(main, ["thermometer", "calibrate", "--reference", "36.5", "-c", str(cfg),
                                    "--readings", "10"])
    assert res.exit_code == 0, res.output
    assert "lane in's thermometer" in res.output
    assert pasted_compensation(res.output).offset_c == pytest.approx(0.6)


def test_no_target_in_front_says_what_to_do(blackbody) -> None:
    sim = blackbody(22.0)  # nothing warm in front: the sensor sees the room
    res = CliRunner().invoke(main, ["thermometer", "calibrate", "--reference", "37.0", "--port", sim.port,
                                    "--timeout", "1"])
    assert res.exit_code == 1
    assert "none warm" in res.output and "hold the blackbody" in res.output


def test_missing_port_says_what_to_do(tmp_path: Path) -> None:
    port = str(tmp_path / "usb-nothing-here")
    res = CliRunner().invoke(main, ["thermometer", "calibrate", "--reference", "37.0", "--port", port,
                                    "--timeout", "3"])
    assert res.exit_code == 1
    assert f"cannot open {port}" in res.output and "/dev/serial/by-id" in res.output
    assert "stop it first" in res.output


def test_simulated_lane_has_nothing_to_calibrate(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '{ driver = "sim" }')
    res = CliRunner().invoke(main, ["thermometer", "calibrate", "--reference", "37.0", "-c", str(cfg),
                                    "--lane", "out"])
    assert res.exit_code == 2 and "simulated thermometer" in res.output


def test_reference_outside_body_range_is_refused() -> None:
    res = CliRunner().invoke(main, ["thermometer", "calibrate", "--reference", "3.7", "--port", "/dev/null"])
    assert res.exit_code == 2 and "30-45" in res.output


def test_derive_refuses_an_implausible_offset_and_flags_unsteady_readings() -> None:
    with pytest.raises(CalibrationError, match="more than any offset"):
        derive([Frame(30.0, 22.0)] * 10, 37.0, Compensation())
    wobbly = [Frame(36.0 + (i % 5) * 0.2, 22.0) for i in range(20)]
    cal = derive(wobbly, 37.0, Compensation())
    assert not cal.steady and cal.offset_c == pytest.approx(0.6)
    steady = derive([Frame(36.4, 22.0)] * 20, 37.0, Compensation())
    assert steady.steady and steady.spread_c == 0.0
