"""The `gate` command."""
from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import click

from gate import config as cfgmod
from gate.config import ConfigError


def _fail(message: str, code: int = 2) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def _load_config(path: str | None, store: str | None = None) -> cfgmod.Config:
    if path is None:
        _fail("this command needs a configuration: -c CONFIG (see config/gate.example.toml)")
    try:
        conf = cfgmod.load(path)
    except ConfigError as exc:
        _fail(str(exc))
    if store:
        conf = conf.model_copy(update={"store": cfgmod.StoreSection(path=Path(store))})
    return conf


def _open_store(conf: cfgmod.Config):  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    from gate.store.database import Store

    return Store(conf.store.path, gate_id=conf.gate.id, tz=ZoneInfo(conf.gate.timezone))


config_option = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="configuration file (TOML)")
broker_option = click.option(
    "--broker", default=None, metavar="mqtt://HOST:PORT", help="MQTT broker (mqtt:// or mqtts://); overrides the config"
)
store_option = click.option("--store", "store_path", type=click.Path(dir_okay=False), help="where the SQLite store lives (overrides the config)")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log debug detail")
def main(verbose: bool) -> None:
    """gate: an offline-first checkpoint for a residential community's entrance."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _log_in_timezone(tz_name: str) -> None:
    """Log lines in the gate's local time with its offset, like the console's lines
    beside them (the machine's own zone is often UTC)."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(tz_name)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_LocalFormatter(tz, "%(asctime)s %(levelname)s %(name)s: %(message)s"))


class _LocalFormatter(logging.Formatter):
    def __init__(self, tz: Any, fmt: str) -> None:
        super().__init__(fmt)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        from datetime import datetime

        return datetime.fromtimestamp(record.created, self.tz).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------- config


@main.group("config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE without starting anything."""
    try:
        conf = cfgmod.load(file)
    except ConfigError as exc:
        _fail(str(exc))
    lanes = ", ".join(f"{l.name} ({l.direction}: {', '.join(f'{k}={v.driver}' for k, v in l.devices().items())})" for l in conf.lanes)
    click.echo(f"{file}: ok — gate {conf.gate.id}, lanes: {lanes}")


# ---------------------------------------------------------------- drill


@main.command("drill")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@click.option("--report", "with_report", is_flag=True, help="end with the daily report of the drill's first day")
@config_option
@broker_option
def drill_cmd(file: str, as_json: bool, with_report: bool, config_path: str | None, broker: str | None) -> None:
    """Run a drill (a timeline of what happens at the gate) on a fresh store."""
    from gate.app import console
    from gate.drill import runner as drill
    from gate.drill import file as drill_file

    if logging.getLogger().level > logging.DEBUG:
        # The timeline already shows every refusal; the daemon's warnings would only repeat it.
        logging.getLogger().setLevel(logging.ERROR)

    try:
        d = drill_file.load(file)
        base = None
        if config_path:
            base = cfgmod._resolve_paths(cfgmod.read_toml(Path(config_path)), Path(config_path).resolve().parent)
    except ConfigError as exc:
        _fail(str(exc))

    def show(line: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(line, ensure_ascii=False))
        else:
            console.print_line(line)

    try:
        _check_broker(broker)
        result = drill.run(d, base=base, with_report=with_report, on_line=show, broker=broker)
    except (ConfigError, drill.DrillError) as exc:
        _fail(f"{file}: {exc}")
    for report in result.reports:
        click.echo(json.dumps(report, ensure_ascii=False) if as_json else json.dumps(report, ensure_ascii=False, indent=2))
    if result.unmet is not None:
        click.echo(f"{file}: FAILED: expected {json.dumps(result.unmet, ensure_ascii=False)} was not seen", err=True)
        sys.exit(1)
    if result.forbidden is not None:
        bad, line = result.forbidden
        click.echo(
            f"{file}: FAILED: forbidden {json.dumps(bad, ensure_ascii=False)} happened:"
            f" {json.dumps(line, ensure_ascii=False)}",
            err=True,
        )
        sys.exit(1)
    if d.expect or d.forbid:
        said = [f"{len(d.expect)} expectations met"] if d.expect else []
        said += [f"nothing of {len(d.forbid)} forbidden seen"] if d.forbid else []
        click.echo(f"{file}: ok, {', '.join(said)}", err=True)


# ---------------------------------------------------------------- report


@main.group("report")
def report_group() -> None:
    """Reports from the store."""


@report_group.command("daily")
@click.option("--date", "day", default=None, help="YYYY-MM-DD (local date); default: yesterday, the last whole day")
@click.option("--json", "as_json", is_flag=True)
@click.option("--pdf", type=click.Path(dir_okay=False), help="also write the report as a one-page PDF")
@click.option("--html", type=click.Path(dir_okay=False), help="also write the report as a self-contained HTML page")
@click.option("--png", type=click.Path(dir_okay=False), help="also write the report page as a PNG (for a chat)")
@config_option
@store_option
def report_daily(
    day: str | None, as_json: bool, config_path: str | None, store_path: str | None,
    pdf: str | None = None, html: str | None = None, png: str | None = None,
) -> None:
    """The daily report, also for a day with no events (default: yesterday's)."""
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from gate.store.daily import daily

    conf = _load_config(config_path, store_path)
    if day is None:
        day = (datetime.now(ZoneInfo(conf.gate.timezone)).date() - timedelta(days=1)).isoformat()
    try:
        date.fromisoformat(day)
    except ValueError:
        _fail(f"--date: expected YYYY-MM-DD, got {day!r}")
    store = _open_store(conf)
    try:
        rep = daily(store, day)
        if pdf or html or png:
            from gate.cli.desk import report_documents

            report_documents(conf, store, day, pdf, html, png)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rep, ensure_ascii=False))
        return
    click.echo(f"Daily report {rep['date']} — gate {rep['gate']}")
    click.echo(f"  events: {rep['events']}   fevers: {rep['fevers']}   challenges: {rep['challenges']}")
    click.echo(f"  allowed: {rep['allowed'] or '-'}")
    click.echo(f"  denied:  {rep['denied'] or '-'}")
    click.echo(f"  new cards: {', '.join(rep['new_cards']) or '-'}   unknown cards: {', '.join(rep['unknown_cards']) or '-'}")
    click.echo(f"  by hour: {rep['by_hour']}")


