"""Sealed captures (PROTOCOL.md §4), the deliveries that carry them and their chunks (§5): parse, open, build.

A capture an alarm claimed travels as a delivery: its release record (the slot key, wrapped to
the ARC), the sealed capture as it lay on the device's flash, and zero padding up to a size
bucket. `open_delivery` opens the release record, then checks the header MAC, each frame's tag
before it decrypts that frame, the end record and the padding, and returns the frames; or, for
a cover delivery (§4.5), says so and returns none. Every length is checked against the bytes
present, so malformed input raises a `ProtocolError` and never an IndexError or struct.error.
`seal`, `release` and `delivery` are the device's side, with every random input passed in, for
test vectors and tests.
"""

from __future__ import annotations

import hmac as _hmac
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.protocol.errors import BadCapture, CaptureTooLarge, Malformed, WrongArcKey
from gateway.protocol.keys import capture_keys, hmac_sha256, oaep_encrypt, release_seed

CAP_MAGIC = b"VCAP"
CAP_VERSION = 2
REC_FRAME = 0x46
REC_END = 0x45
HEADER_FIXED = 34          # header bytes before the wrapped key
META_SIZE = 32             # meta IV and the one ciphertext block of trigger and time
FRAME_FIXED = 22           # frame record bytes before the ciphertext
FRAME_INNER = 8            # frame time and JPEG length, encrypted in front of the JPEG
END_SIZE = 34
MAX_FRAMES = 255

REL_MAGIC = b"VREL"
REL_FIXED = 16             # release record bytes before the wrapped payload
KIND_CAPTURE = 0
KIND_COVER = 1
BUCKET = 16 * 1024         # a delivery is padded to a multiple of this

CHUNK_HEAD = struct.Struct(">16s8sIHH")
MAX_CHUNKS = 1024
MAX_CAPTURE_BYTES = 4 * 1024 * 1024

TRIGGERS = {1: "disarm", 2: "intrusion", 3: "smoke", 4: "duress", 5: "tamper", 6: "sos",
            7: "panic", 8: "silent"}
TRIGGER_CODES = {v: k for k, v in TRIGGERS.items()}


@dataclass(frozen=True)
class Chunk:
    capture_id: bytes
    alarm_id: bytes
    total: int
    index: int
    count: int
    data: bytes


def parse_chunk(body: bytes) -> Chunk:
    """§5 chunk body. Raises `Malformed` or `CaptureTooLarge`."""
    if len(body) < CHUNK_HEAD.size:
        raise Malformed(f"capture chunk of {len(body)} bytes is shorter than its 32-byte header")
    capture_id, alarm_id, total, index, count = CHUNK_HEAD.unpack_from(body, 0)
    data = bytes(body[CHUNK_HEAD.size:])
    if count == 0 or index >= count:
        raise Malformed(f"chunk index {index} of count {count} is impossible")
    if count > MAX_CHUNKS or total > MAX_CAPTURE_BYTES:
        raise CaptureTooLarge(f"capture of {count} chunks / {total} bytes is over the limit "
                              f"({MAX_CHUNKS} chunks, {MAX_CAPTURE_BYTES} bytes): send smaller captures")
    if len(data) > total or (count == 1 and len(data) != total):
        raise Malformed(f"chunk of {len(data)} bytes does not fit a capture of {total} bytes")
    if not data:
        raise Malformed("capture chunk carries no data")
    return Chunk(capture_id, alarm_id, total, index, count, data)


def build_chunk(capture_id: bytes, alarm_id: bytes, total: int, index: int, count: int,
                data: bytes) -> bytes:
    return CHUNK_HEAD.pack(capture_id, alarm_id, total, index, count) + data


def split_chunks(sealed: bytes, capture_id: bytes, alarm_id: bytes, chunk_size: int = 8192) -> list[bytes]:
    """Chunk bodies of one sealed capture: all the same size but the last."""
    pieces = [sealed[i:i + chunk_size] for i in range(0, len(sealed), chunk_size)] or [b""]
    return [build_chunk(capture_id, alarm_id, len(sealed), i, len(pieces), p)
            for i, p in enumerate(pieces)]


@dataclass(frozen=True)
class Frame:
    index: int
    t: int
    jpeg: bytes


