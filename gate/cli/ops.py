"""The devices on the bench: `gate doctor` starts every configured device for a few seconds
and says what is wrong; `gate thermometer calibrate` derives a thermometer's offset."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from gate.cli.common import config_option, fail, load_config


@click.command("doctor")
@config_option
@click.option("--seconds", default=3.0, show_default=True, help="how long to watch the devices")
@click.option("--no-speak", is_flag=True, help="do not play the test prompt")
def doctor_cmd(config_path: str | None, seconds: float, no_speak: bool) -> None:
    """Check every configured device and say what to do about what is wrong (run it with the gate stopped)."""
    from gate.ops import doctor

    if config_path is None and Path("/etc/gate/gate.toml").exists():
        config_path = "/etc/gate/gate.toml"
    conf = load_config(config_path)
    checks = doctor.run(conf, seconds=seconds, speak=not no_speak, log=lambda line: click.echo(line, err=True))
    click.echo(doctor.table(checks))
    sys.exit(doctor.exit_code(checks))


@click.group("thermometer")
def thermometer_group() -> None:
    """The lanes' thermometers."""


@thermometer_group.command("calibrate")
@click.option("--reference", "reference_c", type=float, required=True, help="temperature of the blackbody or reference (°C)")
@config_option
@click.option("--lane", default=None, help="the lane whose thermometer to calibrate (default: the only one with a serial thermometer)")
@click.option("--port", default=None, help="calibrate the sensor on this serial port instead of a configured one")
@click.option("--protocol", type=click.Choice(["gy-mcu90614", "ascii", "modbus"]), default="gy-mcu90614", show_default=True, help="with --port")
@click.option("--baudrate", type=int, default=9600, show_default=True, help="with --port")
@click.option("--readings", default=50, show_default=True, help="readings to take with the reference in front of the sensor")
@click.option("--timeout", "timeout_s", default=30.0, show_default=True, help="give up after this many seconds")
def thermometer_calibrate(reference_c: float, config_path: str | None, lane: str | None, port: str | None, protocol: str,
                          baudrate: int, readings: int, timeout_s: float) -> None:
    """Derive the thermometer's offset_c against a blackbody or reference thermometer; print the TOML to paste."""
    from drivers.thermometer import Compensation
    from gate.ops.calibrate import CalibrationError, derive, measure

    if not 30.0 <= reference_c <= 45.0:
        fail(f"--reference: {reference_c:g} °C is not a body or blackbody temperature (30-45 °C)")
    where = "the sensor"
    if port is not None:
        comp, serial_kw = Compensation(), {"baudrate": baudrate, "protocol": protocol}
        where = port
    else:
        conf = load_config(config_path)
        lanes = [l for l in conf.lanes if l.thermometer is not None and (lane is None or l.name == lane)]
        if lane is not None and not lanes:
            fail(f"{config_path}: no lane {lane!r} with a thermometer (lanes: {', '.join(l.name for l in conf.lanes)})")
        real = [l for l in lanes if l.thermometer is not None and l.thermometer.driver == "serial"]
        if not real:
            fail(f"{config_path}: {'lane ' + repr(lane) + ' has a simulated thermometer' if lane else 'no lane has a serial thermometer'}: nothing to calibrate")
        if len(real) > 1:
            fail(f"{config_path}: several lanes have a thermometer ({', '.join(l.name for l in real)}): choose one with --lane")
        lane_cfg = real[0]
        th = lane_cfg.thermometer
        assert th is not None and th.driver == "serial"
        c = th.compensation
        comp = Compensation(c.offset_c, c.ambient_ref_c, c.ambient_k)
        serial_kw = {"baudrate": th.baudrate, "protocol": th.protocol, "parity": th.parity, **th.modbus()}
        port, where = th.port, f"lane {lane_cfg.name}: {th.port}"
        lane = lane_cfg.name
    click.echo(f"calibrating {where} against {reference_c:.2f} °C: hold the blackbody (or the reference person's "
               f"forehead) in front of the sensor, where people stand ...", err=True)
    try:
        frames, took = measure(port, compensation=comp, readings=readings, timeout_s=timeout_s, serial_kw=serial_kw)
        cal = derive(frames, reference_c, comp, took)
    except CalibrationError as exc:
        fail(f"calibration failed: {exc}", 1)
    click.echo(f"{cal.readings} readings in {cal.seconds:.1f} s: object {cal.object_c:.2f} °C (median, spread "
               f"{cal.spread_c:.2f} °C), ambient {cal.ambient_c:.1f} °C")
    if not cal.steady:
        click.echo(f"warning: the readings spread over {cal.spread_c:.2f} °C: was the target held still? "
                   "Consider running it again.", err=True)
    click.echo(f"the lane reads {cal.reads_before_c:.2f} °C with offset_c = {cal.before.offset_c:.2f}; "
               f"offset_c = {cal.offset_c:.2f} makes it {reference_c:.2f} °C")
    target = f"lane {lane}'s thermometer in {config_path}" if lane else "the lane's thermometer"
    click.echo(f"paste into {target} (replacing its compensation):")
    click.echo(f"    {cal.toml_line()}")
