"""The pass token carried by a QR code: encode, sign, verify.

Text form: ``GP1.`` + base64url (no padding) of a packed body followed by its
64-byte Ed25519 signature. The body:

    version u8 | key id 4 bytes | category u8 | valid_from u32 | valid_until u32
    | pass id (u8 length + UTF-8) | holder reference (u8 length + UTF-8)

Times are Unix seconds, 0 meaning "not set". Version 2 bodies end with a 32-byte
device public key: the pass of a phone app, which shows a *dynamic* code
(``GP2.``): the signed pass, a 30-second time step and the device's signature
over both, so a photographed code is worth one time step at most, and the gate
refuses a step that has already let someone in. The key id is the first four bytes
of SHA-256 over the raw public key, so a gate trusts keys by file, with no names
to keep in step. A typical token is about 130 characters: QR version 7-8, easy
to read from a phone screen or paper.
"""
from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gate.config import CATEGORIES

PREFIX = "GP1."
DYNAMIC_PREFIX = "GP2."
VERSION = 1
VERSION_DEVICE = 2
STEP_S = 30
_HEAD = struct.Struct(">B4sBII")
SIG_LEN = 64


class TokenError(Exception):
    """Why a QR text is not an acceptable pass; ``reason`` is a DRILLS.md reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PassToken:
    pass_id: str
    category: str
    holder_ref: str = ""
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    key_id: str = ""  # hex, filled in by sign/verify
    device_key: bytes | None = None  # raw Ed25519 public key of the holder's phone (dynamic passes)
    step: int | None = None  # the time step a dynamic code was made for (set by verify)


def time_step(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_S


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:4].hex()


def _ts(value: datetime | None) -> int:
    if value is None:
        return 0
    if value.tzinfo is None:
        raise ValueError("pass validity times must carry a time zone")
    ts = int(value.timestamp())
    if ts >= 1 << 32:
        raise ValueError(f"validity time {value.isoformat()} is past 2106, the last a pass can carry")
    return max(0, ts)


def _dt(value: int) -> datetime | None:
    return None if value == 0 else datetime.fromtimestamp(value, timezone.utc)


def _short(text: str, what: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 255:
        raise ValueError(f"{what} is longer than 255 bytes")
    return bytes([len(data)]) + data


def sign(token: PassToken, private: Ed25519PrivateKey) -> str:
    if token.category not in CATEGORIES:
        raise ValueError(f"unknown category {token.category!r}")
    if not token.pass_id:
        raise ValueError("pass id is empty")
    kid = key_id(private.public_key())
    if token.device_key is not None and len(token.device_key) != 32:
        raise ValueError("a device key is 32 raw bytes (Ed25519)")
    version = VERSION if token.device_key is None else VERSION_DEVICE
    body = (
        _HEAD.pack(version, bytes.fromhex(kid), CATEGORIES.index(token.category), _ts(token.valid_from), _ts(token.valid_until))
        + _short(token.pass_id, "pass id")
        + _short(token.holder_ref, "holder reference")
        + (token.device_key or b"")
    )
    blob = body + private.sign(body)
    return PREFIX + base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def dynamic_code(static_text: str, device: Ed25519PrivateKey, step: int) -> str:
    """What the holder's app shows during one time step: the signed pass, the step,
    and the device's signature over both."""
    _, body, central_sig = parse(static_text)
    blob = body + central_sig
    signed = b"GP2" + blob + step.to_bytes(4, "big")
    return DYNAMIC_PREFIX + _b64(blob + step.to_bytes(4, "big") + device.sign(signed))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, prefix: str) -> bytes:
    b64 = text[len(prefix):]
    if not b64 or len(b64) > 1024 or any(c not in _B64_CHARS for c in b64):
        raise TokenError("malformed", "bad characters")
    try:
        blob = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
    except (ValueError, TypeError):
        raise TokenError("malformed", "bad base64") from None
    # One pass, one text: a last character whose unused low bits differ decodes to the
    # same bytes, and would be a second text (past the held-code and replay checks,
    # which compare texts) for the same signed pass.
    if _b64(blob) != b64:
        raise TokenError("malformed", "not canonical base64")
    return blob


