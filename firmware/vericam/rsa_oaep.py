"""RSA-OAEP-SHA256 encryption (RFC 8017, MGF1-SHA256, empty label) to the ARC public key.

The device wraps each capture's data key to the ARC with it. Only the public operation
is here: the device can never unwrap what it wrapped. Big-int `pow` makes a 2048-bit
wrap take well under a millisecond on MicroPython on a PC.
"""

import hashlib
import os
import struct

HASH_SIZE = 32
_EMPTY_LABEL_HASH = hashlib.sha256(b"").digest()
RSA_OID = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"  # 1.2.840.113549.1.1.1 rsaEncryption


class OAEPError(ValueError):
    """The message does not fit the key, or the seed or key is unusable."""


def modulus_size(n):
    """Length in bytes of the modulus n (MicroPython ints have no bit_length())."""
    return (len("%x" % n) + 1) // 2


def _mgf1_xor(target, seed, start, length):
    """XOR MGF1-SHA256(seed, length) into target[start:start+length] in place."""
    counter = 0
    done = 0
    while done < length:
        block = hashlib.sha256(seed)
        block.update(struct.pack(">I", counter))
        mask = block.digest()
        take = min(HASH_SIZE, length - done)
        for i in range(take):
            target[start + done + i] ^= mask[i]
        done += take
        counter += 1


def oaep_encrypt(n, e, message, seed=None):
    """RSA-OAEP-SHA256(n, e) of `message` with an empty label -> ciphertext of len(n) bytes.

    `seed` is the 32-byte OAEP seed; it comes from os.urandom when None (test vectors fix it).
    """
    k = modulus_size(n)
    if len(message) > k - 2 * HASH_SIZE - 2:
        raise OAEPError("message of %d bytes is too long for a %d-byte RSA key"
                        % (len(message), k))
    if seed is None:
        seed = os.urandom(HASH_SIZE)
    if len(seed) != HASH_SIZE:
        raise OAEPError("OAEP seed must be %d bytes" % HASH_SIZE)
    # EM = 0x00 || maskedSeed || maskedDB, DB = lHash || PS || 0x01 || M
    em = bytearray(k)
    db_start = 1 + HASH_SIZE
    db_len = k - db_start
    em[db_start:db_start + HASH_SIZE] = _EMPTY_LABEL_HASH
    em[k - len(message) - 1] = 0x01
    em[k - len(message):] = message
    em[1:db_start] = seed
    _mgf1_xor(em, bytes(em[1:db_start]), db_start, db_len)
    _mgf1_xor(em, bytes(em[db_start:]), 1, HASH_SIZE)
    c = pow(int.from_bytes(em, "big"), e, n)
    for i in range(k):  # the EM holds the seed and message: do not leave it on the heap
        em[i] = 0
    return c.to_bytes(k, "big")


def _der_length(length):
    if length < 0x80:
        return bytes((length,))
    size = (len("%x" % length) + 1) // 2
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def _der(tag, content):
    return bytes((tag,)) + _der_length(len(content)) + content


def _der_uint(value):
    raw = value.to_bytes(modulus_size(value) or 1, "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return _der(0x02, raw)


def spki_der(n, e):
    """DER SubjectPublicKeyInfo of the RSA public key (n, e)."""
    algorithm = _der(0x30, _der(0x06, RSA_OID) + b"\x05\x00")
    public_key = _der(0x30, _der_uint(n) + _der_uint(e))
    return _der(0x30, algorithm + _der(0x03, b"\x00" + public_key))


def arc_key_id(n, e):
    """PROTOCOL §1: the first 8 bytes of SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der(n, e)).digest()[:8]


class ArcPublicKey:
    """The ARC's RSA public key as provisioned: modulus, exponent and key id."""

    def __init__(self, n, e=65537):
        if n < (1 << 2040) or n % 2 == 0:
            raise OAEPError("ARC key modulus is not an RSA-2048 (or larger) modulus")
        if e < 3 or e % 2 == 0:
            raise OAEPError("ARC key exponent %d is not a valid RSA exponent" % e)
        self.n = n
        self.e = e
        self.size = modulus_size(n)
        self.key_id = arc_key_id(n, e)

    def wrap(self, data_key, seed=None):
        """RSA-OAEP-SHA256 of a data key to the ARC."""
        return oaep_encrypt(self.n, self.e, data_key, seed)


def load_arc_key(n_hex, e=65537, key_id_hex=None):
    """The ARC public key from device config (modulus as hex, exponent as int).

    If the config also gives the key id, it must match the key, so a corrupted or
    mismatched provisioning is caught at start-up and not at the ARC.
    """
    try:
        n = int(n_hex, 16)
    except ValueError:
        raise OAEPError("ARC key modulus in config is not hex")
    key = ArcPublicKey(n, int(e))
    if key_id_hex is not None and bytes.fromhex(key_id_hex) != key.key_id:
        raise OAEPError("ARC key id %s in config does not match the key (%s)"
                        % (key_id_hex, key.key_id.hex()))
    return key
