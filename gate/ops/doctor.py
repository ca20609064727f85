"""`gate doctor`: start every configured device for a few seconds, the way `gate run`
wires it, and say in one table what works, what does not, and what to do about it.

Per lane: camera frames per second and the age of the last frame; thermometer
readings per second and the last value; the card reader's data lines, the relay
and the inputs with their pin levels; a test prompt rendered and played through
the lane's speaker (a simulated speaker only renders). For the gate: free disk
where the store lives, whether the store's folder is writable, the clock's source
(NTP synchronisation via timedatectl, or "unknown"), the key files, and the broker
if sync is configured. Nothing touches the gate's store: the lanes run on a scratch one.

Whatever fails is a row, never a traceback. A GPIO backend that cannot start is one
row, and the other devices are still checked, with the pins in memory.

Run it with the gate stopped: a running gate holds the camera and the serial port.
"""
from __future__ import annotations

import getpass
import grp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from gate.config import Config, LaneConfig

from gate.ops.device_checks import (STOP_THE_GATE, TEST_PROMPTS, Check, Status, _camera,  # noqa: F401
                                    _card_reader, _gpio_devices, _lane_gpio_pins, _level, _speaker, _thermometer)


def run(config: Config, *, seconds: float = 3.0, speak: bool = True,
        log: Callable[[str], None] = lambda line: None) -> list[Check]:
    """Check everything ``config`` names. Takes about ``seconds`` plus the prompts."""
    checks = [*_store(config), _clock(), _keys(config), _secrets(config)]
    if config.sync is not None:
        checks.append(_broker(config))
    # The lanes' devices, wired exactly as `gate run` wires them, on a scratch store,
    # without sync (checked above), without the demo, and without the keys (checked
    # above: a missing key must not keep the devices from being checked).
    conf = config.model_copy(update={"sync": None, "demo": None,
                                     "keys": config.keys.model_copy(update={"trusted": []})})
    with tempfile.TemporaryDirectory(prefix="gate-doctor-") as tmp:
        log(f"doctor: starting {len(conf.lanes)} lane(s) for {seconds:g} s ...")
        app, problems = _start(conf, Path(tmp) / "doctor.db")
        if app is None:
            return problems + checks
        gpio_ok = not any(c.device == "gpio" for c in problems)
        try:
            time.sleep(seconds)
            lane_checks = []
            for lane_cfg in conf.lanes:
                lane_checks += _lane(app, lane_cfg, conf, speak=speak, gpio_ok=gpio_ok)
        finally:
            app.stop()
    return problems + lane_checks + checks


def _start(conf: Config, store: Path) -> tuple[Any, list[Check]]:
    """The started app and what went wrong on the way; no app if it cannot start at all.

    A GPIO backend that cannot start (off a Pi, lgpio missing, no access) is one
    row, and the gate is started again on mock pins so that the cameras,
    thermometers and speakers are still checked for real."""
    try:
        return _started(conf, store), []
    except Exception as exc:
        first = exc
    if not _gpio_devices(conf):
        return None, [_start_failed(first, conf)]
    try:
        app = _started(conf, store, mock_pins=True)
    except Exception as exc:
        # Not (only) the GPIO: say what stops the gate, and the GPIO too if it failed.
        rows = [_gpio_failed(first, conf)] if _is_gpio_error(first) else []
        return None, [*rows, _start_failed(exc, conf)]
    return app, [_gpio_failed(first, conf)]  # mock pins fixed it: the GPIO was the problem


def _started(conf: Config, store: Path, *, mock_pins: bool = False) -> Any:
    """A started GateApp; on any failure (construction or start) everything it
    opened is closed again and the exception raised."""
    from drivers.gpio import MockFactory
    from gate.app.gate_app import GateApp

    app = GateApp(conf, store_path=store, prerender=False,
                  pins=MockFactory() if mock_pins else None)
    try:
        app.start()
    except BaseException:
        app.stop()
        raise
    return app


def _start_failed(exc: Exception, conf: Config) -> Check:
    return Check("gate", "start", "fail", "the lanes' devices could not be set up",
                 _start_advice(exc, conf), f"{type(exc).__name__}: {exc}")