@dataclass
class OpenedCapture:
    """What a delivery held: the capture's verified frames, or nothing if it was cover."""

    capture_id: bytes
    trigger: int
    captured_at: int
    arc_key_id: bytes
    frames: list[Frame] = field(default_factory=list)
    cover: bool = False
    frames_claimed: int = 0  # a cover's stand-in for the frame count, echoed in its receipt

    @property
    def trigger_name(self) -> str:
        return "cover" if self.cover else TRIGGERS.get(self.trigger, f"trigger-{self.trigger}")


def _cbc_decrypt(key: bytes, iv: bytes, ct: bytes, what: str) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(ct) + dec.finalize()
    unpad = sym_padding.PKCS7(128).unpadder()
    try:
        return unpad.update(padded) + unpad.finalize()
    except ValueError:
        raise BadCapture(f"{what} padding is wrong although its MAC verified: the device sealed it "
                         "wrongly; check the firmware's PKCS7") from None


def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    pad = sym_padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(pad.update(plaintext) + pad.finalize()) + enc.finalize()


def _oaep_decrypt(arc_private_key, wrapped: bytes, what: str) -> bytes:
    try:
        return arc_private_key.decrypt(wrapped, asym_padding.OAEP(
            mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    except ValueError:
        raise BadCapture(f"the {what} does not decrypt with this gateway's ARC key") from None


@dataclass(frozen=True)
class Release:
    """A release record (§4.4), opened: which capture, its slot key, and whether it is cover."""

    kind: int
    frames: int
    capture_id: bytes
    slot_key: bytes
    arc_key_id: bytes
    size: int  # bytes of the record in the delivery


def parse_release_head(data: bytes) -> tuple[bytes, int]:
    """(arc_key_id, record size) of the release record that starts a delivery."""
    if len(data) < REL_FIXED:
        raise Malformed(f"delivery of {len(data)} bytes is shorter than a release record")
    magic, version, _reserved, key_id, w = struct.unpack_from(">4sBB8sH", data, 0)
    if magic != REL_MAGIC:
        raise Malformed("delivery does not start with a release record (b'VREL')")
    if version != CAP_VERSION:
        raise Malformed(f"release record version {version} is not supported (this gateway opens {CAP_VERSION})")
    if w == 0 or len(data) < REL_FIXED + w:
        raise Malformed(f"delivery too short for a release record wrapping {w} bytes")
    return key_id, REL_FIXED + w


def open_release(data: bytes, arc_private_key, expected_key_id: bytes | None = None) -> Release:
    key_id, size = parse_release_head(data)
    if expected_key_id is not None and key_id != expected_key_id:
        raise WrongArcKey(f"capture sealed to ARC key {key_id.hex()}, this gateway holds "
                          f"{expected_key_id.hex()}: give the device this gateway's ARC public key")
    payload = _oaep_decrypt(arc_private_key, data[REL_FIXED:size], "release record")
    if len(payload) != 50:
        raise BadCapture(f"the release record holds {len(payload)} bytes, not 50")
    kind, frames = payload[0], payload[1]
    if kind not in (KIND_CAPTURE, KIND_COVER):
        raise BadCapture(f"release record of unknown kind {kind}")
    return Release(kind, frames, payload[2:18], payload[18:50], key_id, size)


def parse_header(sealed: bytes, at: int = 0) -> tuple[bytes, bytes, bytes, bytes, bytes, int]:
    """(capture_id, arc_key_id, wrapped DK, meta, header_mac, header end) of a sealed header at `at`."""
    if len(sealed) < at + HEADER_FIXED:
        raise Malformed("sealed capture is shorter than its header")
    magic, version, _r1, _r2, capture_id, key_id, w = struct.unpack_from(">4sBBH16s8sH", sealed, at)
    if magic != CAP_MAGIC:
        raise Malformed("sealed capture does not start with b'VCAP'")
    if version != CAP_VERSION:
        raise Malformed(f"sealed capture version {version} is not supported (this gateway opens {CAP_VERSION})")
    end = at + HEADER_FIXED + w + META_SIZE + 32
    if w == 0 or len(sealed) < end:
        raise Malformed(f"sealed capture too short for a wrapped key of {w} bytes")
    wrapped = sealed[at + HEADER_FIXED:at + HEADER_FIXED + w]
    meta = sealed[at + HEADER_FIXED + w:end - 32]
    return capture_id, key_id, wrapped, meta, sealed[end - 32:end], end


def open_sealed(sealed: bytes, arc_private_key, slot_key: bytes, at: int = 0,
                expected_key_id: bytes | None = None) -> tuple[OpenedCapture, int]:
    """Open the sealed capture that starts at `at` (§4) with the ARC key and its slot key.

    Returns the verified, decrypted capture and the offset just past its end record; what
    follows it is the caller's (a delivery's zero padding, §4.5)."""
    if not isinstance(sealed, bytes):
        sealed = bytes(sealed)
    if len(slot_key) != 32:
        raise BadCapture(f"a slot key is 32 bytes, not {len(slot_key)}")
    capture_id, key_id, wrapped, meta, header_mac, pos = parse_header(sealed, at)
    if expected_key_id is not None and key_id != expected_key_id:
        raise WrongArcKey(f"capture sealed to ARC key {key_id.hex()}, this gateway holds "
                          f"{expected_key_id.hex()}: give the device this gateway's ARC public key")
    dk = _oaep_decrypt(arc_private_key, wrapped, "wrapped data key")
    if len(dk) != 32:
        raise BadCapture(f"the unwrapped data key is {len(dk)} bytes, not 32")
    k_enc, k_mac, k_meta = capture_keys(dk, slot_key, capture_id)
    if not _hmac.compare_digest(hmac_sha256(k_mac, sealed[at:pos - 32]), header_mac):
        raise BadCapture("header MAC of the sealed capture does not verify (or the slot key is not its own)")
    inner = _cbc_decrypt(k_meta, meta[:16], meta[16:], "header")
    if len(inner) != 5:
        raise BadCapture(f"the sealed header's trigger and time are {len(inner)} bytes, not 5")
    trigger, captured_at = struct.unpack(">BI", inner)
    opened = OpenedCapture(capture_id, trigger, captured_at, key_id)
    tags: list[bytes] = []
    while True:
        if pos >= len(sealed):
            raise BadCapture("sealed capture ends without an end record: truncated")
        rec = sealed[pos]
        if rec == REC_END:
            if len(sealed) - pos < END_SIZE:
                raise BadCapture("end record truncated")
            count = sealed[pos + 1]
            if count != len(tags):
                raise BadCapture(f"end record says {count} frames, the capture holds {len(tags)}")
            expect = hmac_sha256(k_mac, capture_id + b"E" + bytes([count]) + b"".join(tags))
            if not _hmac.compare_digest(expect, sealed[pos + 2:pos + END_SIZE]):
                raise BadCapture("end record MAC does not verify: frames dropped, reordered or truncated")
            return opened, pos + END_SIZE
        if rec != REC_FRAME:
            raise Malformed(f"unknown record type 0x{rec:02x} in sealed capture")
        if len(sealed) - pos < FRAME_FIXED + 16 + 32:
            raise BadCapture("frame record truncated")
        index, c, iv = struct.unpack_from(">BI16s", sealed, pos + 1)
        if c == 0 or c % 16:
            raise Malformed(f"frame {index} has {c} bytes of ciphertext, not a positive multiple of 16")
        end = pos + FRAME_FIXED + c
        if end + 32 > len(sealed):
            raise BadCapture(f"frame {index} claims {c} bytes, more than the capture holds")
        tag = sealed[end:end + 32]
        if not _hmac.compare_digest(hmac_sha256(k_mac, capture_id + sealed[pos:end]), tag):
            raise BadCapture(f"tag of frame {index} does not verify: the frame was altered")
        if index != len(tags):
            raise BadCapture(f"frame {index} arrived where frame {len(tags)} belongs")
        plain = _cbc_decrypt(k_enc, iv, sealed[pos + FRAME_FIXED:end], f"frame {index}")
        if len(plain) < FRAME_INNER:
            raise BadCapture(f"frame {index} is too short to hold its time and length")
        t, p = struct.unpack_from(">II", plain, 0)
        if len(plain) - FRAME_INNER != p:
            raise BadCapture(f"frame {index} decrypts to {len(plain) - FRAME_INNER} bytes, it says {p}")
        opened.frames.append(Frame(index, t, plain[FRAME_INNER:]))
        tags.append(tag)
        if len(tags) > MAX_FRAMES:
            raise BadCapture("more than 255 frames in one capture")
        pos = end + 32


def open_delivery(data: bytes, arc_private_key, expected_key_id: bytes | None = None) -> OpenedCapture:
    """Open what a device delivered for an alarm (§4.4, §4.5): release record, sealed capture, padding."""
    data = bytes(data)
    rel = open_release(data, arc_private_key, expected_key_id)
    if rel.kind == KIND_COVER:
        return OpenedCapture(rel.capture_id, 0, 0, rel.arc_key_id, cover=True, frames_claimed=rel.frames)
    opened, end = open_sealed(data, arc_private_key, rel.slot_key, rel.size, rel.arc_key_id)
    if opened.capture_id != rel.capture_id:
        raise BadCapture("the release record names another capture than the sealed header")
    if rel.frames != len(opened.frames):
        raise BadCapture(f"the release record says {rel.frames} frames, the capture holds {len(opened.frames)}")
    if data[end:].strip(b"\0"):
        raise Malformed(f"{len(data) - end} bytes after the end record are not zero padding")
    return opened


def padded_size(size: int, bucket: int = BUCKET) -> int:
    """A delivery of `size` bytes padded to a whole number of buckets (§4.5)."""
    return bucket * max(1, -(-size // bucket))


def seal(frames: list[tuple[int, bytes]], *, trigger: int, capture_id: bytes, captured_at: int,
         arc_key_id: bytes, dk: bytes, slot_key: bytes, wrapped_key: bytes, meta_iv: bytes,
         ivs: list[bytes]) -> bytes:
    """The device's side of §4, with every random input given: `frames` is [(t, jpeg)],
    `wrapped_key` is RSA-OAEP(arc_public_key, dk) computed by the caller."""
    if (len(capture_id) != 16 or len(dk) != 32 or len(slot_key) != 32 or len(arc_key_id) != 8
            or len(meta_iv) != 16 or len(ivs) != len(frames)):
        raise ValueError("seal: capture_id is 16 bytes, dk and slot_key 32, arc_key_id 8, "
                         "meta_iv 16, one IV per frame")
    k_enc, k_mac, k_meta = capture_keys(dk, slot_key, capture_id)
    header = (CAP_MAGIC + bytes([CAP_VERSION]) + b"\0\0\0" + capture_id + arc_key_id
              + struct.pack(">H", len(wrapped_key)) + wrapped_key
              + meta_iv + cbc_encrypt(k_meta, meta_iv, struct.pack(">BI", trigger, captured_at)))
    out = [header, hmac_sha256(k_mac, header)]
    tags = []
    for i, ((t, jpeg), iv) in enumerate(zip(frames, ivs)):
        ct = cbc_encrypt(k_enc, iv, struct.pack(">II", t, len(jpeg)) + jpeg)
        rec = struct.pack(">BBI", REC_FRAME, i, len(ct)) + iv + ct
        tag = hmac_sha256(k_mac, capture_id + rec)
        out += [rec, tag]
        tags.append(tag)
    out.append(bytes([REC_END, len(frames)])
               + hmac_sha256(k_mac, capture_id + b"E" + bytes([len(frames)]) + b"".join(tags)))
    return b"".join(out)


def release(*, kind: int, frames: int, capture_id: bytes, slot_key: bytes, arc_n: int, arc_e: int,
            arc_key_id: bytes) -> bytes:
    """The device's side of §4.4: the release record of a capture (or of a cover, kind 1)."""
    if len(capture_id) != 16 or len(slot_key) != 32 or len(arc_key_id) != 8 or not 0 <= frames <= MAX_FRAMES:
        raise ValueError("release: capture_id is 16 bytes, slot_key 32, arc_key_id 8, frames 0..255")
    payload = bytes([kind, frames]) + capture_id + slot_key
    wrapped = oaep_encrypt(arc_n, arc_e, payload, release_seed(slot_key, capture_id))
    return REL_MAGIC + bytes([CAP_VERSION, 0]) + arc_key_id + struct.pack(">H", len(wrapped)) + wrapped


def delivery(release_record: bytes, sealed: bytes, bucket: int = BUCKET) -> bytes:
    """Release record, sealed capture and zero padding to the next bucket: what goes on the wire."""
    size = len(release_record) + len(sealed)
    return release_record + sealed + b"\0" * (padded_size(size, bucket) - size)
