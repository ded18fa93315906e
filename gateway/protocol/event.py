"""Activity events (PROTOCOL.md §6) and status messages (§7): decrypt, validate, build.

An event's JSON is padded with spaces to a multiple of `EVENT_BUCKET` bytes before it is
encrypted, so every event envelope has the same size (§6). JSON allows whitespace after the
value, so `decrypt_event` reads a padded event, and an unpadded one from older firmware, alike.
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.protocol.errors import BadEvent, Malformed

EVENT_KINDS = ("alarm", "alarm_cancelled", "armed", "disarmed", "technical", "config")
STATES = ("online", "offline")
EVENT_BUCKET = 256


def pad_event(raw: bytes) -> bytes:
    """The event's JSON padded with spaces to a whole number of EVENT_BUCKET bytes (at least one)."""
    return raw + b" " * ((-len(raw)) % EVENT_BUCKET or (0 if raw else EVENT_BUCKET))


def decrypt_event(k_event: bytes, body: bytes) -> dict:
    """iv(16) || AES-256-CBC(K_event, iv, PKCS7(json)) -> the event as a dict."""
    if len(body) < 32 or len(body) % 16:
        raise Malformed(f"event body of {len(body)} bytes is not iv plus whole AES blocks")
    dec = Cipher(algorithms.AES(k_event), modes.CBC(body[:16])).decryptor()
    padded = dec.update(body[16:]) + dec.finalize()
    unpad = sym_padding.PKCS7(128).unpadder()
    try:
        raw = unpad.update(padded) + unpad.finalize()
        event = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadEvent("event does not decrypt to UTF-8 JSON: the device's K_event or "
                       "padding is wrong") from None
    if not isinstance(event, dict) or event.get("kind") not in EVENT_KINDS:
        raise BadEvent(f"event is not an object with a kind in {EVENT_KINDS}")
    return event


def encrypt_event(k_event: bytes, iv: bytes, event: dict | bytes) -> bytes:
    """The body of an event envelope. A dict is encoded and padded as a device does (`pad_event`);
    bytes are encrypted exactly as given (a test vector's plaintext)."""
    raw = event if isinstance(event, bytes) else pad_event(json.dumps(event, separators=(",", ":")).encode())
    pad = sym_padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(k_event), modes.CBC(iv)).encryptor()
    return iv + enc.update(pad.update(raw) + pad.finalize()) + enc.finalize()


def as_recorded(event: dict) -> dict:
    """A disarm as the activity log keeps it (PROTOCOL.md §6, "Disarms"); other events as they are.

    On the wire every disarm carries `duress` and an `alarm_id`, so that a duress disarm looks
    like any other. A duress disarm is the duress alarm: it is recorded as the alarm event the
    device sent before issue 13 (kind `alarm`, code `duress`, its alarm id and user slot), and
    raised, linked and forwarded as that. A normal disarm's alarm id names nothing, so it and
    the `duress` flag are left out of its record. A disarm without `duress` (older firmware)
    is recorded as it comes."""
    if event.get("kind") != "disarmed" or "duress" not in event:
        return event
    recorded = {k: v for k, v in event.items() if k not in ("duress", "alarm_id")}
    if event["duress"] is not False:
        # Anything but a plain false is the duress alarm: a malformed flag must not hide one.
        recorded.update(kind="alarm", code="duress")
        if isinstance(event.get("alarm_id"), str):
            recorded["alarm_id"] = event["alarm_id"]
    return recorded


def parse_status(body: bytes) -> dict:
    try:
        status = json.loads(bytes(body).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise Malformed("status body is not UTF-8 JSON") from None
    if not isinstance(status, dict) or status.get("state") not in STATES:
        raise Malformed('status is not an object with "state": "online" or "offline"')
    return status
