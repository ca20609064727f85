"""A mosquitto started from the shipped docs/mosquitto.conf and docs/mosquitto.acl.

Only what cannot be shipped is replaced: the listener (a free loopback port, no
TLS), the password and ACL file paths, the persistence directory, and, when a
test asks, the persistence switch. Every other line is used as it is."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from tests.mqtt_broker import Broker, make_password_file

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_LOCAL = ("listener", "cafile", "certfile", "keyfile", "password_file", "acl_file", "persistence_location",
          "log_dest", "user", "pid_file")


def docs_lines(*, persistence: bool | None = None) -> list[str]:
    out = []
    for line in (DOCS / "mosquitto.conf").read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if not s or s.startswith("#") or s.split()[0] in _LOCAL:
            continue
        if s.split()[0] == "persistence" and persistence is not None:
            s = f"persistence {'true' if persistence else 'false'}"
        out.append(s)
    return out


def docs_broker(make: Callable[..., Broker], directory: Path, users: dict[str, str], *, persistence: bool | None = None,
                name: str = "docs", extra: list[str] | None = None, **kw: Any) -> Broker:
    """make: the broker_factory fixture (or Broker itself, started by the caller)."""
    directory.mkdir(parents=True, exist_ok=True)
    pw = make_password_file(directory / "passwd", users)
    acl = directory / "gate.acl"
    shutil.copy(DOCS / "mosquitto.acl", acl)
    (directory / "data").mkdir(exist_ok=True)
    lines = docs_lines(persistence=persistence) + [
        f"password_file {pw}", f"acl_file {acl}", f"persistence_location {directory / 'data'}/", *(extra or [])]
    return make(name=name, allow_anonymous=False, extra=lines, workdir=directory / "mosq", **kw)


def dynsec_plugin() -> str:
    """Where this machine's mosquitto package keeps the dynamic-security plugin."""
    import glob

    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob("/usr/lib/mosquitto_dynamic_security.so"))
    if not found:
        raise FileNotFoundError("mosquitto_dynamic_security.so not found: the mosquitto package ships it (apt install mosquitto)")
    return found[0]


def dynsec_broker(make: Callable[..., Broker], directory: Path, dynsec_json: Path, *, name: str = "dynsec",
                  persistence: bool | None = None, **kw: Any) -> Broker:
    """A mosquitto started from docs/mosquitto-dynsec.conf, with the users of ``dynsec_json``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    skip = (*_LOCAL, "plugin", "plugin_opt_config_file")
    lines = []
    for line in (DOCS / "mosquitto-dynsec.conf").read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if not s or s.startswith("#") or s.split()[0] in skip:
            continue
        if s.split()[0] == "persistence" and persistence is not None:
            s = f"persistence {'true' if persistence else 'false'}"
        lines.append(s)
    lines += [f"plugin {dynsec_plugin()}", f"plugin_opt_config_file {dynsec_json}",
              f"persistence_location {directory / 'data'}/"]
    return make(name=name, allow_anonymous=False, extra=lines, workdir=directory / "mosq", **kw)
