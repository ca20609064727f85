"""MQTT payloads: JSON, checked against the schemas in sync/schemas/, and for what
central sends (passes, snapshots, policy, commands) signed with Ed25519 over the
canonical JSON of the payload without its "sig". A payload is trusted for its
signature, never for the topic it came on."""
from __future__ import annotations

import base64
import json
import operator
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import fastjsonschema
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.core.tokens import KeyRing, key_id
from gate.core.records import PassRecord
from gate.store.database import Tombstone

KINDS = ("event", "status", "report", "passes", "snapshot_request", "snapshot_chunk", "policy", "cmd", "keylist",
         "gatekeys", "presence", "presence_request", "receipt")
SIGNED = ("passes", "snapshot_chunk", "policy", "cmd", "keylist", "gatekeys", "presence", "receipt")
MAX_PAYLOAD = 8 * 1024 * 1024  # a snapshot chunk of 20k passes compresses to well under this
# What a gate sends is small: an event is a few hundred bytes, a report a few KB
# (its card lists grow with the day's unknown cards). Bigger is refused unread.
MAX_BYTES = {"event": 32 * 1024, "status": 64 * 1024, "report": 1024 * 1024, "snapshot_request": 4096, "presence_request": 4096}


class PayloadError(Exception):
    """Why a payload was refused: reason is one of too_large | malformed | schema | forged."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@lru_cache(maxsize=None)
def schema(kind: str) -> dict[str, Any]:
    text = resources.files("sync").joinpath("schemas", f"{kind}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def _validator(kind: str) -> Any:
    # fastjsonschema compiles the schema to Python: a 10,000-change batch validates
    # in ~0.1 s here against ~2.4 s with the interpreting jsonschema package.
    body = {k: v for k, v in schema(kind).items() if k != "$schema"}
    return fastjsonschema.compile(body)


def canonical(obj: dict[str, Any]) -> bytes:
    body = {k: v for k, v in obj.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(obj: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "sig"}
    out["kid"] = key_id(key.public_key())
    out["sig"] = base64.urlsafe_b64encode(key.sign(canonical(out))).rstrip(b"=").decode("ascii")
    return out


def decode(raw: bytes, kind: str, keyring: KeyRing | None = None) -> dict[str, Any]:
    """Parse, check the schema and, for signed kinds, the signature. Raises PayloadError."""
    limit = MAX_BYTES.get(kind, MAX_PAYLOAD)
    if len(raw) > limit:
        raise PayloadError("too_large", f"{len(raw)} bytes is more than {limit} for {kind}")
    try:
        # orjson, unlike json.loads, refuses what cannot be stored or sent on as
        # UTF-8: invalid UTF-8, lone surrogates ("\ud800"), NaN and Infinity.
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("malformed", f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise PayloadError("malformed", "not a JSON object")
    try:
        _validator(kind)(obj)
    except fastjsonschema.JsonSchemaException as e:
        raise PayloadError("schema", f"{kind}: {e.message[:200]}") from None
    if kind in SIGNED:
        if keyring is None:
            raise PayloadError("forged", "no key to check the signature with")
        verify(obj, keyring)
    return obj


def verify(obj: dict[str, Any], keyring: KeyRing) -> None:
    kid, sig = obj.get("kid"), obj.get("sig")
    if not isinstance(kid, str) or not isinstance(sig, str):
        raise PayloadError("forged", "unsigned")
    try:
        raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except ValueError:
        raise PayloadError("forged", "signature is not base64url") from None
    key = keyring.key(kid)
    if key is None:
        raise PayloadError("forged", f"signed by unknown key {kid}")
    try:
        key.verify(raw, canonical(obj))
    except InvalidSignature:
        raise PayloadError("forged", "bad signature") from None


# ---------------------------------------------------------------- pass records


def _iso(v: datetime | None) -> str | None:
    return None if v is None else v.isoformat()


def _dt(v: str | None) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v)


def pass_to_wire(rec: PassRecord, card: str | None = None) -> dict[str, Any]:
    return {
        "id": rec.id,
        "holder": rec.holder,
        "unit": rec.unit,
        "category": rec.category,
        "phone_last4": rec.phone_last4,
        "card": card,
        "valid_from": _iso(rec.valid_from),
        "valid_until": _iso(rec.valid_until),
        "observation_until": _iso(rec.observation_until),
        "pcr_at": _iso(rec.pcr_at),
        "health_code": rec.health_code,
        **({"attributes": rec.attributes} if rec.attributes else {}),
        "revoked": rec.revoked,
    }


@lru_cache(maxsize=4096)
def _ts(v: str) -> float:
    # Cached: a snapshot repeats the same few validity dates a million times.
    return datetime.fromisoformat(v).timestamp()


_WIRE_FIELDS = operator.itemgetter(
    "id", "holder", "unit", "category", "phone_last4", "valid_from", "valid_until",
    "observation_until", "pcr_at", "health_code", "revoked",
)


def _attributes(d: dict[str, Any]) -> str | None:
    """A wire record's attributes as the pass table keeps them (canonical JSON, or None).
    A batch's are checked by its schema; a snapshot line is not, so a line whose
    attributes are not an object is unusable (TypeError: the snapshot is dropped)."""
    a = d.get("attributes")
    if not a:
        return None
    if not isinstance(a, dict):
        raise TypeError(f"pass {d.get('id')!r}: attributes are not an object")
    return json.dumps(a, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def pass_row(d: dict[str, Any], now: float) -> tuple[Any, ...]:
    """A wire pass record straight to a passes-table row (Store.PASS_COLUMNS order):
    the fast path for snapshots of a million passes (central sends every field; a
    record without ``attributes`` has none)."""
    try:
        pid, holder, unit, cat, phone, vf, vu, ou, pcr, hc, rev = _WIRE_FIELDS(d)
    except KeyError:
        g = d.get
        pid, holder, unit, cat, phone = d["id"], g("holder"), g("unit"), d["category"], g("phone_last4")
        vf, vu, ou, pcr, hc, rev = g("valid_from"), g("valid_until"), g("observation_until"), g("pcr_at"), g("health_code"), g("revoked")
    return (
        pid, holder, unit, cat, phone,
        _ts(vf) if vf else None, _ts(vu) if vu else None, _ts(ou) if ou else None, _ts(pcr) if pcr else None,
        hc, 1 if rev else 0, now, _attributes(d) if "attributes" in d else None,
    )


def pass_from_wire(d: dict[str, Any]) -> dict[str, Any]:
    """A wire pass record to a row for Store.upsert_passes (times as datetimes)."""
    return {
        "id": d["id"],
        "holder": d.get("holder"),
        "unit": d.get("unit"),
        "category": d["category"],
        "phone_last4": d.get("phone_last4"),
        "valid_from": _dt(d.get("valid_from")),
        "valid_until": _dt(d.get("valid_until")),
        "observation_until": _dt(d.get("observation_until")),
        "pcr_at": _dt(d.get("pcr_at")),
        "health_code": d.get("health_code"),
        "revoked": bool(d.get("revoked")),
        # central's record is whole: without the field the pass has no attributes (an
        # older central's batch too), and the gate's are set to exactly these
        "attributes": _attributes(d),
    }


def tombstone_from_wire(d: dict[str, Any]) -> Tombstone:
    """A removed pass, from a batch's delete change ({"op": "delete", "id", "category",
    "until"}) or a snapshot's tombstone line ({"id", "category", "removed": true,
    "revoked": true, "valid_until"})."""
    until = d.get("until", d.get("valid_until"))
    return Tombstone(d["id"], d.get("category"), _dt(until) if until else None)
