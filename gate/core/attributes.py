"""A pass's attributes: the free, named facts a community's rules read
(`pass.attributes.vaccine_doses >= 2`), and the bounds every end keeps them within.

They come from the roster's columns the config names (`[roster] attributes`, at a gate
or at central), travel in central's pass batches and snapshots, and are kept in the
pass table. Whatever their way in, they are a flat JSON object of at most
``MAX_KEYS`` names (``NAME``: a letter or _ then letters, digits, _; at most 64) to
scalar values: a whole number of at most 15 digits, a finite decimal, true/false, or
text of at most ``MAX_TEXT`` characters. Nothing nested, no nulls (a blank cell is
left out).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_KEYS = 32
MAX_TEXT = 200
MAX_NUMBER = 10**15  # what a roster cell's 15 digits can say; beyond, a float loses digits
_NAME = re.compile(NAME)


def check(attributes: Any) -> dict[str, Any] | None:
    """The attributes as kept (None for none), or ValueError saying which one is wrong.
    Accepts a dict or its JSON text (the pass table's form)."""
    if attributes is None or attributes == "" or attributes == {}:
        return None
    if isinstance(attributes, str):
        try:
            attributes = json.loads(attributes)
        except ValueError:
            raise ValueError("attributes are not JSON") from None
    if not isinstance(attributes, dict):
        raise ValueError(f"attributes must be an object of names to values, not {type(attributes).__name__}")
    if len(attributes) > MAX_KEYS:
        raise ValueError(f"{len(attributes)} attributes is more than {MAX_KEYS}")
    for name, v in attributes.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"attribute name {name!r} must be a letter or _ then letters, digits or _ (at most 64)")
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            if abs(v) >= MAX_NUMBER:
                raise ValueError(f"attribute {name!r}: {v} has more than 15 digits")
        elif isinstance(v, float):
            if not math.isfinite(v) or abs(v) >= MAX_NUMBER:
                raise ValueError(f"attribute {name!r}: {v} is not a number a rule can compare")
        elif isinstance(v, str):
            if len(v) > MAX_TEXT:
                raise ValueError(f"attribute {name!r} is longer than {MAX_TEXT} characters ({len(v)})")
        else:
            kind = "a list" if isinstance(v, list) else "an object" if isinstance(v, dict) else "null" if v is None \
                else type(v).__name__
            raise ValueError(f"attribute {name!r} must be a number, yes/no or text, not {kind}")
    return dict(attributes) or None


def text(attributes: dict[str, Any] | None) -> str | None:
    """Canonical JSON (one text per set of attributes), or None for none."""
    return json.dumps(attributes, ensure_ascii=False, sort_keys=True, separators=(",", ":")) if attributes else None
