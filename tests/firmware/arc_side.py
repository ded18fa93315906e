"""The ARC's side of the device's bodies (PROTOCOL §5, §6, §8, §9), on MicroPython, for the test vectors.

The device only sends capture chunks and events and only reads receipts and time messages,
so building receipts and time messages and opening chunks and events is not firmware code.
The gateway has its own implementation (gateway/protocol/); this copy lets
make_vectors.py and check_vectors.py write and check every vector with MicroPython alone.
"""

import struct

import cryptolib

from vericam.envelope import AES_BLOCK, CHUNK_HEADER_SIZE, BodyError

_MODE_CBC = 2


def parse_chunk(body):
    """A capture-chunk body -> (capture_id, alarm_id, total, index, count, data)."""
    if len(body) < CHUNK_HEADER_SIZE:
        raise BodyError("capture chunk body of %d bytes" % len(body))
    view = memoryview(body)
    total, index, count = struct.unpack_from(">IHH", body, 24)
    if index >= count:
        raise BodyError("chunk index %d of %d" % (index, count))
    return bytes(view[0:16]), bytes(view[16:24]), total, index, count, view[CHUNK_HEADER_SIZE:]


def decrypt_event(k_event, body):
    """The JSON plaintext of an event body; BodyError if it is not well padded."""
    size = len(body)
    if size < 2 * AES_BLOCK or size % AES_BLOCK:
        raise BodyError("event body of %d bytes" % size)
    view = memoryview(body)
    plain = bytearray(size - AES_BLOCK)
    cryptolib.aes(k_event, _MODE_CBC, bytes(view[:AES_BLOCK])).decrypt(view[AES_BLOCK:], plain)
    pad = plain[-1]
    if not 1 <= pad <= AES_BLOCK:
        raise BodyError("event padding")
    for i in range(len(plain) - pad, len(plain)):
        if plain[i] != pad:
            raise BodyError("event padding")
    return bytes(plain[:len(plain) - pad])


def receipt_body(capture_id, status, frames, sha256):
    """capture_id(16) || status(1) || frames(1) || sha256(32)."""
    if len(capture_id) != 16 or len(sha256) != 32:
        raise ValueError("capture_id is 16 bytes and sha256 32")
    return bytes(capture_id) + bytes((status, frames)) + bytes(sha256)


def time_body(unix_ms):
    """u64 milliseconds since the Unix epoch."""
    return struct.pack(">Q", unix_ms)