def _gpio_failed(exc: Exception, conf: Config) -> Check:
    figures = (f"[gpio] backend = \"{conf.gpio.backend}\" did not start; "
               "the pin devices are not checked, the others are")
    return Check("gate", "gpio", "fail", figures, _gpio_advice(conf), f"{type(exc).__name__}: {exc}")


def _is_gpio_error(exc: BaseException) -> bool:
    from drivers.gpio import GpioUnavailable

    return isinstance(exc, GpioUnavailable)


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == "fail" for c in checks) else 0


def table(checks: list[Check]) -> str:
    """One line a device; under a device that is not ok, what its driver said and
    what to do."""
    rows = [("lane", "device", "status", "figures")]
    rows += [(c.lane, c.device, c.status.upper() if c.status == "fail" else c.status, c.figures)
             for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    indent = " " * (sum(widths) + 6)
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(col.ljust(w) for col, w in zip(r[:3], widths)) + "  " + r[3])
        if k == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * 7)
            continue
        c = checks[k - 1]
        if c.detail:
            out.append(f"{indent}{c.detail}")
        if c.advice:
            out.append(f"{indent}-> {c.advice}")
    failed = [c for c in checks if c.status == "fail"]
    warned = [c for c in checks if c.status == "warn"]
    if failed:
        out.append(f"{len(failed)} problem(s): " + "; ".join(f"{c.lane} {c.device}" for c in failed))
    else:
        out.append("all devices work" + (f" ({len(warned)} warning(s))" if warned else ""))
    return "\n".join(out)


# ------------------------------------------------------------------ lanes


def _lane(app: Any, cfg: LaneConfig, conf: Config, *, speak: bool, gpio_ok: bool = True) -> list[Check]:
    lane = app.lanes[cfg.name]
    dev = app.devices[cfg.name]
    health: dict[str, tuple[bool, str]] = dict(lane.health)
    out: list[Check] = []
    if cfg.camera is not None and dev.scanner is not None:
        out.append(_camera(cfg, dev, health.get("camera")))
    if cfg.thermometer is not None and dev.thermometer is not None:
        out.append(_thermometer(cfg, dev, health.get("thermometer")))
    # Without a GPIO backend the devices on real pins ran on mock ones: their
    # levels say nothing about the wiring, so they are not shown as working.
    unchecked = {} if gpio_ok else _lane_gpio_pins(cfg)
    out += [Check(cfg.name, name, "fail", f"not checked: GPIO {pins} (no GPIO backend, see gate gpio)")
            for name, pins in unchecked.items()]
    if cfg.card_reader is not None and dev.wiegand is not None and "card_reader" not in unchecked:
        out.append(_card_reader(cfg, dev))
    if cfg.relay is not None and dev.relay is not None and "relay" not in unchecked:
        level = _level(getattr(dev.relay, "_pin", None))
        state = "unlocked" if dev.relay.unlocked else "locked"
        out.append(Check(cfg.name, "relay", "ok", f"{state} (GPIO {cfg.relay.pin} at {level})"))
    for name in ("door_contact", "exit_button", "pir"):
        icfg = getattr(cfg, name)
        inp = dev.inputs.get(name)
        if icfg is None or inp is None or name in unchecked:
            continue
        level = _level(getattr(inp, "_pin", None))
        figures = f"{'active' if inp.active else 'inactive'} (GPIO {icfg.pin} at {level}, active {'high' if icfg.active_high else 'low'})"
        status: Status = "ok"
        advice = ""
        if inp.active and name == "exit_button":
            status, advice = "warn", "reads pressed: a stuck button, or active_high is the wrong way round"
        elif inp.active and name == "door_contact":
            status, advice = "warn", "reads open: close the door, or active_high is the wrong way round"
        out.append(Check(cfg.name, name, status, figures, advice))
    out.append(_speaker(cfg, dev, conf, speak=speak))
    return out


