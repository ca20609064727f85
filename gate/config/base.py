"""What every part of the configuration shares: the categories, the error an operator
reads, the strict base model (unknown keys are errors), and the span and zone checks."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from gate.core.schedules import parse_span

CATEGORIES = ("resident", "renter", "returnee", "visitor", "staff", "courier")


class ConfigError(Exception):
    """A configuration that cannot be used; the message is meant for the operator."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_span(value: str | None) -> str | None:
    """'HH:MM-HH:MM' (may wrap past midnight)."""
    if value is not None:
        parse_span(value)
    return value


def check_timezone(v: str) -> str:
    """An IANA zone name this machine knows (shared by every config that has one)."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(v)
    except Exception:
        raise ValueError(f"unknown time zone {v!r}, expected e.g. 'Asia/Shanghai'") from None
    return v