def parse(text: str) -> tuple[PassToken, bytes, bytes]:
    """Split a static QR text into token, signed body and signature. Raises TokenError('malformed')."""
    if not text.startswith(PREFIX):
        raise TokenError("malformed", "not a gate pass")
    blob = _unb64(text, PREFIX)
    if len(blob) < _HEAD.size + 2 + SIG_LEN:
        raise TokenError("malformed", "too short")
    body, sig = blob[:-SIG_LEN], blob[-SIG_LEN:]
    return _parse_body(body), body, sig


def parse_dynamic(text: str) -> tuple[PassToken, bytes, bytes, bytes, bytes]:
    """(token with step, body, central signature, device-signed bytes, device signature)."""
    blob = _unb64(text, DYNAMIC_PREFIX)
    if len(blob) < _HEAD.size + 2 + 32 + SIG_LEN + 4 + SIG_LEN:
        raise TokenError("malformed", "too short")
    signed_part, device_sig = blob[:-SIG_LEN], blob[-SIG_LEN:]
    body, central_sig, step = signed_part[: -(SIG_LEN + 4)], signed_part[-(SIG_LEN + 4) : -4], signed_part[-4:]
    token = _parse_body(body)
    if token.device_key is None:
        raise TokenError("malformed", "a dynamic code for a pass without a device key")
    from dataclasses import replace

    return replace(token, step=int.from_bytes(step, "big")), body, central_sig, b"GP2" + signed_part, device_sig


def _parse_body(body: bytes) -> PassToken:
    if len(body) < _HEAD.size + 2:
        raise TokenError("malformed", "too short")
    version, kid, cat, vfrom, vuntil = _HEAD.unpack_from(body)
    if version not in (VERSION, VERSION_DEVICE):
        raise TokenError("malformed", f"unknown version {version}")
    if cat >= len(CATEGORIES):
        raise TokenError("malformed", f"unknown category code {cat}")
    pos = _HEAD.size
    fields = []
    for _ in range(2):
        if pos >= len(body):
            raise TokenError("malformed", "truncated")
        n = body[pos]
        raw = body[pos + 1 : pos + 1 + n]
        if len(raw) != n:
            raise TokenError("malformed", "truncated")
        try:
            fields.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise TokenError("malformed", "text is not UTF-8") from None
        pos += 1 + n
    device = None
    if version == VERSION_DEVICE:
        device = body[pos : pos + 32]
        if len(device) != 32:
            raise TokenError("malformed", "truncated device key")
        pos += 32
    if pos != len(body):
        raise TokenError("malformed", "trailing bytes")
    if not fields[0]:
        raise TokenError("malformed", "empty pass id")
    return PassToken(
        pass_id=fields[0],
        category=CATEGORIES[cat],
        holder_ref=fields[1],
        valid_from=_dt(vfrom),
        valid_until=_dt(vuntil),
        key_id=kid.hex(),
        device_key=device,
    )


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# What a gate's device key may sign (the key of `[keys] signing`, vouched for by central's
# signed list of the site's gates, sync/gatekeys.py): a static (GP1) pass of category
# visitor, with a start and an end at most MAX_GATE_PASS apart. Nothing else: no resident,
# staff or other pass, no phone (GP2) pass, no pass without an end; and never a payload
# from central (those are checked against the central keys of [sync], another ring).
GATE_KEY_CATEGORIES = frozenset({"visitor"})
MAX_GATE_PASS = timedelta(hours=24, minutes=1)


def gate_key_may_sign(token: "PassToken") -> str | None:
    """None when a gate key may sign this pass, else why not."""
    if token.category not in GATE_KEY_CATEGORIES:
        return f"a gate key may sign visitor passes only, not {token.category}"
    if token.device_key is not None:
        return "a gate key may not sign a phone pass"
    if token.valid_from is None or token.valid_until is None:
        return "a pass signed by a gate key needs a start and an end"
    if token.valid_until - token.valid_from > MAX_GATE_PASS:
        return "a pass signed by a gate key lasts a day at most"
    return None