def _store(config: Config) -> list[Check]:
    folder = Path(config.store.path).resolve().parent
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_mb = usage.free / 1e6
    share = usage.free / usage.total if usage.total else 0.0
    figures = f"{_size(usage.free)} free of {_size(usage.total)} ({share:.0%}) at {probe}"
    out = []
    if free_mb < 200:
        out.append(Check("gate", "disk", "fail", figures,
                         "less than 200 MB free: the store cannot keep events for long; free space "
                         "(journalctl --vacuum-size=50M, old files) or use a bigger card"))
    elif free_mb < 1000 or share < 0.05:
        out.append(Check("gate", "disk", "warn", figures, "little free space left: free some soon"))
    else:
        out.append(Check("gate", "disk", "ok", figures))
    writable = os.access(folder, os.W_OK) if folder.exists() else os.access(probe, os.W_OK)
    if writable:
        state = "folder writable" if folder.exists() else f"folder will be made in {probe}"
        out.append(Check("gate", "store", "ok", f"{Path(config.store.path).resolve()} ({state})"))
    else:
        out.append(Check("gate", "store", "fail", f"{config.store.path}: folder not writable",
                         f"create {folder} and give the gate's user write access to it"))
    return out


def _clock() -> Check:
    rtc = "RTC present" if Path("/dev/rtc0").exists() else "no RTC"
    exe = shutil.which("timedatectl")
    props: dict[str, str] = {}
    if exe:
        try:
            res = subprocess.run([exe, "show", "-p", "NTP", "-p", "NTPSynchronized", "-p", "Timezone"],
                                 capture_output=True, text=True, timeout=5)
            if res.returncode == 0:
                props = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        except (OSError, subprocess.SubprocessError):
            props = {}
    if not props:
        return Check("gate", "clock", "warn", f"source unknown (no timedatectl answer); {rtc}",
                     "check that the clock is right (date) and that NTP runs once the gate has a network")
    synced = props.get("NTPSynchronized") == "yes"
    ntp = props.get("NTP") == "yes"
    figures = (f"NTP {'on' if ntp else 'off'}, {'synchronised' if synced else 'not synchronised'}; "
               f"{rtc}; zone {props.get('Timezone', '?')}")
    if synced:
        return Check("gate", "clock", "ok", figures)
    return Check("gate", "clock", "warn", figures,
                 ("turn NTP on: timedatectl set-ntp true; " if not ntp else "")
                 + "without a synchronised clock pass validity and report days go by a clock that may drift "
                 "(the gate never lets it run backwards)")


def _broker(config: Config) -> Check:
    assert config.sync is not None
    host, port, tls = config.sync.endpoint()
    figures = f"{config.sync.broker}"
    try:
        with socket.create_connection((host, port), timeout=3.0):
            pass
    except OSError as exc:
        return Check("gate", "broker", "warn", figures,
                     "central is unreachable: the gate keeps working and keeps its events until it "
                     "is back; check the network and the broker address", str(exc))
    return Check("gate", "broker", "ok", f"{figures} reachable{' (TLS not checked)' if tls else ''}")


def _keys(config: Config) -> Check:
    """The key files the config names: a gate without central's key refuses every pass."""
    from gate.core.tokens import key_id, load_private, load_public

    trusted = list(config.keys.trusted)
    central = list(config.sync.central_keys) if config.sync is not None else []
    for where, path in [("[keys] trusted", p) for p in trusted] + [("[sync] central_keys", p) for p in central]:
        try:
            load_public(path)
        except (ValueError, OSError) as exc:  # OSError: an unreadable disk, say
            return Check("gate", "keys", "fail", f"{where}: {path} unusable",
                         f"copy central's public key (from whoever runs central) to {path}, or correct "
                         f"{where} in the config; for a test gate make a pair: "
                         f"gate keys new {Path(path).stem} --dir {Path(path).parent}", str(exc))
    signing = config.keys.signing
    if signing is not None:
        try:
            load_private(signing)
        except (ValueError, OSError) as exc:  # OSError: an unreadable disk, say
            return Check("gate", "keys", "fail", f"[keys] signing: {signing} unusable",
                         f"make the gate's key with `gate keys new {Path(signing).stem} --dir "
                         f"{Path(signing).parent}` (readable by the gate's user only), or remove "
                         "[keys] signing from the config", str(exc))
    figures = (f"{len(trusted)} pass-signing key(s)" + (f", {len(central)} central key(s)" if config.sync is not None else "")
               + (", signing key" if signing is not None else ""))
    mine = [(Path(p), key_id(load_public(p))) for p in trusted + central]
    if signing is not None:
        mine.append((Path(signing), key_id(load_private(signing).public_key())))
    from gate.store.withdrawn import peek

    held = peek(Path(config.store.path))
    gone = [f"{path} ({kid})" for path, kid in mine if kid in held]
    if gone:
        return Check("gate", "keys", "warn", figures + f"; withdrawn by central: {', '.join(gone)}",
                     "central's key list withdrew these keys: whatever they sign (passes, or what central "
                     "sends) is refused as forged; remove them from the config and use another key")
    if not trusted:
        return Check("gate", "keys", "warn", figures,
                     "no pass-signing key: every QR pass is refused (cards only); list the key passes are "
                     "signed with in [keys] trusted")
    return Check("gate", "keys", "ok", figures)