# ---------------------------------------------------------------- keys


@main.group("keys")
def keys_group() -> None:
    """Signing keys for passes."""


@keys_group.command("new")
@click.argument("name_arg", metavar="[NAME]", required=False)
@click.option("--name", default=None, help="the same as NAME (default: central)")
@click.option("--dir", "directory", default="keys", show_default=True, type=click.Path(file_okay=False))
def keys_new(name_arg: str | None, name: str | None, directory: str) -> None:
    """Make an Ed25519 key pair: NAME.key (private, mode 0600) and NAME.pub.

    `gate keys new central` and `gate keys new --name central` are the same."""
    from gate.core.tokens import key_id, load_public, new_keypair

    if name_arg and name and name_arg != name:
        _fail(f"two names given ({name_arg} and --name {name}): give one")
    name = name_arg or name or "central"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name.startswith("."):
        _fail(f"key name {name!r}: use letters, digits, '.', '_' and '-' (it becomes NAME.key and NAME.pub)")
    try:
        priv, pub = new_keypair(Path(directory), name)
    except FileExistsError as exc:
        _fail(str(exc))
    click.echo(f"wrote {priv} (keep secret) and {pub}; key id {key_id(load_public(pub))}")


# ---------------------------------------------------------------- passes


@main.group("passes")
def passes_group() -> None:
    """The local pass table and pass QR codes."""


@passes_group.command("issue")
@click.option("--id", "pass_id", required=True)
@click.option("--category", required=True, type=click.Choice(cfgmod.CATEGORIES))
@click.option("--unit", default="", help="holder's unit, e.g. 3-2-501 (goes into the token as holder reference)")
@click.option("--valid-from", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]))
@click.option("--valid-until", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]))
@click.option("--valid-days", type=click.IntRange(0, 36500), default=365, show_default=True,
              help="without --valid-until: the pass ends this many days from today (0: no end date)")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, exists=True), help="private signing key")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
@click.option("--tz", default="Asia/Shanghai", show_default=True, help="time zone of the validity dates")
def passes_issue(pass_id: str, category: str, unit: str, valid_from: Any, valid_until: Any, valid_days: int, key_path: str,
                 out: str, tz: str) -> None:
    """Sign a pass and write its QR code as a PNG. It ends (--valid-until, or in a year
    by default): a pass removed later need only be refused until then."""
    from datetime import datetime as dt, time as dtime, timedelta
    from zoneinfo import ZoneInfo

    import segno

    from gate.core.tokens import PassToken, load_private, sign

    zone = ZoneInfo(tz)
    vfrom = valid_from.replace(tzinfo=zone) if valid_from else None
    vuntil = valid_until.replace(tzinfo=zone) if valid_until else None
    if vuntil is None and valid_days:
        vuntil = dt.combine(dt.now(zone).date() + timedelta(days=valid_days), dtime(0), zone)
    if vuntil is not None and vuntil.time() == dtime(0):
        vuntil = vuntil.replace(hour=23, minute=59, second=59)  # a date means "through that day"
    try:
        token = sign(PassToken(pass_id, category, unit, vfrom, vuntil), load_private(Path(key_path)))
    except ValueError as exc:
        _fail(str(exc))
    segno.make(token, error="m").save(out, scale=8, border=4)
    click.echo(f"wrote {out}: {token}")


