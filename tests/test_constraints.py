"""config/constraints.txt pins what setup.cfg asks for, and config/pi-constraints.txt
fits with it (scripts/setup --pi): a dependency added without a refresh, or a pin
that left setup.cfg's range, fails here rather than as an unpinned CI install."""
from __future__ import annotations

import configparser
import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lines(name: str) -> list[str]:
    text = (ROOT / "config" / name).read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in _lines("constraints.txt"):
        name, sep, version = line.partition("==")
        assert sep, f"config/constraints.txt: {line!r} is not NAME==VERSION"
        pins[_norm(name)] = Version(version)
    return pins


def _setup_requirements() -> list[tuple[str, Requirement]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    out = [("install_requires", Requirement(r)) for r in cfg["options"]["install_requires"].split("\n") if r.strip()]
    for extra, text in cfg["options.extras_require"].items():
        for line in text.split("\n"):
            if line.strip() and not line.strip().startswith("#"):
                out.append((f"extra {extra}", Requirement(line)))
    return out


def test_every_requirement_of_setup_cfg_is_pinned_within_its_range() -> None:
    pins = _pins()
    wrong = []
    for where, req in _setup_requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue  # lgpio, picamera2: only on the Pi, from its apt
        pin = pins.get(_norm(req.name))
        if pin is None:
            wrong.append(f"{req} ({where}) is not pinned")
        elif pin not in req.specifier:
            wrong.append(f"{req} ({where}) but config/constraints.txt pins {pin}")
    assert not wrong, "run scripts/refresh-constraints: " + "; ".join(wrong)


# What pip takes on a Pi under config/pi-constraints.txt: the newest numpy 1.x and
# the newest OpenCV before 4.12 (scripts/check-arm64 installs exactly these).
PI_PICKS = {"numpy": Version("1.26.4"), "opencv-python-headless": Version("4.11.0.86")}


def test_the_pi_bounds_fit_every_other_pin() -> None:
    # setup --pi drops the pins of what pi-constraints.txt names and adds its bounds:
    # every other pinned package must accept what pip then takes for those.
    bounds = {_norm(Requirement(line).name): Requirement(line).specifier for line in _lines("pi-constraints.txt")}
    assert bounds.keys() == PI_PICKS.keys() and bounds.keys() <= _pins().keys()
    assert all(PI_PICKS[n] in bounds[n] for n in bounds)
    clashes = []
    for name in sorted(_pins().keys() - bounds.keys()):
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not in this venv: an extra this bench does not carry
        for req in map(Requirement, requires):
            if _norm(req.name) in PI_PICKS and (req.marker is None or req.marker.evaluate({"extra": ""})):
                if PI_PICKS[_norm(req.name)] not in req.specifier:
                    clashes.append(f"{name} requires {req}: a Pi gets {PI_PICKS[_norm(req.name)]}")
    assert not clashes, clashes
