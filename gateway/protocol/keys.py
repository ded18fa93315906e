"""Key derivation of protocol v1 (PROTOCOL.md §1): HMAC-SHA256, HKDF-SHA256 and the device keys."""

from __future__ import annotations

import hashlib
import hmac as _hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.protocol.errors import Malformed

INFO_UP = b"vericam v1 up mac"
INFO_DOWN = b"vericam v1 down mac"
INFO_EVENT = b"vericam v1 event enc"
INFO_FRAME_ENC = b"vericam v1 frame enc"
INFO_FRAME_MAC = b"vericam v1 frame mac"


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return _hmac.new(key, data, hashlib.sha256).digest()


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869). An empty salt means 32 zero bytes, as the RFC says."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)


@dataclass(frozen=True)
class DeviceKeys:
    """The three keys derived from one device's provisioned `device_key`."""

    up: bytes
    down: bytes
    event: bytes

    @classmethod
    def derive(cls, device_key: bytes) -> "DeviceKeys":
        if len(device_key) != 32:
            raise Malformed(f"a device key is 32 bytes, got {len(device_key)}: re-provision the device")
        return cls(up=hkdf(device_key, b"", INFO_UP),
                   down=hkdf(device_key, b"", INFO_DOWN),
                   event=hkdf(device_key, b"", INFO_EVENT))

    def __repr__(self) -> str:  # never print key material
        return "DeviceKeys(<redacted>)"


def frame_keys(dk: bytes, capture_id: bytes) -> tuple[bytes, bytes]:
    """(K_enc, K_mac) of one sealed capture (§4)."""
    return hkdf(dk, capture_id, INFO_FRAME_ENC), hkdf(dk, capture_id, INFO_FRAME_MAC)


def arc_key_id(public_key) -> bytes:
    """First 8 bytes of SHA-256 of the DER SubjectPublicKeyInfo of the ARC public key."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()[:8]