@passes_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--dry-run", is_flag=True, help="validate and show what would change, write nothing")
@click.option("--json", "as_json", is_flag=True, help="the outcome as one JSON object")
@click.option("--by", default=None, help="who is importing (recorded; default: the login name)")
@config_option
@store_option
def passes_import(file: str, dry_run: bool, as_json: bool, by: str | None, config_path: str | None, store_path: str | None) -> None:
    """Load a roster (CSV or XLSX); the whole file goes in or nothing does."""
    from gate.cli import desk as cli_desk

    cli_desk.passes_import(file, dry_run, as_json, by, config_path, store_path)


# ---------------------------------------------------------------- privacy


@main.group("privacy")
def privacy_group() -> None:
    """A resident's request: what the gate holds about a pass, or erase it."""


@privacy_group.command("export")
@click.option("--pass", "pass_id", required=True)
@config_option
@store_option
def privacy_export(pass_id: str, config_path: str | None, store_path: str | None) -> None:
    """Print everything this gate holds about a pass, as JSON."""
    from gate.desk.privacy import export

    conf = _load_config(config_path, store_path)
    store = _open_store(conf)
    try:
        data = export(store, pass_id)
    finally:
        store.close()
    if data["pass"] is None and not data["events"]:
        _fail(f"no pass {pass_id!r} and no events for it in {conf.store.path}", 1)
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@privacy_group.command("erase")
@click.option("--pass", "pass_id", required=True)
@click.option("--yes", is_flag=True, help="do not ask")
@config_option
@store_option
def privacy_erase(pass_id: str, yes: bool, config_path: str | None, store_path: str | None) -> None:
    """Delete a pass and its cards, and strip it from the events kept here."""
    from gate.desk.privacy import erase

    conf = _load_config(config_path, store_path)
    if not yes:
        click.confirm(f"Erase pass {pass_id} and unlink its events in {conf.store.path}?", abort=True)
    store = _open_store(conf)
    try:
        n = erase(store, pass_id)
    finally:
        store.close()
    click.echo(f"erased pass {pass_id}: {n['passes']} pass, {n['cards']} cards, {n['events']} events unlinked")


# ---------------------------------------------------------------- scan


@main.command("scan")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--decoder", default="auto", type=click.Choice(["auto", "thorough", "fast", "zxing", "pyzbar"]), show_default=True)
def scan(images: tuple[str, ...], decoder: str) -> None:
    """Print PATH<TAB>TEXT for each code found in each image (PATH alone if none)."""
    import cv2

    from drivers.qr import make_decoder

    # An operator's check of a printed pass (or a sheet of them) may take its time:
    # "auto" is the thorough still-image decoder (scales, binarisers, rotation,
    # inversion, pyzbar), codes in reading order.
    dec = make_decoder("thorough" if decoder == "auto" else decoder)  # type: ignore[arg-type]
    status = 0
    for path in images:
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            click.echo(f"{path}: cannot read image", err=True)
            status = 1
            continue
        texts = dec.decode(img)
        if not texts:
            click.echo(path)
        for text in texts:
            click.echo(f"{path}\t{text}")
    sys.exit(status)


# ---------------------------------------------------------------- run


@main.command("run")
@config_option
@store_option
@broker_option
@click.option("--listen", default=None, metavar="HOST:PORT", help="where the guard page listens (overrides guard.listen)")
def run_cmd(config_path: str | None, store_path: str | None, broker: str | None, listen: str | None) -> None:
    """Run the gate: every lane, its drivers, and (in demo configs) scripted people."""
    from gate.cli.run import run

    _check_broker(broker)
    conf = _load_config(config_path, store_path)
    if listen is not None:
        if not re.fullmatch(r"[^:\s]+:\d{1,5}", listen):
            _fail(f"--listen: expected HOST:PORT such as 127.0.0.1:8080, got {listen!r}")
        conf = conf.model_copy(update={"guard": conf.guard.model_copy(update={"listen": listen})})
    _log_in_timezone(conf.gate.timezone)
    sys.exit(run(conf, broker=broker, config_path=Path(config_path) if config_path else None))


