"""The [policy] section: what the lane decides by (fever line, waits, passback,
categories, rules, schedules, card sweep)."""
from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from gate.config.base import CATEGORIES, Strict, _check_span
from gate.core.schedules import BUILT_IN as BUILT_IN_SCHEDULES
from gate.core.schedules import Holidays, ScheduleEntry

# ---------------------------------------------------------------- policy


class RulePrompt(Strict):
    zh: str = Field(min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=300)


class RuleConfig(Strict):
    """A check the community writes itself (DRILLS.md, Rules): CEL expressions over
    the pass, the lane and the time; compiled when the policy loads."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    when: str | None = Field(None, max_length=2000)  # omitted: every pass
    require: str = Field(min_length=1, max_length=2000)
    prompt: RulePrompt
    # Which way it applies: a rule is about letting people in unless it says otherwise
    # (leaving is lenient on purpose: free egress).
    direction: Literal["in", "out", "both"] = "in"

    @field_validator("when", "require")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        from gate.core.rules import RuleError, compile_expression

        if v is not None:
            try:
                compile_expression(v)
            except RuleError as exc:
                raise ValueError(str(exc)) from None
        return v


class CardSweepPolicy(Strict):
    """A burst of unknown cards or forged passes on one lane (someone trying numbers)."""

    count: int = Field(5, ge=2)
    window_s: float = Field(60.0, gt=0)
    throttle_s: float = Field(2.0, ge=0)  # one credential answered per this, until the guard acknowledges


class CategoryPolicy(Strict):
    colour: str = "#9e9e9e"
    label_zh: str = ""
    label_en: str = ""
    refused: bool = False
    hours: str | None = None  # "08:00-20:00": entry allowed only then
    schedule: str | None = None  # a named weekly schedule (policy.schedules) entries must fall in

    @field_validator("hours")
    @classmethod
    def _span(cls, v: str | None) -> str | None:
        return _check_span(v)


DEFAULT_CATEGORIES: dict[str, dict[str, Any]] = {
    "resident": {"colour": "#2e7d32", "label_zh": "常住", "label_en": "resident"},
    "renter": {"colour": "#1565c0", "label_zh": "租住", "label_en": "renter"},
    "returnee": {"colour": "#c62828", "label_zh": "返京", "label_en": "returnee"},
    "visitor": {"colour": "#ec407a", "label_zh": "访客", "label_en": "visitor"},
    "staff": {"colour": "#6a1b9a", "label_zh": "工作人员", "label_en": "staff"},
    "courier": {"colour": "#ef6c00", "label_zh": "快递", "label_en": "courier", "refused": True},
}


class PolicyConfig(Strict):
    version: int = 0
    fever_c: float = Field(37.3, ge=35.0, le=42.0)
    temperature_wait_s: float = Field(10.0, gt=0)
    temperature_fresh_s: float = Field(5.0, ge=0)
    retest_window_s: float = Field(60.0, gt=0)
    human_min_c: float = 34.0
    human_max_c: float = 43.0
    admit_unlisted: bool = True
    passback: Literal["soft", "hard", "off"] = "soft"
    passback_reset_h: float = Field(12.0, gt=0)
    challenge_rate: float = Field(0.0, ge=0.0, le=1.0)
    pcr_within_h: float | None = Field(None, gt=0)
    health_codes: list[Literal["green", "yellow", "red"]] = ["green"]
    night: str = "22:00-06:00"
    reminder_after_s: float = Field(5.0, gt=0)
    challenge_timeout_s: float = Field(300.0, gt=0)  # an unanswered guard challenge ends as refused
    dynamic_skew_steps: int = Field(1, ge=0, le=10)  # 30-s steps a phone's clock may be off
    # A printed (static) QR pass of a holder who has a door card needs the card swiped too.
    static_qr_needs_card: bool = False
    # A pass refused for fever stays refused (fever_hold) until the guard acknowledges
    # the alarm or this many minutes pass: a lower reading a minute later is no cure.
    fever_hold_min: float = Field(60.0, ge=0)
    # A gate of a site that has heard nothing from it for this long still decides on
    # what it knows, and marks its entry decisions `presence: stale`.
    presence_stale_s: float = Field(60.0, gt=0)
    card_sweep: CardSweepPolicy = CardSweepPolicy()
    rules: list[RuleConfig] = Field(default_factory=list)
    # Named weekly schedules (gate/core/schedules.py) for categories, passes and lanes,
    # and the dates on which another schedule applies.
    schedules: dict[str, list[ScheduleEntry]] = Field(default_factory=dict)
    holidays: Holidays = Holidays()
    categories: dict[str, CategoryPolicy] = Field(default_factory=dict)

    @field_validator("schedules")
    @classmethod
    def _schedule_names(cls, v: dict[str, list[ScheduleEntry]]) -> dict[str, list[ScheduleEntry]]:
        for name in v:
            if name in BUILT_IN_SCHEDULES:
                raise ValueError(f"schedule name {name!r} is built in (closed: nobody, open: all day); choose another")
        return v

    @model_validator(mode="after")
    def _schedules_exist(self) -> "PolicyConfig":
        known = set(self.schedules) | set(BUILT_IN_SCHEDULES)
        wanted = [(f"categories.{n}.schedule", c.schedule) for n, c in self.categories.items() if c.schedule]
        wanted.append(("holidays.use", self.holidays.use))
        for where, name in wanted:
            if name not in known:
                raise ValueError(f"{where}: no schedule named {name!r} (known: {', '.join(sorted(known))})")
        return self

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, v: list[RuleConfig]) -> list[RuleConfig]:
        names = [r.name for r in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names repeat: {', '.join(dupes)}")
        return v

    @field_validator("night")
    @classmethod
    def _night(cls, v: str) -> str:
        return _check_span(v)  # type: ignore[return-value]

    @model_validator(mode="before")
    @classmethod
    def _merge_categories(cls, data: Any) -> Any:
        # A config names only the categories (and fields) it changes.
        if not isinstance(data, dict):
            return data
        given = data.get("categories") or {}
        if not isinstance(given, dict):
            return data
        merged = copy.deepcopy(DEFAULT_CATEGORIES)
        for name, fields in given.items():
            if name not in CATEGORIES:
                merged[name] = fields  # reported at policy.categories.<name> by _known
            elif isinstance(fields, dict):
                merged[name] = {**merged[name], **fields}
            else:
                merged[name] = fields
        return {**data, "categories": merged}

    @field_validator("categories", mode="wrap")
    @classmethod
    def _known(cls, value: Any, handler: Any) -> Any:
        from pydantic_core import InitErrorDetails, PydanticCustomError

        if isinstance(value, dict):
            unknown = [k for k in value if k not in CATEGORIES]
            if unknown:
                raise ValidationError.from_exception_data(
                    "categories",
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "unknown_category", "unknown category; expected one of {known}", {"known": ", ".join(CATEGORIES)}
                            ),
                            loc=(k,),
                            input=k,
                        )
                        for k in unknown
                    ],
                )
        return handler(value)

    def category(self, name: str) -> CategoryPolicy:
        return self.categories.get(name) or CategoryPolicy()
