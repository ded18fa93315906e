"""Sealing a capture at the lens (PROTOCOL §4): frames encrypted and tagged as they stream in.

Theory of operation. A capture gets a fresh data key DK and a slot key SK, which the vault
has programmed into the capture's key slot (keyslots.py) before the sealer starts.
`header()` wraps DK to the ARC public key with RSA-OAEP, derives K_enc, K_mac and K_meta
from DK || SK by HKDF, encrypts the trigger and the capture time under K_meta, and zeroes
DK: from then on the device cannot decrypt its own capture, and once the slot is erased
nobody can, the ARC included. Each frame is a record: `begin_frame()` returns the record
prefix (with a fresh IV), `update()` turns each piece of JPEG read from the camera into
AES-256-CBC ciphertext (any piece size; partial blocks wait for the next piece; the frame's
time and length go first, inside the ciphertext), and `end_frame()` returns the
PKCS7-padded last block and the record's HMAC tag. `end()` returns the end record that
binds the frame tags in order. Every output is meant to be appended to the sealed file on
flash as it comes, so RAM holds about one piece, never a frame.

`release_record()` is what goes in front of a capture an alarm claims (§4.4): SK wrapped to
the ARC, so the gateway can open it; its OAEP seed is derived from SK, so a resend is the
same bytes. `padded_size()` is the size a delivery is padded to with zeros (§4.5).

The calls must come in the order of `_NEXT_STATE`; anything else raises `SealError`.
For test vectors, DK, the OAEP seed and the IVs can be fixed; by default they come from
`urandom`.
"""

import os
import struct

import cryptolib

from vericam.hkdf import hkdf_sha256
from vericam.hmac256 import DIGEST_SIZE, HMAC, hmac_sha256
from vericam.rsa_oaep import modulus_size, oaep_encrypt

MAGIC = b"VCAP"
VERSION = 0x02
RELEASE_MAGIC = b"VREL"
RELEASE_CAPTURE = 0  # release record kinds (§4.4)
RELEASE_COVER = 1
BUCKET = 16 * 1024   # a delivery is padded with zeros to a multiple of this (§4.5)
RECORD_FRAME = 0x46  # "F"
RECORD_END = 0x45  # "E"

TRIGGER_DISARM = 1
TRIGGER_INTRUSION = 2
TRIGGER_SMOKE = 3
TRIGGER_DURESS = 4
TRIGGER_TAMPER = 5
TRIGGER_SOS = 6
TRIGGER_PANIC = 7
TRIGGER_SILENT = 8
TRIGGERS = {
    "disarm": TRIGGER_DISARM, "intrusion": TRIGGER_INTRUSION, "smoke": TRIGGER_SMOKE,
    "duress": TRIGGER_DURESS, "tamper": TRIGGER_TAMPER, "sos": TRIGGER_SOS,
    "panic": TRIGGER_PANIC, "silent": TRIGGER_SILENT,
}

INFO_FRAME_ENC = b"vericam v2 frame enc"
INFO_FRAME_MAC = b"vericam v2 frame mac"
INFO_META_ENC = b"vericam v2 meta enc"
INFO_RELEASE_SEED = b"vericam v2 release seed"

DATA_KEY_SIZE = 32
SLOT_KEY_SIZE = 32
CAPTURE_ID_SIZE = 16
ARC_KEY_ID_SIZE = 8
IV_SIZE = 16
AES_BLOCK = 16
_MODE_CBC = 2

HEADER_FIXED = 34  # header bytes before the wrapped key
META_SIZE = 32     # meta IV and the one ciphertext block of trigger and capture time
FRAME_PREFIX = 22  # record bytes before the ciphertext
FRAME_INNER = 8    # frame time and JPEG length, encrypted in front of the JPEG
END_RECORD = 2 + DIGEST_SIZE
RELEASE_FIXED = 16  # release record bytes before the wrapped payload
MAX_FRAMES = 255

