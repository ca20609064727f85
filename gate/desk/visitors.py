"""Visitor registration (访客登记): the guard enters a visitor's name, the last four
digits of their ID card and phone, the unit they visit (required) and how long the
visit lasts (2 h, half a day, today: ``[visitors] default_length`` preselects one); the
gate issues a pink visitor pass for that long, signed with this gate's key, puts it in
the local pass table and records the registration as an event (which goes upstream:
central keeps it in its visitor register, sync/central/visitors.py).

The pass is an ordinary pass token (gate.core.tokens), so the visitor enters like anyone
else: the QR shown on the guard's screen, photographed or printed, held to the
camera. The gate trusts its own signing key as a *gate key* (visitor passes of a day at
most, gate.core.tokens.gate_key_may_sign): the desk adds the key's public half to the
lanes' key ring when it is created. The site's other gates trust it once central vouches
for it (its signed list of the site's gate keys, sync/gatekeys.py), so the visitor is
admitted at every gate of the site.
"""
from __future__ import annotations

import base64
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, Callable

import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.core.tokens import KeyRing, PassToken, key_id, load_private, sign
from gate.core.records import RegistrationRecord
from gate.store.database import Store


class RegistrationError(ValueError):
    """A registration that cannot be made; ``field`` names the form field at fault
    (or is None), ``code`` is stable for the page and tests."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class NoSigningKey(RegistrationError):
    def __init__(self, message: str) -> None:
        super().__init__("no_signing_key", message)


@dataclass(frozen=True)
class VisitorPass:
    pass_id: str
    holder: str
    unit: str
    id_last4: str
    phone_last4: str
    valid_from: datetime
    valid_until: datetime
    token: str
    record: RegistrationRecord  # the registration event, as stored and sent upstream
    length: str = "today"  # 2h | half_day | today

    def qr_png(self, scale: int = 8) -> bytes:
        import io

        buf = io.BytesIO()
        segno.make(self.token, error="m").save(buf, kind="png", scale=scale, border=4)
        return buf.getvalue()

    def qr_data_uri(self, scale: int = 8) -> str:
        return "data:image/png;base64," + base64.b64encode(self.qr_png(scale)).decode("ascii")


LENGTHS = ("2h", "half_day", "today")  # gate.config.sections.VISIT_LENGTHS
_HOURS = {"2h": 2, "half_day": 4}


def visit_end(now: datetime, length: str, hhmm: str, tz: tzinfo) -> datetime:
    """When a visit of ``length`` that starts now ends (``today``: at HH:MM today)."""
    if length == "today":
        return valid_until_today(now, hhmm, tz)
    if length not in _HOURS:
        raise RegistrationError("length_invalid", f"访问时长应为2小时、半天或今天 / the visit lasts 2h, half_day or today, not {length!r}", "length")
    return now.replace(microsecond=0) + timedelta(hours=_HOURS[length])


def valid_until_today(now: datetime, hhmm: str, tz: tzinfo) -> datetime:
    """Today (in the gate's time zone) at HH:MM, to the last second of that minute."""
    h, m = (int(x) for x in hhmm.split(":"))
    local = now.astimezone(tz)
    if h == 24:
        return datetime.combine(local.date() + timedelta(days=1), time(0), tz) - timedelta(seconds=1)
    return datetime.combine(local.date(), time(h, m, 59), tz)


_ID4 = re.compile(r"^[0-9]{3}[0-9Xx]$")  # a Chinese ID number may end in X
_PHONE4 = re.compile(r"^[0-9]{4}$")
_UNIT = re.compile(r"^[\w\-#/ .]{1,32}$")


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").strip()  # full-width digits from a Chinese IME -> ASCII
    return " ".join(text.split())


def validate(name: str, id_last4: str, phone_last4: str, unit: str) -> tuple[str, str, str, str]:
    name, id_last4, phone_last4, unit = _clean(name), _clean(id_last4), _clean(phone_last4), _clean(unit)
    if not name:
        raise RegistrationError("name_missing", "请填写访客姓名 / the visitor's name is missing", "name")
    if len(name) > 32 or any(unicodedata.category(c).startswith("C") for c in name):
        raise RegistrationError("name_invalid", "姓名太长或含有不能用的字符 / the name is too long or has odd characters", "name")
    if not _ID4.match(id_last4):
        raise RegistrationError("id_invalid", "身份证后4位应为4个数字（最后一位可以是X）/ ID: 4 digits, the last may be X", "id_last4")
    if not _PHONE4.match(phone_last4):
        raise RegistrationError("phone_invalid", "手机后4位应为4个数字 / phone: 4 digits", "phone_last4")
    if not _UNIT.match(unit):
        raise RegistrationError("unit_invalid", "请填写被访单元，如 3-2-501 / the host unit, e.g. 3-2-501", "unit")
    return name, id_last4.upper(), phone_last4, unit


class VisitorDesk:
    """Issues visitor passes. One desk per guard page; safe to call from any thread
    (each registration opens and closes its own store connection)."""

    def __init__(
        self,
        *,
        signer: Ed25519PrivateKey | None,
        open_store: Callable[[], Store],
        now: Callable[[], datetime],
        tz: tzinfo,
        valid_until: str = "23:59",
        default_length: str = "today",
        keyring: KeyRing | None = None,
        no_key_reason: str = "no signing key is configured (keys.signing)",
    ) -> None:
        self.signer = signer
        self.open_store = open_store
        self.now = now
        self.tz = tz
        self.valid_until = valid_until
        self.default_length = default_length
        self.no_key_reason = no_key_reason
        self.note = ""  # shown on the page beside the form (e.g. "demo key")
        self.keyring = keyring  # also says which keys central has withdrawn
        if signer is not None and keyring is not None:
            keyring.add_gate_key(signer.public_key())  # the gate admits the visitor passes it issues itself

    def use_signer(self, signer: Ed25519PrivateKey, keyring: KeyRing | None = None, note: str = "") -> None:
        """Issue with this key from now on (the demo's throwaway key when keys.signing is unset)."""
        if keyring is not None:
            keyring.add_gate_key(signer.public_key())
        self.signer = signer
        self.note = note

    @staticmethod
    def load_signer(path: Path | None) -> tuple[Ed25519PrivateKey | None, str]:
        """The private key at keys.signing, or None and why not (for the page to say)."""
        if path is None:
            return None, "no signing key is configured (keys.signing)"
        try:
            return load_private(Path(path)), ""
        except ValueError as exc:
            return None, str(exc)

    @property
    def ready(self) -> bool:
        return self.signer is not None

    def register(self, name: str, id_last4: str, phone_last4: str, unit: str, *, who: str = "guard",
                 length: str | None = None) -> VisitorPass:
        name, id_last4, phone_last4, unit = validate(name, id_last4, phone_last4, unit)
        length = length or self.default_length
        if length not in LENGTHS:
            raise RegistrationError("length_invalid", f"访问时长应为2小时、半天或今天 / the visit lasts 2h, half_day or today, not {length!r}", "length")
        if self.signer is None:
            raise NoSigningKey(f"本机没有签名密钥，不能登记访客 / {self.no_key_reason}")
        kid = key_id(self.signer.public_key())
        if self.keyring is not None and kid in self.keyring.withdrawn:
            # Its passes would be refused as forged at every gate, this one included.
            raise NoSigningKey(f"本机签名密钥已被中心撤销，不能登记访客 / signing key {kid} was withdrawn by central; "
                               "ask for a new keys.signing")
        now = self.now()
        until = visit_end(now, length, self.valid_until, self.tz)
        if until <= now:
            raise RegistrationError(
                "too_late",
                f"今天的访客登记已截止（{self.valid_until}）/ visitor passes end at {self.valid_until} today; it is later than that",
            )
        local = now.astimezone(self.tz)
        pass_id = f"v{local:%y%m%d}-{secrets.token_hex(3)}"
        vfrom = now.replace(microsecond=0)
        token = sign(PassToken(pass_id, "visitor", unit, vfrom, until), self.signer)
        rec = RegistrationRecord(
            at=now, lane="", pass_id=pass_id, holder=name, unit=unit, id_last4=id_last4,
            phone_last4=phone_last4, valid_until=until, who=who, valid_from=vfrom, length=length,
        )
        store = self.open_store()
        try:
            store.upsert_passes(
                [{"id": pass_id, "holder": name, "unit": unit, "category": "visitor",
                  "phone_last4": phone_last4, "valid_from": vfrom, "valid_until": until}]
            )
            store.record(rec)
        finally:
            store.close()
        return VisitorPass(pass_id, name, unit, id_last4, phone_last4, vfrom, until, token, rec, length)


def overstays(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Visitors inside (this gate's `inside` table, which presence from the site's other
    gates also fills) whose visit ended before ``now`` and who have not yet been raised as
    an `overstay` since they last came in. Visitors this gate knows: those registered
    here, and any in its pass table."""
    ts = now.timestamp()
    rows = store.conn.execute(
        "SELECT p.id, p.holder, p.unit, p.valid_until, i.since FROM inside i JOIN passes p ON p.id = i.pass_id"
        " WHERE p.category = 'visitor' AND p.valid_until IS NOT NULL AND p.valid_until < ?"
        " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.type = 'alarm' AND e.kind = 'overstay'"
        " AND e.pass_id = p.id AND e.ts >= i.since) ORDER BY p.valid_until",
        (ts,),
    ).fetchall()
    return [{"pass": r[0], "holder": r[1], "unit": r[2], "valid_until": r[3], "since": r[4]} for r in rows]