def _check_broker(broker: str | None) -> None:
    import re

    if broker is not None and not re.fullmatch(r"mqtts?://[^:/\s]+(:\d{1,5})?/?", broker):
        _fail(f"--broker: expected mqtt://HOST:PORT or mqtts://HOST:PORT, got {broker!r}")


@main.command("sync")
@click.option("--drain", is_flag=True, required=True, help="publish until the outbox is empty, then exit")
@click.option("--timeout", default=600.0, show_default=True, help="give up after this many seconds (exit 1)")
@config_option
@store_option
@broker_option
def sync_cmd(drain: bool, timeout: float, config_path: str | None, store_path: str | None, broker: str | None) -> None:
    """Deliver the outbox to central now (e.g. before swapping a gate's SD card)."""
    import time

    from sync.service import SyncService

    _check_broker(broker)
    conf = _load_config(config_path, store_path)
    if conf.sync is None and broker is None:
        _fail(f"{config_path}: no [sync] section and no --broker: nowhere to send the outbox")
    store = _open_store(conf)
    store.close()  # migrations, before the publisher opens its own connection
    service = SyncService.build(conf, lambda: _open_store(conf), broker=broker, upstream_only=True)
    service.start()
    t0 = time.monotonic()
    try:
        ok = service.publisher.wait_drained(timeout)
    finally:
        service.stop()
    sent = service.publisher.counters.get("sent")
    if not ok:
        _fail(f"outbox not drained after {timeout:g} s: {service.publisher.pending} pending ({service.link.last_error or 'no broker connection'})", 1)
    click.echo(f"outbox drained: {sent} sent in {time.monotonic() - t0:.1f} s")


def _register() -> None:
    from sync.central.cli import central

    main.add_command(central)


_register()


def _register_desk() -> None:
    """passes print/list/show/revoke/export, policy ..., report range (gate/cli/desk.py)."""
    from gate.cli.desk import register

    register(main, passes_group, report_group, fail=_fail, load_config=_load_config, open_store=_open_store)


_register_desk()


def _register_clock() -> None:
    """gate clock floor [--reset --by NAME] (gate/cli/clock.py)."""
    from gate.cli.clock import register

    register(main, fail=_fail, load_config=_load_config, open_store=_open_store)


_register_clock()


def _register_guards() -> None:
    """gate guards add|remove|list (gate/cli/guards.py)."""
    from gate.cli.guards import register

    register(main, fail=_fail, load_config=_load_config)


_register_guards()
from gate.cli import tokens as _tokens  # noqa: E402 - gate tokens add|list|remove (gate/cli/tokens.py)
_tokens.register(main, fail=_fail, load_config=_load_config)

# ---------------------------------------------------------------- devices: doctor, thermometer calibration


@main.command("doctor")
@config_option
@click.option("--seconds", default=3.0, show_default=True, help="how long to watch the devices")
@click.option("--no-speak", is_flag=True, help="do not play the test prompt")
def doctor_cmd(config_path: str | None, seconds: float, no_speak: bool) -> None:
    """Check every configured device and say what to do about what is wrong (run it with the gate stopped)."""
    from gate.ops import doctor

    if config_path is None and Path("/etc/gate/gate.toml").exists():
        config_path = "/etc/gate/gate.toml"
    conf = _load_config(config_path)
    checks = doctor.run(conf, seconds=seconds, speak=not no_speak, log=lambda line: click.echo(line, err=True))
    click.echo(doctor.table(checks))
    sys.exit(doctor.exit_code(checks))


@main.group("thermometer")
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
        _fail(f"--reference: {reference_c:g} °C is not a body or blackbody temperature (30-45 °C)")
    where = "the sensor"
    if port is not None:
        comp, serial_kw = Compensation(), {"baudrate": baudrate, "protocol": protocol}
        where = port
    else:
        conf = _load_config(config_path)
        lanes = [l for l in conf.lanes if l.thermometer is not None and (lane is None or l.name == lane)]
        if lane is not None and not lanes:
            _fail(f"{config_path}: no lane {lane!r} with a thermometer (lanes: {', '.join(l.name for l in conf.lanes)})")
        real = [l for l in lanes if l.thermometer is not None and l.thermometer.driver == "serial"]
        if not real:
            _fail(f"{config_path}: {'lane ' + repr(lane) + ' has a simulated thermometer' if lane else 'no lane has a serial thermometer'}: nothing to calibrate")
        if len(real) > 1:
            _fail(f"{config_path}: several lanes have a thermometer ({', '.join(l.name for l in real)}): choose one with --lane")
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
        _fail(f"calibration failed: {exc}", 1)
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


if __name__ == "__main__":
    main()
