"""HKDF-SHA256 (RFC 5869): the key splitter of the protocol (device keys, capture keys)."""

from vericam.hmac256 import DIGEST_SIZE, HMAC, hmac_sha256

_ZERO_SALT = bytes(DIGEST_SIZE)


def hkdf_extract(salt, ikm):
    """PRK = HMAC(salt, ikm); an empty salt means 32 zero bytes."""
    return hmac_sha256(salt if salt else _ZERO_SALT, ikm)


def hkdf_expand(prk, info, length=DIGEST_SIZE):
    """OKM of `length` bytes (at most 255 * 32) from a pseudorandom key."""
    if not 0 < length <= 255 * DIGEST_SIZE:
        raise ValueError("HKDF output length must be 1..8160 bytes, not %d" % length)
    okm = bytearray()
    block = b""
    counter = 1
    while len(okm) < length:
        mac = HMAC(prk)
        mac.update(block)
        mac.update(info)
        mac.update(bytes((counter,)))
        block = mac.digest()
        okm.extend(block)
        counter += 1
    return bytes(okm[:length])


def hkdf_sha256(ikm, salt, info, length=DIGEST_SIZE):
    """HKDF-SHA256(ikm, salt, info) -> `length` bytes (32 by default, as the protocol uses)."""
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)
