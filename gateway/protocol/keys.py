"""Key derivation (PROTOCOL.md §1 and §4): HMAC-SHA256, HKDF-SHA256, the device keys and a capture's keys."""

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
INFO_FRAME_ENC = b"vericam v2 frame enc"
INFO_FRAME_MAC = b"vericam v2 frame mac"
INFO_META_ENC = b"vericam v2 meta enc"
INFO_RELEASE_SEED = b"vericam v2 release seed"


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


def capture_keys(dk: bytes, slot_key: bytes, capture_id: bytes) -> tuple[bytes, bytes, bytes]:
    """(K_enc, K_mac, K_meta) of one sealed capture (§4): from its data key AND its slot key.

    DK is wrapped to the ARC in the header; the slot key lives in the device's key-slot area
    and reaches the ARC only in a release record (§4.4). Without it nothing opens the capture,
    whoever holds the ARC private key."""
    ikm = dk + slot_key
    return (hkdf(ikm, capture_id, INFO_FRAME_ENC), hkdf(ikm, capture_id, INFO_FRAME_MAC),
            hkdf(ikm, capture_id, INFO_META_ENC))


def release_seed(slot_key: bytes, capture_id: bytes) -> bytes:
    """The OAEP seed of a capture's release record (§4.4): secret, and the same on every resend."""
    return hmac_sha256(slot_key, INFO_RELEASE_SEED + capture_id)


def mgf1_sha256(seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def oaep_encrypt(n: int, e: int, message: bytes, seed: bytes, label: bytes = b"") -> bytes:
    """RSAES-OAEP-ENCRYPT (RFC 8017 §7.1.1), SHA-256 and MGF1-SHA-256, with the seed given.

    The device's side, for release records (whose seed is derived, §4.4), test vectors and
    tests: `cryptography` does not let a caller fix the seed. Its output decrypts with
    `cryptography`'s OAEP (checked in tests/test_gateway_protocol.py)."""
    k = (n.bit_length() + 7) // 8
    h_len = 32
    if len(seed) != h_len or len(message) > k - 2 * h_len - 2:
        raise ValueError("OAEP: the seed is 32 bytes and the message at most k - 66 bytes")
    db = hashlib.sha256(label).digest() + b"\0" * (k - len(message) - 2 * h_len - 2) + b"\1" + message
    masked_db = bytes(a ^ b for a, b in zip(db, mgf1_sha256(seed, k - h_len - 1)))
    masked_seed = bytes(a ^ b for a, b in zip(seed, mgf1_sha256(masked_db, h_len)))
    em = b"\0" + masked_seed + masked_db
    return pow(int.from_bytes(em, "big"), e, n).to_bytes(k, "big")


def arc_key_id(public_key) -> bytes:
    """First 8 bytes of SHA-256 of the DER SubjectPublicKeyInfo of the ARC public key."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()[:8]
