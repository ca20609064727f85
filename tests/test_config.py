"""Configuration: the shipped files load, and every mistake an operator can make in
a TOML file comes back as one ConfigError naming the file, the key and what was
expected."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gate import config as cfg
from gate.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config"

LANE = """
[[lanes]]
name = "in"
direction = "in"
camera = { driver = "sim" }
"""


def write(tmp_path: Path, text: str, name: str = "gate.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    return str(info.value)


def problems(message: str) -> list[str]:
    """The lines of a ConfigError that each name one problem (the first line is a heading)."""
    return [line for line in message.splitlines()[1:] if line.strip()]


def names_key(message: str, key: str) -> bool:
    return re.search(rf"(^|\s){re.escape(key)}: ", message, re.M) is not None


# ---------------------------------------------------------------- shipped files


def test_demo_config_loads_with_paths_beside_the_file():
    conf = cfg.load(CONFIG_DIR / "demo.toml")
    assert [(l.name, l.direction) for l in conf.lanes] == [("in", "in"), ("out", "out")]
    # relative to config/, not to the cwd the tests run in
    assert conf.store.path.resolve() == (ROOT / "var" / "demo.db").resolve()
    assert conf.demo is not None and conf.demo.script.is_absolute() and conf.demo.script.is_file()
    assert conf.voice.cache_dir is not None and conf.voice.cache_dir.resolve() == (ROOT / "var" / "voice").resolve()
    inn = conf.lane("in")
    assert {"camera", "thermometer"} <= set(inn.devices())
    assert all(d.driver == "sim" for lane in conf.lanes for d in lane.devices().values())  # runs on any machine


def test_example_config_loads_with_its_settings():
    conf = cfg.load(CONFIG_DIR / "gate.example.toml")
    assert [(l.name, l.direction) for l in conf.lanes] == [("in", "in"), ("out", "out")]
    assert conf.keys.trusted and all(p.is_absolute() for p in conf.keys.trusted)
    # the example shows partial category overrides; the rest keep their defaults
    assert conf.policy.categories["visitor"].hours == "07:00-22:00"
    assert conf.policy.categories["courier"].refused is True
    with pytest.raises(KeyError):
        conf.lane("side")


def test_minimal_config_gets_the_documented_defaults(tmp_path):
    conf = cfg.load(write(tmp_path, LANE))
    p = conf.policy
    assert (p.fever_c, p.temperature_wait_s, p.temperature_fresh_s, p.retest_window_s) == (37.3, 10, 5, 60)
    assert (p.passback, p.passback_reset_h, p.challenge_rate, p.pcr_within_h) == ("soft", 12, 0, None)
    assert p.health_codes == ["green"] and p.night == "22:00-06:00" and p.admit_unlisted is True
    assert (conf.door.unlock_s, conf.door.held_s) == (5, 30)
    # every category is known, each with its own colour; couriers alone are refused
    assert set(p.categories) == set(cfg.CATEGORIES)
    assert len({c.colour for c in p.categories.values()}) == len(cfg.CATEGORIES)
    assert [n for n, c in p.categories.items() if c.refused] == ["courier"]
    assert p.categories["returnee"].label_zh == "返京"


# ---------------------------------------------------------------- one error, named


BAD = {
    "unknown top-level key": ("[gatee]\nid = 'x'\n" + LANE, "gatee", "unknown key"),
    "unknown key in a section": ("[gate]\nidd = 'x'\n" + LANE, "gate.idd", "unknown key"),
    "unknown key in a lane": (
        "[[lanes]]\nname = 'in'\ndirection = 'in'\ncamra = { driver = 'sim' }\n",
        "lanes[0].camra",
        "unknown key",
    ),
    "missing device of a v4l2 camera": (
        "[[lanes]]\nname = 'in'\ndirection = 'in'\ncamera = { driver = 'v4l2' }\n",
        "lanes[0].camera.device",
        "required key is missing",
    ),
    "wrong type of a camera device": (
        "[[lanes]]\nname = 'in'\ndirection = 'in'\ncamera = { driver = 'v4l2', device = 3 }\n",
        "lanes[0].camera.device",
        "valid string",
    ),
    "second lane's camera": (
        LANE + "[[lanes]]\nname = 'out'\ndirection = 'out'\ncamera = { driver = 'v4l2' }\n",
        "lanes[1].camera.device",
        "required key is missing",
    ),
    "unknown camera driver": (
        "[[lanes]]\nname = 'in'\ndirection = 'in'\ncamera = { driver = 'usb' }\n",
        "lanes[0].camera",
        "'usb'",
    ),
    "wrong type of fever_c": ("[policy]\nfever_c = 'hot'\n" + LANE, "policy.fever_c", "valid number"),
    "fever_c out of range": ("[policy]\nfever_c = 50\n" + LANE, "policy.fever_c", "less than or equal to 42"),
    "unknown passback mode": ("[policy]\npassback = 'strict'\n" + LANE, "policy.passback", "'soft'"),
    "challenge_rate over 1": ("[policy]\nchallenge_rate = 1.5\n" + LANE, "policy.challenge_rate", "less than or equal to 1"),
    "unknown health code": ("[policy]\nhealth_codes = ['green', 'blue']\n" + LANE, "policy.health_codes[1]", "'green'"),
    "typo in a category field": (
        "[policy.categories.visitor]\ncolr = 'red'\n" + LANE,
        "policy.categories.visitor.colr",
        "unknown key",
    ),
    "missing lanes": ("[gate]\nid = 'g'\n", "lanes", "required key is missing"),
    "empty lane list": ("lanes = []\n", "lanes", "at least 1"),
    "missing lane direction": ("[[lanes]]\nname = 'in'\n", "lanes[0].direction", "required key is missing"),
    "bad lane direction": ("[[lanes]]\nname = 'in'\ndirection = 'up'\n", "lanes[0].direction", "'in'"),
    "bad lane name": ("[[lanes]]\nname = 'Lane In'\ndirection = 'in'\n", "lanes[0].name", "pattern"),
    "unknown time zone": ("[gate]\ntimezone = 'Mars/Base'\n" + LANE, "gate.timezone", "Asia/Shanghai"),
    "bad baud rate": (
        "[[lanes]]\nname = 'in'\ndirection = 'in'\nthermometer = { driver = 'serial', port = '/dev/ttyUSB0', baudrate = 1234 }\n",
        "lanes[0].thermometer.baudrate",
        "9600",
    ),
    "typo in compensation": (
        "[[lanes]]\nname = 'in'\ndirection = 'in'\n"
        "thermometer = { driver = 'serial', port = '/dev/ttyUSB0', compensation = { offset = 1.0 } }\n",
        "lanes[0].thermometer.compensation.offset",
        "unknown key",
    ),
    "GPIO pin out of range": (
        "[[lanes]]\nname = 'in'\ndirection = 'in'\nrelay = { driver = 'gpio', pin = 99 }\n",
        "lanes[0].relay.pin",
        "53",
    ),
    "door time not positive": ("[door]\nunlock_s = 0\n" + LANE, "door.unlock_s", "greater than 0"),
}


@pytest.mark.parametrize("text, key, expected", BAD.values(), ids=BAD.keys())
def test_one_mistake_is_one_error_naming_file_key_and_expectation(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(str(path))
    assert len(problems(message)) == 1, message
    assert names_key(message, key), message
    assert expected in message


def test_two_mistakes_are_both_reported_in_one_error(tmp_path):
    path = write(tmp_path, "[policy]\nfever_c = 'hot'\n[door]\nheld_s = -1\n" + LANE)
    message = load_error(path)
    assert len(problems(message)) == 2
    assert names_key(message, "policy.fever_c") and names_key(message, "door.held_s")


def test_missing_file_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "nowhere" / "gate.toml"
    message = load_error(path)
    assert str(path) in message and "not found" in message


def test_invalid_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, '[gate]\nid = "x"\n[policy\nfever_c = 37.3\n')
    message = load_error(path)
    assert message.startswith(str(path))
    assert "TOML" in message and "line 3" in message


def test_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_bytes(b"[gate]\nid = \"\xff\xfe\"\n")
    message = load_error(path)
    assert str(path) in message


def test_a_directory_instead_of_a_file_is_a_config_error(tmp_path):
    message = load_error(tmp_path)
    assert str(tmp_path) in message


# ---------------------------------------------------------------- categories


def test_unknown_category_is_refused_with_the_known_ones_listed(tmp_path):
    path = write(tmp_path, "[policy.categories.vip]\nhours = '08:00-20:00'\n" + LANE)
    message = load_error(path)
    assert message.startswith(str(path))
    assert len(problems(message)) == 1
    assert "'vip'" in message
    assert all(name in message for name in cfg.CATEGORIES)


def test_unknown_category_error_names_its_key_path(tmp_path):
    path = write(tmp_path, "[policy.categories.vip]\nhours = '08:00-20:00'\n" + LANE)
    assert names_key(load_error(path), "policy.categories.vip")


def test_partial_category_override_keeps_the_other_defaults(tmp_path):
    defaults = cfg.PolicyConfig().categories
    conf = cfg.load(write(tmp_path, "[policy.categories.visitor]\nhours = '08:00-18:00'\n" + LANE))
    visitor = conf.policy.categories["visitor"]
    assert visitor.hours == "08:00-18:00"
    assert visitor.colour == defaults["visitor"].colour != cfg.CategoryPolicy().colour
    assert visitor.label_zh == "访客"
    assert conf.policy.categories["courier"].refused is True
    assert conf.policy.categories["resident"] == defaults["resident"]


def test_a_category_can_be_un_refused_keeping_its_colour(tmp_path):
    defaults = cfg.PolicyConfig().categories
    conf = cfg.load(write(tmp_path, "[policy.categories.courier]\nrefused = false\n" + LANE))
    courier = conf.policy.categories["courier"]
    assert courier.refused is False
    assert courier.colour == defaults["courier"].colour
    assert set(conf.policy.categories) == set(cfg.CATEGORIES)


def test_load_policy_reads_a_policy_document_on_its_own(tmp_path):
    top = cfg.load_policy(write(tmp_path, "version = 7\nfever_c = 37.0\npassback = 'hard'\n", "p1.toml"))
    nested = cfg.load_policy(write(tmp_path, "[policy]\nversion = 8\n[policy.categories.visitor]\nhours = '09:00-17:00'\n", "p2.toml"))
    assert (top.version, top.fever_c, top.passback) == (7, 37.0, "hard")
    assert nested.version == 8 and nested.categories["visitor"].hours == "09:00-17:00"
    assert nested.categories["courier"].refused is True
    bad = write(tmp_path, "[policy]\nfever_c = 'x'\n", "p3.toml")
    with pytest.raises(ConfigError) as info:
        cfg.load_policy(bad)
    assert str(bad) in str(info.value) and names_key(str(info.value), "fever_c")


# ---------------------------------------------------------------- lanes


def test_duplicate_lane_names_are_refused(tmp_path):
    path = write(tmp_path, LANE + LANE.replace('direction = "in"', 'direction = "out"'))
    message = load_error(path)
    assert message.startswith(str(path))
    assert len(problems(message)) == 1
    assert "unique" in message
    assert re.search(r"\bin\b", problems(message)[0].split("unique", 1)[1])  # names the repeated lane


def test_duplicate_lane_names_error_names_the_lanes_key(tmp_path):
    path = write(tmp_path, LANE + LANE)
    assert names_key(load_error(path), "lanes")


# ---------------------------------------------------------------- time spans


GOOD_SPANS = ["08:00-20:00", "22:00-06:00", "00:00-24:00", "20:00-24:00", "7:30-9:45"]
BAD_SPANS = ["25:00-08:00", "08:00-20:60", "08:00", "8-20", "08:0-20:00", "08:00-20:00-21:00", "ab:cd-ef:gh", "", "08:00 to 20:00"]


@pytest.mark.parametrize("span", GOOD_SPANS)
def test_valid_time_spans_are_accepted(tmp_path, span):
    conf = cfg.load(write(tmp_path, f"[policy]\nnight = '{span}'\n[policy.categories.visitor]\nhours = '{span}'\n" + LANE))
    assert conf.policy.night == span and conf.policy.categories["visitor"].hours == span


@pytest.mark.parametrize("span", BAD_SPANS)
def test_invalid_category_hours_are_refused(tmp_path, span):
    message = load_error(write(tmp_path, f"[policy.categories.visitor]\nhours = '{span}'\n" + LANE))
    assert len(problems(message)) == 1
    assert names_key(message, "policy.categories.visitor.hours")
    assert "08:00-20:00" in message  # shows what a span looks like


@pytest.mark.parametrize("span", BAD_SPANS)
def test_invalid_night_span_is_refused(tmp_path, span):
    message = load_error(write(tmp_path, f"[policy]\nnight = '{span}'\n" + LANE))
    assert names_key(message, "policy.night")


def test_hour_24_with_minutes_is_refused(tmp_path):
    load_error(write(tmp_path, "[policy.categories.visitor]\nhours = '24:30-08:00'\n" + LANE))


def test_bad_value_is_quoted_once(tmp_path):
    message = load_error(write(tmp_path, "[policy.categories.visitor]\nhours = '25:00-08:00'\n" + LANE))
    assert message.count("'25:00-08:00'") == 1, message


# ---------------------------------------------------------------- paths


def test_relative_paths_are_resolved_against_the_config_folder(tmp_path, monkeypatch):
    etc = tmp_path / "etc"
    write(
        tmp_path,
        """
        [store]
        path = "data/gate.db"
        [keys]
        trusted = ["keys/central.pub", "/abs/other.pub"]
        signing = "keys/gate.key"
        [voice]
        cache_dir = "voice"
        [demo]
        script = "people.yaml"
        [[lanes]]
        name = "in"
        direction = "in"
        camera = { driver = "file", path = "clips" }
        [[lanes]]
        name = "out"
        direction = "out"
        camera = { driver = "v4l2", device = "video0" }
        """,
        "etc/gate.toml",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf = cfg.load(Path("..") / "etc" / "gate.toml")
    assert conf.store.path.resolve() == etc / "data" / "gate.db"
    assert [p.resolve() for p in conf.keys.trusted] == [etc / "keys" / "central.pub", Path("/abs/other.pub")]
    assert conf.keys.signing.resolve() == etc / "keys" / "gate.key"
    assert conf.voice.cache_dir.resolve() == etc / "voice"
    assert conf.demo.script.resolve() == etc / "people.yaml"
    assert conf.lane("in").camera.path.resolve() == etc / "clips"
    assert conf.lane("out").camera.device == "video0"  # a device name is not a file path of ours


def test_absolute_paths_are_kept(tmp_path):
    conf = cfg.load(write(tmp_path, '[store]\npath = "/var/lib/gate/gate.db"\n' + LANE))
    assert conf.store.path == Path("/var/lib/gate/gate.db")


def test_overrides_merge_into_the_file(tmp_path):
    path = write(tmp_path, "[policy]\nfever_c = 37.5\npassback = 'hard'\n" + LANE)
    conf = cfg.load(path, overrides={"policy": {"fever_c": 37.0}})
    assert conf.policy.fever_c == 37.0 and conf.policy.passback == "hard"
    with pytest.raises(ConfigError) as info:
        cfg.load(path, overrides={"policy": {"fever_c": "hot"}})
    assert names_key(str(info.value), "policy.fever_c")


# ---------------------------------------------------------------- CLI


def gate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gate.cli.main", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("name", ["demo.toml", "gate.example.toml"])
def test_cli_config_check_accepts_the_shipped_files(name):
    done = gate_cli("config", "check", str(CONFIG_DIR / name))
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout and done.stderr == ""


def test_cli_config_check_refuses_a_bad_file_on_stderr(tmp_path):
    path = write(tmp_path, "[policy]\nfever_c = 'hot'\n" + LANE)
    done = gate_cli("config", "check", str(path))
    assert done.returncode == 2
    assert str(path) in done.stderr and "policy.fever_c" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("text", [None, "[gate\n"], ids=["missing file", "invalid TOML"])
def test_cli_config_check_refuses_unreadable_files(tmp_path, text):
    path = tmp_path / "gate.toml"
    if text is not None:
        path.write_text(text)
    done = gate_cli("config", "check", str(path))
    assert done.returncode == 2
    assert str(path) in done.stderr and "Traceback" not in done.stderr
