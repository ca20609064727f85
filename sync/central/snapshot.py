"""Roster snapshots: the whole pass table as zlib-compressed JSON-lines chunks with
one sha256, built for a gate and read back (checked) by a test or a tool."""
from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import dataclass
from typing import Any

from sync.codec import PayloadError


@dataclass(frozen=True)
class Snapshot:
    version: int
    sha256: str
    datas: tuple[str, ...]  # base64 of zlib-compressed JSON lines
    passes: int


def build_snapshot(version: int, lines: list[str], chunk: int, level: int = 3) -> Snapshot:
    """Chunks of `chunk` passes: each is zlib(JSON lines, '\\n' after each); sha256 over the
    concatenation of all decompressed chunks (= the whole JSON-lines table)."""
    h = hashlib.sha256()
    datas = []
    for i in range(0, max(len(lines), 1), chunk):
        part = lines[i : i + chunk]
        raw = ("\n".join(part) + "\n").encode("utf-8") if part else b""
        h.update(raw)
        datas.append(base64.b64encode(zlib.compress(raw, level)).decode("ascii"))
    return Snapshot(version, h.hexdigest(), tuple(datas), len(lines))


def read_snapshot(chunks: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """Reassemble verified chunks (any order) into (version, wire pass records); checks
    completeness, one version/request and the sha256. Raises PayloadError."""
    if not chunks:
        raise PayloadError("malformed", "no chunks")
    count = chunks[0]["count"]
    by_index = {c["index"]: c for c in chunks}
    if sorted(by_index) != list(range(count)):
        raise PayloadError("malformed", f"have chunks {sorted(by_index)[:10]}..., need 0..{count - 1}")
    keys = {(c["request_id"], c["version"], c["sha256"], c["count"]) for c in chunks}
    if len(keys) != 1:
        raise PayloadError("malformed", "chunks of different snapshots")
    h = hashlib.sha256()
    out: list[dict[str, Any]] = []
    for i in range(count):
        try:
            raw = zlib.decompress(base64.b64decode(by_index[i]["data"], validate=True))
        except (ValueError, zlib.error) as exc:
            raise PayloadError("malformed", f"chunk {i}: {exc}") from None
        h.update(raw)
        text = raw.decode("utf-8").strip("\n")
        if text:  # JSON escapes newlines inside strings, so a raw newline only ends a record
            try:
                out.extend(json.loads("[" + text.replace("\n", ",") + "]"))
            except json.JSONDecodeError as exc:
                raise PayloadError("malformed", f"chunk {i}: {exc}") from None
    if h.hexdigest() != chunks[0]["sha256"]:
        raise PayloadError("forged", "snapshot sha256 mismatch")
    return chunks[0]["version"], out