def _secrets(config: Config) -> Check:
    """Private key, PIN and password files: readable by the gate's user only."""
    from gate.app.secret_files import loose, named

    found = loose(config)
    if found:
        return Check("gate", "secrets", "warn", f"{len(found)} of {len(named(config))} secret file(s) readable by others",
                     "; ".join(str(f) for f in found))
    return Check("gate", "secrets", "ok", f"{len(named(config))} secret file(s), readable by their owner only")


def _start_advice(exc: Exception, conf: Config) -> str:
    if isinstance(exc, OSError) and exc.filename:
        if isinstance(exc, PermissionError):
            return f"give the user running the gate access to {exc.filename}, then run gate doctor again"
        return f"create {exc.filename} or correct its path in the config, then run gate doctor again"
    return "fix what the line above names in the config (gate config check FILE), then run gate doctor again"


def _gpio_advice(conf: Config) -> str:
    """Concrete steps for the GPIO backend: lgpio on every Pi, the pins' access,
    and off a Pi the simulated pins."""
    sim = f"set driver = \"sim\" on {', '.join(_gpio_devices(conf))} to check the rest without hardware"
    pi = f"install lgpio ({_lgpio_install()})"
    group = _gpio_group_hint()
    if group:
        pi += f" and {group}"
    if conf.gpio.backend != "auto":
        # RPi.GPIO 0.7 cannot watch edges on Bookworm's kernel 6.6+, not even on a Pi 4.
        pi = f"set [gpio] backend = \"auto\" (it picks lgpio), {pi}"
    if _on_a_pi():
        return pi
    return f"this is not a Raspberry Pi: {sim}; on the gate's Pi: {pi}"


def _lgpio_install() -> str:
    """The command that puts lgpio where this Python finds it: a venv made without
    the system's packages (scripts/setup) does not see apt's python3-lgpio."""
    root = Path(__file__).resolve().parents[2]
    setup = root / "scripts" / "setup"
    if _isolated_venv() and setup.exists():
        return f"cd {root} && scripts/setup --pi"
    return "sudo apt install python3-lgpio"


def _isolated_venv() -> bool:
    if sys.prefix == sys.base_prefix:
        return False
    try:
        cfg = (Path(sys.prefix) / "pyvenv.cfg").read_text()
    except OSError:
        return True
    return "include-system-site-packages = true" not in cfg


def _gpio_group_hint() -> str:
    """/dev/gpiochip* belongs to the gpio group: name this user when it is not in
    it; where there is no such group (not Raspberry Pi OS), the gate's user."""
    try:
        gid = grp.getgrnam("gpio").gr_gid
    except KeyError:
        return "check that the gate's user is in the gpio group (id gate)"
    if os.geteuid() == 0 or gid in os.getgroups():
        return ""
    user = getpass.getuser()
    return f"add {user} to the gpio group (sudo usermod -aG gpio {user}, then log in again)"


def _on_a_pi() -> bool:
    try:
        return "Raspberry Pi" in Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        return False


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n:.1f} TB"
