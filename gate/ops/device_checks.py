"""`gate doctor`'s checks of one lane's devices: the camera's frames, the thermometer's
readings, the card reader's lines, the speaker's test prompt, and the pin levels of
relays and inputs. Each gives a `Check`: a row of the doctor's table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gate.config import Config, LaneConfig

Status = Literal["ok", "warn", "fail"]

TEST_PROMPTS = {"zh": "设备自检，声音正常。", "en": "Self test. The speaker works."}
STOP_THE_GATE = "if the gate is running it holds the device: stop it first (systemctl stop gate)"


@dataclass(frozen=True)
class Check:
    lane: str  # a lane's name, or "gate" for what the whole gate shares
    device: str
    status: Status
    figures: str
    advice: str = ""  # what to do, when it is not ok
    detail: str = ""  # what the driver said about it



def _camera(cfg: LaneConfig, dev: Any, health: tuple[bool, str] | None) -> Check:
    cam = cfg.camera
    assert cam is not None
    scanner = dev.scanner
    fps = scanner.fps
    age = scanner.frame_age
    frames = scanner.counters.get("frames")
    figures = (f"{fps:.1f} fps, last frame {age:.2f} s ago, {frames} frames" if age is not None
               else "no frame")
    figures += f" ({cam.driver}, decoder {type(scanner.decoder).__name__})"
    ok = health[0] if health is not None else True
    detail = health[1] if health is not None else ""
    if cam.driver == "file":
        source = dev.camera
        if getattr(source, "exhausted", False) or age is None:
            return Check(cfg.name, "camera", "warn", figures,
                         f"replaying {cam.path}: it has no (more) frames; a file camera is for tests")
    if ok and age is not None and age < 2.0:
        return Check(cfg.name, "camera", "ok", figures)
    if cam.driver == "v4l2":
        advice = (f"no frames from {cam.device}: check the USB cable, `ls -l /dev/v4l/by-id/` and "
                  f"`v4l2-ctl --list-devices`; {STOP_THE_GATE}")
    elif cam.driver == "picamera2":
        advice = (f"no frames from Pi camera {cam.camera}: check the ribbon cable and "
                  f"`rpicam-hello --list-cameras`; {STOP_THE_GATE}")
    else:
        advice = "the camera delivers no frames"
    return Check(cfg.name, "camera", "fail", figures, advice, detail)


def _thermometer(cfg: LaneConfig, dev: Any, health: tuple[bool, str] | None) -> Check:
    th = cfg.thermometer
    assert th is not None
    reader = dev.thermometer
    last = reader.last_frame
    rate = reader.frames_per_s
    if last is not None:
        body = dev.compensation.body(last.object_c, last.ambient_c)
        figures = (f"{rate:.1f} readings/s, last {last.object_c:.2f} °C, ambient "
                   f"{last.ambient_c:.1f} °C (compensated {body:.2f} °C)")
    else:
        figures = f"{rate:.1f} readings/s, no reading"
    where = "simulated" if th.driver == "sim" else f"{th.port}, {th.protocol}, {th.baudrate} baud"
    figures += f" ({where})"
    ok = health[0] if health is not None else reader.healthy
    detail = health[1] if health is not None else ""
    if ok and reader.healthy and last is not None:
        return Check(cfg.name, "thermometer", "ok", figures)
    if th.driver == "serial" and "cannot open" in detail:
        return Check(cfg.name, "thermometer", "fail", figures,
                     f"plug in the USB-serial adapter, check `ls -l /dev/serial/by-id/` and the "
                     f"port in the config; {STOP_THE_GATE}", detail)
    if th.driver == "serial" and th.protocol == "ascii" and th.stale_after() is None and ok:
        return Check(cfg.name, "thermometer", "warn", figures,
                     "no reading yet: this sensor prints only when it measures; hold a hand in front of it")
    if th.driver == "serial":
        extra = (f", Modbus slave {th.slave} and registers {th.object_register}/{th.ambient_register}"
                 if th.protocol == "modbus" else "")
        return Check(cfg.name, "thermometer", "fail", figures,
                     f"the port opens but no valid reading comes: check the baud rate ({th.baudrate}), "
                     f"protocol ({th.protocol}){extra}, the wiring (TX/RX crossed, RS-485 A/B) and power",
                     detail)
    return Check(cfg.name, "thermometer", "fail", figures,
                 "the simulated thermometer does not answer: a bug, please report it", detail)


def _card_reader(cfg: LaneConfig, dev: Any) -> Check:
    cr = cfg.card_reader
    assert cr is not None
    reader = dev.wiegand
    d0 = _level(getattr(reader, "_d0", None))
    d1 = _level(getattr(reader, "_d1", None))
    c = reader.counters
    figures = (f"D0 (GPIO {cr.d0}) at {d0}, D1 (GPIO {cr.d1}) at {d1}; cards {c.get('cards')}, "
               f"bad length {c.get('length')}, bad parity {c.get('parity')}")
    low = [f"D{i} (GPIO {pin})" for i, (level, pin) in enumerate(((d0, cr.d0), (d1, cr.d1))) if level == "0"]
    if low:
        return Check(cfg.name, "card_reader", "fail", figures,
                     f"{' and '.join(low)} held low: Wiegand lines idle high; check the wiring, the "
                     "reader's power and the pull-ups (a level shifter for 5 V readers)")
    return Check(cfg.name, "card_reader", "ok", figures + " (idle high)")


def _speaker(cfg: LaneConfig, dev: Any, conf: Config, *, speak: bool) -> Check:
    speaker = dev.speaker
    kind = cfg.speaker.driver
    if not speak:
        return Check(cfg.name, "speaker", "ok", f"not tested (--no-speak) ({kind})")
    from drivers.voice import wav_duration

    before = speaker.counters.snapshot()
    said = []
    for lang in conf.voice.languages:
        speaker.say("doctor", TEST_PROMPTS[lang], lang)
        finished = speaker.flush(timeout=20.0)  # one at a time: a new prompt cuts the one playing
        wav = speaker.cache.path_for(TEST_PROMPTS[lang], lang)
        length = f" {wav_duration(wav):.1f} s" if wav.exists() else ""
        said.append(f"{lang}{length}{'' if finished else ' (still playing)'}")
    after = speaker.counters.snapshot()

    def grew(key: str) -> int:
        return after.get(key, 0) - before.get(key, 0)

    figures = ("rendered " if kind == "sim" else "played ") + ", ".join(said)
    figures += " (sim: rendered, not played)" if kind == "sim" else f" (aplay{' -D ' + cfg.speaker.device if cfg.speaker.device else ''})"
    if grew("render_errors"):
        return Check(cfg.name, "speaker", "fail", figures,
                     "prompts cannot be rendered: check `espeak-ng --version` (apt install espeak-ng) "
                     "and that the voice cache folder is writable")
    if grew("play_errors"):
        return Check(cfg.name, "speaker", "fail", figures,
                     f"aplay cannot play: check `aplay -l`, the speaker device "
                     f"({cfg.speaker.device or 'default'}) and the volume (alsamixer)")
    return Check(cfg.name, "speaker", "ok", figures)


def _lane_gpio_pins(cfg: LaneConfig) -> dict[str, str]:
    """device -> its pins, for the lane's devices with driver 'gpio'."""
    out = {}
    if cfg.card_reader is not None and cfg.card_reader.driver == "gpio":
        out["card_reader"] = f"{cfg.card_reader.d0}/{cfg.card_reader.d1}"
    if cfg.relay is not None and cfg.relay.driver == "gpio":
        out["relay"] = str(cfg.relay.pin)
    for name in ("door_contact", "exit_button", "pir"):
        icfg = getattr(cfg, name)
        if icfg is not None and icfg.driver == "gpio":
            out[name] = str(icfg.pin)
    return out


def _gpio_devices(conf: Config) -> list[str]:
    """The names of the devices on real GPIO, in the order the config has them."""
    names: list[str] = []
    for lane in conf.lanes:
        names += [n for n in _lane_gpio_pins(lane) if n not in names]
    return names


def _level(pin: Any) -> str:
    try:
        return str(int(pin.read()))
    except Exception:
        return "?"


# ------------------------------------------------------------------ gate-wide
