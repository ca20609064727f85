"""Secret files the gate reads (private key, PIN, passwords) that others can read too.

Only a warning (log at start, a `gate doctor` row): a Pi set up by hand often has a
0644 file, and refusing to start would shut the door over a file mode.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from gate.config import Config


@dataclass(frozen=True)
class Loose:
    key: str  # the config key naming the file, e.g. "keys.signing"
    path: Path
    mode: int

    def __str__(self) -> str:
        who = " and ".join(w for w, bit in (("its group", stat.S_IRGRP), ("everyone", stat.S_IROTH)) if self.mode & bit)
        return (f"{self.key} {self.path} is readable by {who} (mode {stat.filemode(self.mode)}): "
                f"chmod 600 {self.path} (owned by the gate's user)")


def named(config: Config) -> list[tuple[str, Path]]:
    out = [("keys.signing", config.keys.signing), ("guard.pin_file", config.guard.pin_file),
           ("guard.password_file", config.guard.password_file), ("guard.guards_file", config.guard.guards_file)]
    if config.guard.api:  # the HTTP API's token hashes (gate/desk/api_tokens.py)
        out.append(("guard.tokens_file", config.tokens_path()))
    if config.sync is not None:
        out += [("sync.password_file", config.sync.password_file), ("sync.key_file", config.sync.key_file)]
    return [(k, Path(p)) for k, p in out if p is not None]


def loose(config: Config) -> list[Loose]:
    """Each named secret file that group or others may read (missing files are for others to report)."""
    found = []
    for key, path in named(config):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            found.append(Loose(key, path, mode))
    return found
