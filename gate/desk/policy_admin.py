"""The policy as a versioned document: show it as a file to edit, check a file, see
what a file changes, apply it here with an audit trail.

The policy in force is the configuration's ``[policy]``, unless a newer version was
stored in the store's meta (``policy_json`` / ``policy_version``), by central over
sync or by ``gate policy apply``; the daemon takes the stored one at start when its
version is higher than the config's (GateApp._restore), and so does everything here.

Applying records, in one transaction: the policy in meta, a row in ``policy_audit``
(who, when, the file and its SHA-256, the diff) and an ``admin`` event
(``policy_apply``) that goes upstream.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gate.config import CATEGORIES, PolicyConfig


class PolicyAdminError(Exception):
    pass


@dataclass(frozen=True)
class InForce:
    policy: PolicyConfig
    source: str  # "config" or "store"
    applied_at: str | None = None
    by: str | None = None


def in_force(config_policy: PolicyConfig, meta: Any) -> InForce:
    """The policy the daemon would use: ``meta(key) -> str | None`` reads store meta."""
    version = int(meta("policy_version") or 0)
    body = meta("policy_json")
    if body and version > config_policy.version:
        try:
            policy = PolicyConfig.model_validate({**json.loads(body), "version": version})
        except Exception:
            return InForce(config_policy, "config")  # the daemon falls back the same way
        return InForce(policy, "store", meta("policy_applied_at"), meta("policy_by"))
    return InForce(config_policy, "config")


def flatten(policy: PolicyConfig) -> dict[str, Any]:
    """Dotted keys to values, without the version: what a diff compares."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k in sorted(value):
                walk(f"{prefix}.{k}" if prefix else str(k), value[k])
        else:
            out[prefix] = value

    walk("", policy.model_dump(mode="json", exclude={"version"}))
    return out


