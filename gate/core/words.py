"""Every word the gate shows or says, from one file: gate/core/words.toml, Chinese and
English side by side (the guard page, the voice prompts, the LCD, the daily report and
the printed pass cards). Loaded once; a malformed entry is an error that names the file,
the section and the key."""
from __future__ import annotations

import tomllib
from importlib.resources import files
from typing import Mapping

Pair = tuple[str, str]  # (zh, en)
SOURCE = "gate/core/words.toml"


class WordsError(ValueError):
    pass


def load(text: str, source: str = SOURCE) -> dict[str, dict[str, Pair]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WordsError(f"{source}: {exc}") from exc
    out: dict[str, dict[str, Pair]] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise WordsError(f"{source}: [{section}] must be a table of key = [\"中文\", \"English\"]")
        for key, value in table.items():
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) and v for v in value)):
                raise WordsError(f"{source}: [{section}] {key}: expected [\"中文\", \"English\"], got {value!r}")
        out[section] = {key: (value[0], value[1]) for key, value in table.items()}
    return out


WORDS: Mapping[str, Mapping[str, Pair]] = load(files("gate.core").joinpath("words.toml").read_text(encoding="utf-8"))

DECISIONS = WORDS["decisions"]
REASONS = WORDS["reasons"]
ALARMS = WORDS["alarms"]
ALARM_ADVICE = WORDS["alarm_advice"]
DEVICES = WORDS["devices"]
CREDENTIALS = WORDS["credentials"]
CATEGORIES = WORDS["categories"]
PROMPTS = WORDS["prompts"]
UI = WORDS["ui"]
LCD = WORDS["lcd"]
LCD_ALARMS = WORDS["lcd_alarms"]
REPORT = WORDS["report"]
CARD = WORDS["card"]
CLI = WORDS["cli"]
CONSOLE = WORDS["console"]
CONSOLE_EVENTS = WORDS["console_events"]
CONSOLE_ROSTER = WORDS["console_roster"]
CONSOLE_REPORTS = WORDS["console_reports"]
CONSOLE_POLICY = WORDS["console_policy"]
CONSOLE_MAP = WORDS["console_map"]


def both(table: Mapping[str, Pair], key: str, **fill: object) -> str:
    """"中文 English" for printed pages that carry both languages; an unknown key is itself."""
    zh, en = table.get(key, ("", key))
    if fill:
        zh, en = zh.format(**fill), en.format(**fill)
    return f"{zh} {en}".strip() if zh else en


def reason_label(code: str) -> str:
    return both(REASONS, code)


def alarm_label(code: str) -> str:
    return both(ALARMS, code)
