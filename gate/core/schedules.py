"""Time profiles: named weekly schedules (days of the week, several spans a day)
and a holiday calendar, usable per category, per pass and per lane. An entry that
a schedule does not allow is refused `outside_hours`.

```toml
[[policy.schedules.office]]            # one entry per group of days
days = ["mon", "tue", "wed", "thu", "fri"]
hours = ["07:30-12:00", "13:00-19:00"]
[[policy.schedules.office]]
days = ["sat"]
hours = ["09:00-12:00"]

[policy.holidays]                      # on these dates, schedules follow `use`
dates = ["2026-10-01", "2026-10-02"]
use = "closed"                         # a schedule's name; "closed" (nobody) or "open" (all day)
```
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Two names every policy knows: nobody, and everybody all day.
BUILT_IN = ("closed", "open")


def parse_span(value: str) -> tuple[time, time]:
    """'HH:MM-HH:MM' as (start, end); may wrap past midnight; '24:00' ends a day."""
    try:
        a, b = value.split("-")
        out = []
        for part in (a, b):
            h, m = part.split(":")
            if not (1 <= len(h) <= 2 and len(m) == 2 and h.isdigit() and m.isdigit()):
                raise ValueError
            if not (0 <= int(h) <= 24 and 0 <= int(m) < 60) or (int(h) == 24 and int(m) != 0):
                raise ValueError
            out.append(time(23, 59, 59, 999999) if int(h) == 24 else time(int(h), int(m)))
    except ValueError:
        raise ValueError("expected a time span like '08:00-20:00'") from None
    return out[0], out[1]


def in_span(span: str, moment: datetime) -> bool:
    """Is the local time of day inside the span? Spans may wrap past midnight."""
    start, end = parse_span(span)
    t = moment.time()
    if start <= end:
        return start <= t < end
    return t >= start or t < end


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleEntry(_Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    hours: list[str] = Field(min_length=1)

    @field_validator("hours")
    @classmethod
    def _spans(cls, v: list[str]) -> list[str]:
        for span in v:
            try:
                parse_span(span)
            except ValueError as exc:
                raise ValueError(f"{exc}, got {span!r}") from None
        return v


class Holidays(_Strict):
    dates: list[date] = []
    use: str = "closed"  # the schedule that applies on these dates, whatever a rule names


Schedules = dict[str, list[ScheduleEntry]]


def allows(schedules: Schedules, holidays: Holidays, name: str, now: datetime) -> bool:
    """Does schedule `name` allow an entry at local time `now`? An unknown name
    allows nothing: a pass naming a schedule that no longer exists is refused."""
    if now.date() in holidays.dates:
        name = holidays.use
    if name == "open":
        return True
    entries = schedules.get(name)
    if entries is None:
        return False
    day = DAYS[now.weekday()]
    # A span that wraps past midnight belongs to the day it starts on.
    yesterday = DAYS[(now.weekday() - 1) % 7]
    for entry in entries:
        for span in entry.hours:
            start, end = parse_span(span)
            t = now.time()
            if start <= end:
                if day in entry.days and start <= t < end:
                    return True
            elif (day in entry.days and t >= start) or (yesterday in entry.days and t < end):
                return True
    return False


def next_change(schedules: Schedules, holidays: Holidays, names: list[str], now: datetime) -> datetime | None:
    """The next moment after `now` at which any of these schedules may start or stop
    allowing (a span's start or end, or midnight, when the day and holidays change),
    within the coming week; None when none of them has a span."""
    spans = {span for n in names for e in schedules.get(n, []) for span in e.hours}
    spans |= {span for e in schedules.get(holidays.use, []) for span in e.hours}
    if not spans:
        return None
    tz = now.tzinfo
    candidates = []
    for d in range(-1, 8):
        day = now.date() + timedelta(days=d)
        candidates.append(datetime.combine(day, time(0), tz))
        for span in spans:
            for t in parse_span(span):
                candidates.append(datetime.combine(day, t, tz))
    later = [c for c in candidates if c > now]
    return min(later) if later else None