class KeyRing:
    """The public keys this gate trusts for one role, by key id, less those central
    has withdrawn (sync/keylist.py): a withdrawn key is as good as unknown.

    Beside the keys trusted for everything (``add``), it holds *gate keys*, trusted only
    for what ``gate_key_may_sign`` allows: this gate's own (``add_gate_key``, the desk's
    signing key) and those central vouches for in its signed list of the site's gates
    (``vouch``)."""

    def __init__(self, keys: list[Ed25519PublicKey] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        # Replaced whole, never mutated: lanes read it on their threads without a lock.
        self._withdrawn: frozenset[str] = frozenset()
        self._own_gate: dict[str, Ed25519PublicKey] = {}
        self._vouched: dict[str, Ed25519PublicKey] = {}  # replaced whole, like _withdrawn
        for key in keys or []:
            self.add(key)

    def add_gate_key(self, key: Ed25519PublicKey) -> str:
        """This gate's own signing key: trusted for visitor passes only (unless it is also
        a fully trusted key of [keys] trusted)."""
        kid = key_id(key)
        self._own_gate = {**self._own_gate, kid: key}
        return kid

    def vouch(self, keys: dict[str, Ed25519PublicKey]) -> None:
        """Central's list of the site's gate keys, by key id (the whole set)."""
        self._vouched = dict(keys)

    @property
    def vouched(self) -> frozenset[str]:
        return frozenset(self._vouched)

    def _gate_key(self, kid: str) -> Ed25519PublicKey | None:
        return self._own_gate.get(kid) or self._vouched.get(kid)

    def withdraw(self, kids: Iterable[str]) -> None:
        """From now on refuse anything signed by these key ids (the whole set: a newer
        list from central may also give a key back)."""
        self._withdrawn = frozenset(kids)

    @property
    def withdrawn(self) -> frozenset[str]:
        return self._withdrawn

    def ids(self) -> list[str]:
        """Every key id held, withdrawn or not."""
        return list(self._keys)

    def add(self, key: Ed25519PublicKey) -> str:
        kid = key_id(key)
        self._keys[kid] = key
        return kid

    def key(self, kid: str) -> Ed25519PublicKey | None:
        return None if kid in self._withdrawn else self._keys.get(kid)

    def __contains__(self, kid: str) -> bool:
        return kid in self._keys and kid not in self._withdrawn

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, text: str) -> PassToken:
        """A verified token, or TokenError with reason 'malformed' or 'forged'.

        A dynamic code (GP2.) also has its device signature checked; its step is
        returned for the caller to judge against the clock and past use."""
        if text.startswith(DYNAMIC_PREFIX):
            token, body, sig, device_signed, device_sig = parse_dynamic(text)
        else:
            token, body, sig = parse(text)
        if token.key_id in self._withdrawn:
            raise TokenError("forged", f"signed by withdrawn key {token.key_id}")
        key = self._keys.get(token.key_id)
        if key is None:
            key = self._gate_key(token.key_id)
            if key is None:
                raise TokenError("forged", f"signed by unknown key {token.key_id}")
            why = gate_key_may_sign(token)
            if why is not None:
                # A gate's key (its desk) cannot mint a resident's pass, however good the signature.
                raise TokenError("forged", f"gate key {token.key_id}: {why}")
        try:
            key.verify(sig, body)
        except InvalidSignature:
            raise TokenError("forged", "bad signature") from None
        if text.startswith(DYNAMIC_PREFIX):
            assert token.device_key is not None
            try:
                Ed25519PublicKey.from_public_bytes(token.device_key).verify(device_sig, device_signed)
            except (InvalidSignature, ValueError):
                raise TokenError("forged", "bad device signature") from None
        elif token.device_key is not None:
            # The pass of a phone app, shown as a still picture: only its dynamic code counts.
            raise TokenError("forged", "a phone pass shown without its dynamic code")
        return token

    @classmethod
    def from_files(cls, paths: list[Path]) -> "KeyRing":
        return cls([load_public(p) for p in paths])


# ---------------------------------------------------------------- key files


def new_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (PKCS#8 PEM, mode 0600) and NAME.pub; refuse to overwrite."""
    directory.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    for p in (priv_path, pub_path):
        if p.exists():
            raise FileExistsError(f"{p} already exists; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return priv_path, pub_path


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise ValueError(f"{path}: signing key not found") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ValueError(f"{path}: cannot read the signing key: {exc.strerror}") from None
    except TypeError:
        raise ValueError(f"{path}: the key is protected by a passphrase; gate needs an unencrypted key readable only by its user") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: expected an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise ValueError(f"{path}: public key not found") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ValueError(f"{path}: cannot read the public key: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: expected an Ed25519 public key")
    return key
