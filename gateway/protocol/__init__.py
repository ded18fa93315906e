"""The wire protocol as the gateway speaks it (docs/PROTOCOL.md): envelopes, keys, sealed captures, events.

Pure functions and small classes, no I/O: bytes and time in, values or a `ProtocolError` out.
"""

from gateway.protocol.capture import (Chunk, Frame, OpenedCapture, TRIGGERS, build_chunk, delivery, open_delivery,
                                     open_sealed, parse_chunk, release, seal, split_chunks)
from gateway.protocol.envelope import (Envelope, ReplayWindow, T_CAPTURE, T_EVENT, T_RECEIPT, T_STATUS, T_TIME, build,
                       build_receipt_body, build_time_body, open_envelope, parse, topic_for)
from gateway.protocol.errors import ProtocolError
from gateway.protocol.event import decrypt_event, encrypt_event, parse_status
from gateway.protocol.keys import DeviceKeys, arc_key_id, hkdf, hmac_sha256

__all__ = [
    "Chunk", "Frame", "OpenedCapture", "TRIGGERS", "build_chunk", "delivery", "open_delivery", "open_sealed",
    "parse_chunk", "release", "seal", "split_chunks", "Envelope", "ReplayWindow", "T_CAPTURE", "T_EVENT", "T_RECEIPT", "T_STATUS",
    "T_TIME", "build", "build_receipt_body", "build_time_body", "open_envelope", "parse", "topic_for",
    "ProtocolError", "decrypt_event", "encrypt_event", "parse_status", "DeviceKeys", "arc_key_id",
    "hkdf", "hmac_sha256",
]