def diff(old: PolicyConfig, new: PolicyConfig) -> list[dict[str, Any]]:
    a, b = flatten(old), flatten(new)
    return [{"key": k, "old": a.get(k), "new": b.get(k)} for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def _show(v: Any) -> str:
    if v is None:
        return "(off)"
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def diff_lines(changes: list[dict[str, Any]]) -> list[str]:
    return [f"{c['key']}: {_show(c['old'])} -> {_show(c['new'])}" for c in changes]


def summary(policy: PolicyConfig) -> list[str]:
    """What a person checks in a policy, one line each."""
    p = policy
    lines = [
        f"version {p.version}",
        f"fever line {p.fever_c:g} °C; retest within {p.retest_window_s:g} s; temperature wait {p.temperature_wait_s:g} s",
        "nucleic-acid test: " + (f"needed within {p.pcr_within_h:g} h" if p.pcr_within_h is not None else "not required"),
        f"health codes admitted: {', '.join(p.health_codes) or '(none)'}",
        f"passback: {p.passback} (reset after {p.passback_reset_h:g} h); holder checks: {p.challenge_rate:.0%} of entries",
        f"night: {p.night}; passes not on the list: {'admitted on their signature' if p.admit_unlisted else 'refused'}",
    ]
    for name in CATEGORIES:
        c = p.category(name)
        rule = "refused" if c.refused else (f"hours {c.hours}" if c.hours else "any time")
        lines.append(f"  {name:<9} {c.label_zh or '-':<5} {c.colour}  {rule}")
    return lines


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(policy: PolicyConfig) -> str:
    """The policy as a TOML document that `gate policy check` reads back to the same policy."""
    data = policy.model_dump(mode="json")
    cats = data.pop("categories")
    out = ["# gate policy document: edit, then `gate policy check FILE`, `gate policy replay FILE --since ...`,",
           "# and `gate policy apply FILE --by NAME`.", "[policy]"]
    # Plain keys first: in TOML, whatever follows a [table] header belongs to it.
    tables = {k: data.pop(k) for k in list(data) if isinstance(data[k], dict)}
    arrays = {k: data.pop(k) for k in list(data) if isinstance(data[k], list) and data[k] and isinstance(data[k][0], dict)}
    for key, value in data.items():
        if value is None:
            out.append(f"# {key} = ...  (off)")
        else:
            out.append(f"{key} = {_toml_value(value)}")
    for key, fields in tables.items():
        out += ["", f"[policy.{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in fields.items() if v is not None]
    for key, items in arrays.items():
        for item in items:
            out += ["", f"[[policy.{key}]]"] + [f"{k} = {_toml_value(v)}" for k, v in item.items() if v is not None]
    for name, fields in cats.items():
        out.append("")
        out.append(f"[policy.categories.{name}]")
        for key, value in fields.items():
            if value is not None:
                out.append(f"{key} = {_toml_value(value)}")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Applied:
    version: int
    previous_version: int
    changes: list[dict[str, Any]]
    event_id: str


def apply(
    store: Any,
    config_policy: PolicyConfig,
    new: PolicyConfig,
    *,
    by: str,
    source: str,
    file_bytes: bytes,
    note: str = "",
    version: int | None = None,
) -> Applied:
    """Put ``new`` in force on this gate (from the next start of the daemon): store it
    in meta with a version above the one in force, with its audit row and event."""
    from gate.core.records import AdminRecord

    if not by.strip():
        raise PolicyAdminError("--by: say who is applying the policy")
    current = in_force(config_policy, store.get_meta)
    changes = diff(current.policy, new)
    if not changes:
        raise PolicyAdminError(f"{source}: the same as the policy in force (version {current.policy.version}); nothing applied")
    prev = current.policy.version
    if version is None:
        version = new.version if new.version > prev else prev + 1
    elif version <= prev:
        raise PolicyAdminError(f"--version {version}: must be above the version in force ({prev})")
    body = new.model_dump(mode="json", exclude={"version"})
    stored = PolicyConfig.model_validate({**body, "version": version})
    if diff(stored, new):  # what the daemon will read back is what was checked
        raise PolicyAdminError(f"{source}: the policy does not survive storing ({diff_lines(diff(stored, new))})")
    now = time.time()
    body_text = json.dumps(body, ensure_ascii=False, sort_keys=True)
    seen_version = store.get_meta("policy_version")

    def also(c: Any) -> None:
        row = c.execute("SELECT value FROM meta WHERE key = 'policy_version'").fetchone()
        if (row[0] if row else None) != seen_version:  # central (or another desk) stored one meanwhile
            raise PolicyAdminError("the policy in force changed while applying; check the diff again and retry")
        c.execute(
            "INSERT INTO policy_audit(at, by, note, version, previous_version, source, sha256, policy_json, diff_json)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (now, by, note, version, prev, source, hashlib.sha256(file_bytes).hexdigest(), body_text,
             json.dumps(changes, ensure_ascii=False)),
        )
        for key, value in (("policy_json", body_text), ("policy_version", str(version)),
                           ("policy_applied_at", str(now)), ("policy_by", by)):
            c.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    detail = f"v{prev} -> v{version}: " + "; ".join(diff_lines(changes))
    rec = AdminRecord(
        at=datetime.fromtimestamp(now, timezone.utc).astimezone(store.tz), lane="", action="policy_apply",
        who=by, reason=note, detail=detail[:2000],
    )
    stored_event = store.record(rec, also=also)
    return Applied(version, prev, changes, stored_event.id)


def history(store: Any, limit: int = 50) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT at, by, note, version, previous_version, source, sha256, diff_json FROM policy_audit ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        {
            "at": datetime.fromtimestamp(r[0], timezone.utc).astimezone(store.tz).isoformat(timespec="seconds"),
            "by": r[1], "note": r[2], "version": r[3], "previous_version": r[4], "source": r[5], "sha256": r[6],
            "changes": json.loads(r[7] or "[]"),
        }
        for r in rows
    ]


def load_file(path: str | Path) -> tuple[PolicyConfig, bytes]:
    from gate.config import load_policy

    p = Path(path)
    policy = load_policy(p)  # ConfigError with the file, key path and what was expected
    return policy, p.read_bytes()