# state -> {call: next state}; close() is allowed from every state
_NEXT_STATE = {
    "new": {"header": "between"},
    "between": {"begin_frame": "in_frame", "end": "ended"},
    "in_frame": {"update": "in_frame", "end_frame": "between"},
    "ended": {},
    "closed": {},
}


class SealError(ValueError):
    """The sealer was used out of order or fed a frame that does not match its length."""


def ciphertext_size(length):
    """Size of AES-CBC(PKCS7(plaintext)) for a plaintext of `length` bytes."""
    return AES_BLOCK * (length // AES_BLOCK + 1)


def sealed_size(frame_lengths, wrapped_len=256):
    """Size of a sealed capture with frames of these plaintext (JPEG) lengths."""
    size = HEADER_FIXED + wrapped_len + META_SIZE + DIGEST_SIZE + END_RECORD
    for length in frame_lengths:
        size += FRAME_PREFIX + ciphertext_size(FRAME_INNER + length) + DIGEST_SIZE
    return size


def padded_size(size, bucket=BUCKET):
    """A delivery of `size` bytes padded to a whole number of buckets (§4.5)."""
    return bucket * max(1, (size + bucket - 1) // bucket)


def release_record(arc_n, arc_e, arc_key_id, kind, frames, capture_id, slot_key):
    """The release record of a capture an alarm claimed (§4.4): its slot key wrapped to the ARC.

    The OAEP seed is HMAC(SK, "vericam v2 release seed" || capture_id): secret, and the same
    on every resend, so the bytes sent, and the SHA-256 the receipt must match, stay the same.
    """
    if len(capture_id) != CAPTURE_ID_SIZE or len(slot_key) != SLOT_KEY_SIZE:
        raise SealError("a release record takes a 16-byte capture id and a 32-byte slot key")
    if len(arc_key_id) != ARC_KEY_ID_SIZE or not 0 <= frames <= MAX_FRAMES or kind not in (0, 1):
        raise SealError("a release record takes an 8-byte ARC key id, kind 0 or 1, 0..255 frames")
    payload = bytearray(2 + CAPTURE_ID_SIZE + SLOT_KEY_SIZE)
    payload[0] = kind
    payload[1] = frames
    payload[2:18] = capture_id
    payload[18:] = slot_key
    seed = bytearray(hmac_sha256(slot_key, INFO_RELEASE_SEED + bytes(capture_id)))
    try:
        wrapped = oaep_encrypt(arc_n, arc_e, payload, seed)
    finally:
        _wipe(payload)
        _wipe(seed)
    head = bytearray(RELEASE_FIXED)
    head[0:4] = RELEASE_MAGIC
    head[4] = VERSION
    head[6:14] = arc_key_id
    struct.pack_into(">H", head, 14, len(wrapped))
    return bytes(head) + wrapped


def _wipe(buf):
    for i in range(len(buf)):
        buf[i] = 0


class CaptureSealer:
    """Seals one capture: header(), then per frame begin_frame/update.../end_frame, then end().

    `slot_key` is the capture's SK from its key slot; the sealer keeps it only until header().
    """

    def __init__(self, arc_n, arc_e, arc_key_id, capture_id, trigger, captured_at, slot_key,
                 urandom=os.urandom, dk=None, oaep_seed=None, meta_iv=None):
        if len(capture_id) != CAPTURE_ID_SIZE:
            raise SealError("capture_id must be %d bytes" % CAPTURE_ID_SIZE)
        if len(arc_key_id) != ARC_KEY_ID_SIZE:
            raise SealError("arc_key_id must be %d bytes" % ARC_KEY_ID_SIZE)
        if not 1 <= trigger <= 255:
            raise SealError("trigger %d is not a trigger code" % trigger)
        if dk is not None and len(dk) != DATA_KEY_SIZE:
            raise SealError("a fixed data key must be %d bytes" % DATA_KEY_SIZE)
        if len(slot_key) != SLOT_KEY_SIZE:
            raise SealError("slot_key must be %d bytes" % SLOT_KEY_SIZE)
        if meta_iv is not None and len(meta_iv) != IV_SIZE:
            raise SealError("a fixed meta IV must be %d bytes" % IV_SIZE)
        self._arc_n = arc_n
        self._arc_e = arc_e
        self._arc_key_id = bytes(arc_key_id)
        self.capture_id = bytes(capture_id)
        self.trigger = trigger
        self.captured_at = captured_at
        self._urandom = urandom
        self._fixed_dk = dk
        self._slot_key = slot_key
        self._oaep_seed = oaep_seed
        self._meta_iv = meta_iv
        self._state = "new"
        self._k_enc = None
        self._k_mac = None
        self._tags = []
        self._carry = bytearray(AES_BLOCK)  # plaintext waiting for a full block
        self._carry_len = 0
        self._aes = None
        self._tag_mac = None
        self._length = 0
        self._fed = 0

    def _advance(self, call):
        following = _NEXT_STATE[self._state].get(call)
        if following is None:
            raise SealError("%s() is not allowed when the sealer is %s" % (call, self._state))
        self._state = following

    def header(self):
        """The capture header (§4.2): wraps a fresh DK to the ARC, keeps only K_enc and K_mac."""
        self._advance("header")
        slot_key = self._slot_key
        if slot_key is None:
            raise SealError("the slot key is gone: header() runs once")
        dk = bytearray(self._fixed_dk if self._fixed_dk is not None
                       else self._urandom(DATA_KEY_SIZE))
        ikm = bytearray(DATA_KEY_SIZE + SLOT_KEY_SIZE)
        ikm[:DATA_KEY_SIZE] = dk
        ikm[DATA_KEY_SIZE:] = slot_key
        k_meta = None
        try:
            self._k_enc = bytearray(hkdf_sha256(ikm, self.capture_id, INFO_FRAME_ENC))
            self._k_mac = bytearray(hkdf_sha256(ikm, self.capture_id, INFO_FRAME_MAC))
            k_meta = bytearray(hkdf_sha256(ikm, self.capture_id, INFO_META_ENC))
            wrapped = oaep_encrypt(self._arc_n, self._arc_e, dk, self._oaep_seed)
            w = len(wrapped)
            head = bytearray(HEADER_FIXED + w + META_SIZE + DIGEST_SIZE)
            head[0:4] = MAGIC
            head[4] = VERSION
            head[8:24] = self.capture_id
            head[24:32] = self._arc_key_id
            struct.pack_into(">H", head, 32, w)
            head[HEADER_FIXED:HEADER_FIXED + w] = wrapped
            at = HEADER_FIXED + w
            meta_iv = self._meta_iv if self._meta_iv is not None else self._urandom(IV_SIZE)
            head[at:at + IV_SIZE] = meta_iv
            meta = bytearray(AES_BLOCK)  # trigger u8 || captured_at u32, PKCS7-padded
            meta[0] = self.trigger
            struct.pack_into(">I", meta, 1, self.captured_at)
            for i in range(5, AES_BLOCK):
                meta[i] = AES_BLOCK - 5
            cryptolib.aes(k_meta, _MODE_CBC, bytes(meta_iv)).encrypt(meta, memoryview(head)[at + IV_SIZE:at + META_SIZE])
            _wipe(meta)
        finally:
            _wipe(dk)
            _wipe(ikm)
            if k_meta is not None:
                _wipe(k_meta)
            self._fixed_dk = None
            self._slot_key = None
        mac = HMAC(self._k_mac)
        mac.update(memoryview(head)[:at + META_SIZE])
        head[at + META_SIZE:] = mac.digest()
        return head

    def begin_frame(self, index, t, length, iv=None):
        """The frame record prefix (§4.3): type, index, ciphertext length, IV.

        The frame's time and JPEG length are the first 8 bytes of its plaintext: they wait in
        the carry and go out encrypted with the first piece."""
        if index != len(self._tags):
            raise SealError("frame %d begun, but frame %d is next" % (index, len(self._tags)))
        if index >= MAX_FRAMES:
            raise SealError("a capture holds at most %d frames" % MAX_FRAMES)
        if not 0 <= length < (1 << 31):
            raise SealError("frame length %d does not fit 31 bits" % length)
        if iv is None:
            iv = self._urandom(IV_SIZE)
        if len(iv) != IV_SIZE:
            raise SealError("IV must be %d bytes" % IV_SIZE)
        self._advance("begin_frame")
        prefix = bytearray(FRAME_PREFIX)
        prefix[0] = RECORD_FRAME
        prefix[1] = index
        struct.pack_into(">I", prefix, 2, ciphertext_size(FRAME_INNER + length))
        prefix[6:22] = iv
        self._aes = cryptolib.aes(self._k_enc, _MODE_CBC, bytes(iv))
        self._tag_mac = HMAC(self._k_mac)
        self._tag_mac.update(self.capture_id)
        self._tag_mac.update(prefix)
        self._length = length
        self._fed = 0
        struct.pack_into(">II", self._carry, 0, t, length)
        self._carry_len = FRAME_INNER
        return prefix

    def update(self, data):
        """Ciphertext for the next piece of the frame (may be empty; whole blocks only)."""
        self._advance("update")
        n = len(data)
        self._fed += n
        if self._fed > self._length:
            raise SealError("frame is longer than the %d bytes announced" % self._length)
        carry = self._carry_len
        total = carry + n
        full = total - total % AES_BLOCK
        view = memoryview(data)
        if full == 0:
            self._carry[carry:total] = view
            self._carry_len = total
            return b""
        out = bytearray(full)
        out_view = memoryview(out)
        taken = 0
        at = 0
        if carry:
            taken = AES_BLOCK - carry
            self._carry[carry:AES_BLOCK] = view[:taken]
            self._aes.encrypt(self._carry, out_view[:AES_BLOCK])
            at = AES_BLOCK
        run = full - at
        if run:
            self._aes.encrypt(view[taken:taken + run], out_view[at:])
        tail = n - taken - run
        self._carry[0:tail] = view[taken + run:]
        self._carry_len = tail
        self._tag_mac.update(out)
        return out

    def end_frame(self):
        """The last ciphertext block (with PKCS7 padding) and the frame's 32-byte tag."""
        if self._state == "in_frame" and self._fed != self._length:
            raise SealError("frame ended after %d of the %d bytes announced"
                            % (self._fed, self._length))
        self._advance("end_frame")
        pad = AES_BLOCK - self._carry_len
        for i in range(self._carry_len, AES_BLOCK):
            self._carry[i] = pad
        out = bytearray(AES_BLOCK + DIGEST_SIZE)
        self._aes.encrypt(self._carry, memoryview(out)[:AES_BLOCK])
        _wipe(self._carry)
        self._tag_mac.update(memoryview(out)[:AES_BLOCK])
        tag = self._tag_mac.digest()
        out[AES_BLOCK:] = tag
        self._tags.append(tag)
        self._aes = None
        self._tag_mac = None
        return out

    def end(self):
        """The end record (§4), binding the frame tags in order; then the keys are wiped."""
        self._advance("end")
        count = len(self._tags)
        mac = HMAC(self._k_mac)
        mac.update(self.capture_id)
        mac.update(bytes((RECORD_END, count)))
        for tag in self._tags:
            mac.update(tag)
        record = bytes((RECORD_END, count)) + mac.digest()
        self.close()
        self._state = "ended"
        return record

    def close(self):
        """Wipe K_enc and K_mac; the sealer cannot be used afterwards."""
        for key in (self._k_enc, self._k_mac, self._carry):
            if key is not None:
                _wipe(key)
        self._k_enc = None
        self._k_mac = None
        self._aes = None
        self._tag_mac = None
        self._state = "closed"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def wrapped_size(self):
        """Length of the wrapped data key: the ARC modulus size."""
        return modulus_size(self._arc_n)
