"""HMAC-SHA256 (RFC 2104), streaming, over the built-in hashlib.sha256.

micropython-lib's `hmac` is not reachable from PyPI, so the firmware carries its own.
It runs unchanged on CPython, where the tests check it against the standard `hmac`.

MicroPython's sha256 objects have no `copy()` and are final after `digest()`. Hence:
`HMAC.digest()` may be called once, after which `update()` raises `HMACFinalError`; and
`HMAC.copy()` works only while the HMAC has absorbed at most `COPY_PREFIX_LIMIT` bytes
(the usual use: absorb a short prefix such as a capture id once, then copy it per record).
Where the hash does support `copy()` (CPython), `copy()` always works.
"""

import hashlib

BLOCK_SIZE = 64
DIGEST_SIZE = 32
COPY_PREFIX_LIMIT = 64

_IPAD = 0x36
_OPAD = 0x5C


class HMACFinalError(ValueError):
    """The HMAC was already finalised by digest(); start a new one."""


class HMACCopyError(ValueError):
    """copy() is not possible: this port's sha256 cannot be copied and the prefix is too long."""


def _padded_key(key, pad):
    if len(key) > BLOCK_SIZE:
        key = hashlib.sha256(key).digest()
    block = bytearray(BLOCK_SIZE)
    for i in range(len(key)):
        block[i] = key[i] ^ pad
    for i in range(len(key), BLOCK_SIZE):
        block[i] = pad
    return block


def _wipe(buf):
    for i in range(len(buf)):
        buf[i] = 0


class HMAC:
    """A streaming HMAC-SHA256: HMAC(key), then update(data)..., then digest() once.

    After digest() the padded key copies it held are zeroed (best effort: the garbage
    collector does not clear freed memory, so callers keep key lifetimes short too).
    """

    def __init__(self, key, msg=None):
        self._opad_key = _padded_key(key, _OPAD)
        self._ipad_key = _padded_key(key, _IPAD)
        self._inner = hashlib.sha256(self._ipad_key)
        self._prefix = bytearray()  # absorbed bytes, kept only while short (for copy())
        self._final = False
        if msg is not None:
            self.update(msg)

    def update(self, data):
        if self._final:
            raise HMACFinalError("HMAC already finalised by digest()")
        self._inner.update(data)
        prefix = self._prefix
        if prefix is not None:
            if len(prefix) + len(data) <= COPY_PREFIX_LIMIT:
                prefix.extend(data)
            else:
                self._prefix = None

    def copy(self):
        """A new HMAC in the same state; both continue independently."""
        if self._final:
            raise HMACFinalError("HMAC already finalised by digest()")
        twin = HMAC(b"")  # MicroPython has no __new__ on classes; its state is replaced
        twin._opad_key = bytearray(self._opad_key)
        twin._ipad_key = bytearray(self._ipad_key)
        twin._final = False
        twin._prefix = None if self._prefix is None else bytearray(self._prefix)
        if hasattr(self._inner, "copy"):
            twin._inner = self._inner.copy()
        elif self._prefix is not None:
            twin._inner = hashlib.sha256(self._ipad_key)
            twin._inner.update(self._prefix)
        else:
            raise HMACCopyError(
                "sha256 here has no copy(); copy the HMAC before it absorbs more than %d bytes"
                % COPY_PREFIX_LIMIT)
        return twin

    def digest(self):
        """The 32-byte MAC. Finalises this HMAC (MicroPython's sha256 cannot go on)."""
        if self._final:
            raise HMACFinalError("HMAC already finalised by digest()")
        self._final = True
        outer = hashlib.sha256(self._opad_key)
        outer.update(self._inner.digest())
        _wipe(self._opad_key)  # the padded keys are as secret as the key
        _wipe(self._ipad_key)
        self._prefix = None
        return outer.digest()


def hmac_sha256(key, msg):
    """HMAC-SHA256 of one message."""
    return HMAC(key, msg).digest()


def compare_digest(a, b):
    """True if a == b, in time that depends only on the lengths (which are not secret)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
