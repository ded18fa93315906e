"""Sealed captures (PROTOCOL.md §4) and their chunks (§5): parse, open and build.

`open_sealed` checks the header MAC, then each frame's tag before it decrypts that frame, then
the end record, and returns the frames. Every length is checked against the bytes present, so
malformed input raises a `ProtocolError` and never an IndexError or struct.error.
`seal` is the device's side, with every random input passed in, for test vectors and tests.
"""

from __future__ import annotations

import hmac as _hmac
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.protocol.errors import BadCapture, CaptureTooLarge, Malformed, WrongArcKey
from gateway.protocol.keys import frame_keys, hmac_sha256

CAP_MAGIC = b"VCAP"
CAP_VERSION = 1
REC_FRAME = 0x46
REC_END = 0x45
HEADER_FIXED = 38
FRAME_FIXED = 26
MAX_FRAMES = 255

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
    capture_id: bytes
    trigger: int
    captured_at: int
    arc_key_id: bytes
    frames: list[Frame] = field(default_factory=list)

    @property
    def trigger_name(self) -> str:
        return TRIGGERS.get(self.trigger, f"trigger-{self.trigger}")


def _cbc_decrypt(key: bytes, iv: bytes, ct: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(ct) + dec.finalize()
    unpad = sym_padding.PKCS7(128).unpadder()
    try:
        return unpad.update(padded) + unpad.finalize()
    except ValueError:
        raise BadCapture("frame padding is wrong although its tag verified: the device sealed it "
                         "wrongly; check the firmware's PKCS7") from None


def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    pad = sym_padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(pad.update(plaintext) + pad.finalize()) + enc.finalize()


def parse_header(sealed: bytes) -> tuple[int, bytes, int, bytes, bytes, bytes, int]:
    """(trigger, capture_id, captured_at, arc_key_id, wrapped, header_mac, header_len)."""
    if len(sealed) < HEADER_FIXED:
        raise Malformed(f"sealed capture of {len(sealed)} bytes is shorter than its header")
    magic, version, trigger, reserved, capture_id, captured_at, key_id, w = struct.unpack_from(
        ">4sBBH16sI8sH", sealed, 0)
    if magic != CAP_MAGIC:
        raise Malformed("sealed capture does not start with b'VCAP'")
    if version != CAP_VERSION:
        raise Malformed(f"sealed capture version {version} is not supported (this gateway opens 1)")
    if w == 0 or len(sealed) < HEADER_FIXED + w + 32:
        raise Malformed(f"sealed capture too short for a wrapped key of {w} bytes")
    wrapped = sealed[HEADER_FIXED:HEADER_FIXED + w]
    mac = sealed[HEADER_FIXED + w:HEADER_FIXED + w + 32]
    return trigger, capture_id, captured_at, key_id, wrapped, mac, HEADER_FIXED + w + 32


def open_sealed(sealed: bytes, arc_private_key, expected_key_id: bytes | None = None) -> OpenedCapture:
    """Unwrap DK with the ARC private key and return the verified, decrypted frames (§4)."""
    sealed = bytes(sealed)
    trigger, capture_id, captured_at, key_id, wrapped, header_mac, pos = parse_header(sealed)
    if expected_key_id is not None and key_id != expected_key_id:
        raise WrongArcKey(f"capture sealed to ARC key {key_id.hex()}, this gateway holds "
                          f"{expected_key_id.hex()}: give the device this gateway's ARC public key")
    try:
        dk = arc_private_key.decrypt(wrapped, asym_padding.OAEP(
            mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    except ValueError:
        raise BadCapture("the wrapped data key does not decrypt with this gateway's ARC key") from None
    if len(dk) != 32:
        raise BadCapture(f"the unwrapped data key is {len(dk)} bytes, not 32")
    k_enc, k_mac = frame_keys(dk, capture_id)
    if not _hmac.compare_digest(hmac_sha256(k_mac, sealed[:pos - 32]), header_mac):
        raise BadCapture("header MAC of the sealed capture does not verify")
    opened = OpenedCapture(capture_id, trigger, captured_at, key_id)
    tags: list[bytes] = []
    while True:
        if pos >= len(sealed):
            raise BadCapture("sealed capture ends without an end record: truncated")
        rec = sealed[pos]
        if rec == REC_END:
            if len(sealed) - pos != 34:
                raise BadCapture(f"end record must be 34 bytes and last; {len(sealed) - pos} bytes remain")
            count = sealed[pos + 1]
            if count != len(tags):
                raise BadCapture(f"end record says {count} frames, the capture holds {len(tags)}")
            expect = hmac_sha256(k_mac, capture_id + b"E" + bytes([count]) + b"".join(tags))
            if not _hmac.compare_digest(expect, sealed[pos + 2:pos + 34]):
                raise BadCapture("end record MAC does not verify: frames dropped, reordered or truncated")
            return opened
        if rec != REC_FRAME:
            raise Malformed(f"unknown record type 0x{rec:02x} in sealed capture")
        if len(sealed) - pos < FRAME_FIXED + 16 + 32:
            raise BadCapture("frame record truncated")
        index, t, p, iv = struct.unpack_from(">BII16s", sealed, pos + 1)
        c = 16 * (p // 16 + 1)
        end = pos + FRAME_FIXED + c
        if end + 32 > len(sealed):
            raise BadCapture(f"frame {index} claims {p} bytes, more than the capture holds")
        tag = sealed[end:end + 32]
        if not _hmac.compare_digest(hmac_sha256(k_mac, capture_id + sealed[pos:end]), tag):
            raise BadCapture(f"tag of frame {index} does not verify: the frame was altered")
        if index != len(tags):
            raise BadCapture(f"frame {index} arrived where frame {len(tags)} belongs")
        jpeg = _cbc_decrypt(k_enc, iv, sealed[pos + FRAME_FIXED:end])
        if len(jpeg) != p:
            raise BadCapture(f"frame {index} decrypts to {len(jpeg)} bytes, header says {p}")
        opened.frames.append(Frame(index, t, jpeg))
        tags.append(tag)
        if len(tags) > MAX_FRAMES:
            raise BadCapture("more than 255 frames in one capture")
        pos = end + 32


def seal(frames: list[tuple[int, bytes]], *, trigger: int, capture_id: bytes, captured_at: int,
         arc_key_id: bytes, dk: bytes, wrapped_key: bytes, ivs: list[bytes]) -> bytes:
    """The device's side of §4, with every random input given: `frames` is [(t, jpeg)],
    `wrapped_key` is RSA-OAEP(arc_public_key, dk) computed by the caller."""
    if len(capture_id) != 16 or len(dk) != 32 or len(arc_key_id) != 8 or len(ivs) != len(frames):
        raise ValueError("seal: capture_id is 16 bytes, dk 32, arc_key_id 8, one IV per frame")
    k_enc, k_mac = frame_keys(dk, capture_id)
    header = (CAP_MAGIC + bytes([CAP_VERSION, trigger]) + b"\0\0" + capture_id
              + struct.pack(">I", captured_at) + arc_key_id + struct.pack(">H", len(wrapped_key))
              + wrapped_key)
    out = [header, hmac_sha256(k_mac, header)]
    tags = []
    for i, ((t, jpeg), iv) in enumerate(zip(frames, ivs)):
        rec = struct.pack(">BBII", REC_FRAME, i, t, len(jpeg)) + iv + cbc_encrypt(k_enc, iv, jpeg)
        tag = hmac_sha256(k_mac, capture_id + rec)
        out += [rec, tag]
        tags.append(tag)
    out.append(bytes([REC_END, len(frames)])
               + hmac_sha256(k_mac, capture_id + b"E" + bytes([len(frames)]) + b"".join(tags)))
    return b"".join(out)
