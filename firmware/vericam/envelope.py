"""The envelope of every MQTT message (PROTOCOL §3) and the bodies the device sends and reads.

`seal_envelope` builds one, `open_envelope` checks one in the order of §3 and raises
`EnvelopeError(reason)` with the reason labels of the spec. The device does not keep a
replay window for downlinks (§3): a receipt names the hash of the bytes it answers and a
time message is bounded by the clock rule of §9. Body codecs, each only in the direction
the device needs: capture chunk header (§5), event padding and encryption (§6), status (§7), receipt
parsing (§8) and time parsing (§9). The ARC's side of them (building receipts, decrypting
events) is the gateway's; tests/firmware/arc_side.py has a MicroPython copy for the
protocol test vectors.
"""

import struct

from vericam.hmac256 import DIGEST_SIZE, HMAC, compare_digest

MAGIC = b"VC"
VERSION = 0x01

TYPE_CAPTURE = 0x01
TYPE_EVENT = 0x02
TYPE_STATUS = 0x03
TYPE_HEARTBEAT = 0x04
TYPE_RECEIPT = 0x81
TYPE_TIME = 0x82

# topic leaf ("<direction>/<name>") of each type: PROTOCOL §2
TOPIC_LEAF = {
    TYPE_CAPTURE: "up/capture",
    TYPE_EVENT: "up/event",
    TYPE_STATUS: "up/status",
    TYPE_HEARTBEAT: "up/heartbeat",  # section 11
    TYPE_RECEIPT: "down/receipt",
    TYPE_TIME: "down/time",
}
TOPIC_ROOT = "vc/v1/"

MAX_DEVICE_ID = 32
_FIXED = 21  # bytes before the device id and body: 2 magic, 1 version, 1 type, 1 n, 8 ctr, 4 t, 4 m
MIN_ENVELOPE = _FIXED + 1 + DIGEST_SIZE

# Seconds an envelope's time may be off the receiver's clock (§3 rule 6), and the most the
# device sets its clock back from a time message (§9).
CLOCK_TOLERANCE = 300

# reason labels of the checks the device makes, in the order of §3
MALFORMED = "malformed"
TOPIC_MISMATCH = "topic_mismatch"
BAD_MAC = "bad_mac"

_ID_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789-"


class EnvelopeError(ValueError):
    """An envelope was rejected; `reason` is its label from PROTOCOL §3."""

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail


class BodyError(EnvelopeError):
    """The envelope verified but its body does not parse as its type says."""

    def __init__(self, detail):
        super().__init__(MALFORMED, detail)


def valid_device_id(device_id):
    """True if device_id (str or bytes) is 1..32 characters of [a-z0-9-]."""
    if isinstance(device_id, str):
        device_id = device_id.encode()
    if not 1 <= len(device_id) <= MAX_DEVICE_ID:
        return False
    for c in device_id:
        if c not in _ID_ALPHABET:
            return False
    return True


def topic_for(device_id, msg_type):
    """The MQTT topic an envelope of msg_type from/to device_id is published on."""
    return TOPIC_ROOT + device_id + "/" + TOPIC_LEAF[msg_type]


def _topic_device_and_leaf(topic):
    if not topic.startswith(TOPIC_ROOT):
        return None, None
    rest = topic[len(TOPIC_ROOT):]
    slash = rest.find("/")
    if slash < 0:
        return None, None
    return rest[:slash], rest[slash + 1:]


def _mac(mac_key, topic, signed):
    topic = topic.encode() if isinstance(topic, str) else topic
    mac = HMAC(mac_key)
    mac.update(struct.pack(">H", len(topic)))
    mac.update(topic)
    mac.update(signed)
    return mac.digest()


def seal_envelope(mac_key, topic, msg_type, device_id, counter, t, body):
    """The envelope bytes (a bytearray) of one message, MAC'd under mac_key.

    body is bytes-like, or a tuple of bytes-like pieces that are concatenated (a capture
    chunk passes (chunk_header, data) so its data is copied only once).
    """
    if not valid_device_id(device_id):
        raise ValueError("device id %r is not 1..32 characters of [a-z0-9-]" % (device_id,))
    if msg_type not in TOPIC_LEAF:
        raise ValueError("unknown envelope type 0x%02x" % msg_type)
    if topic != topic_for(device_id, msg_type):
        raise ValueError("type 0x%02x of device %s does not belong on topic %s"
                         % (msg_type, device_id, topic))
    if not 0 <= counter < (1 << 64) or not 0 <= t < (1 << 32):
        raise ValueError("counter must fit 64 bits and time 32 bits")
    pieces = body if isinstance(body, tuple) else (body,)
    m = 0
    for piece in pieces:
        m += len(piece)
    n = len(device_id)
    out = bytearray(_FIXED + n + m + DIGEST_SIZE)
    out[0:2] = MAGIC
    out[2] = VERSION
    out[3] = msg_type
    out[4] = n
    out[5:5 + n] = device_id.encode()
    struct.pack_into(">QII", out, 5 + n, counter, t, m)
    at = _FIXED + n
    for piece in pieces:
        out[at:at + len(piece)] = piece
        at += len(piece)
    view = memoryview(out)
    out[at:] = _mac(mac_key, topic, view[:at])
    return out


def open_envelope(mac_key, topic, payload):
    """Check an envelope received on topic -> (msg_type, device_id, counter, t, body).

    Raises EnvelopeError with reason malformed, topic_mismatch or bad_mac, checked in that
    order. body is a memoryview into payload. Choosing mac_key (unknown_device), replay and
    clock checks are the receiver's (§3).
    """
    size = len(payload)
    if size < MIN_ENVELOPE:
        raise EnvelopeError(MALFORMED, "%d bytes is too short" % size)
    view = memoryview(payload)
    if bytes(view[0:2]) != MAGIC:
        raise EnvelopeError(MALFORMED, "wrong magic")
    if view[2] != VERSION:
        raise EnvelopeError(MALFORMED, "unknown version %d" % view[2])
    msg_type = view[3]
    n = view[4]
    if not 1 <= n <= MAX_DEVICE_ID or size < _FIXED + n + DIGEST_SIZE:
        raise EnvelopeError(MALFORMED, "device id length %d" % n)
    raw_id = bytes(view[5:5 + n])
    counter, t, m = struct.unpack_from(">QII", payload, 5 + n)
    if size != _FIXED + n + m + DIGEST_SIZE:
        raise EnvelopeError(MALFORMED, "body length %d does not match payload size %d" % (m, size))
    if not valid_device_id(raw_id):
        raise EnvelopeError(MALFORMED, "device id outside [a-z0-9-]")
    device_id = raw_id.decode()
    topic_device, leaf = _topic_device_and_leaf(topic)
    if topic_device != device_id:
        raise EnvelopeError(TOPIC_MISMATCH, "device %s on topic %s" % (device_id, topic))
    if TOPIC_LEAF.get(msg_type) != leaf:
        raise EnvelopeError(TOPIC_MISMATCH, "type 0x%02x on topic %s" % (msg_type, topic))
    signed_end = _FIXED + n + m
    if not compare_digest(_mac(mac_key, topic, view[:signed_end]), view[signed_end:]):
        raise EnvelopeError(BAD_MAC)
    return msg_type, device_id, counter, t, view[_FIXED + n:signed_end]


# ---- §5 capture chunk -------------------------------------------------------------------

CHUNK_HEADER_SIZE = 32


def chunk_header(capture_id, alarm_id, total, index, count):
    """The 32 bytes that precede a chunk's data in a capture-chunk body."""
    if len(capture_id) != 16 or len(alarm_id) != 8:
        raise ValueError("capture_id is 16 bytes and alarm_id 8")
    if not 0 <= index < count <= 0xFFFF:
        raise ValueError("chunk %d of %d" % (index, count))
    return bytes(capture_id) + bytes(alarm_id) + struct.pack(">IHH", total, index, count)


# ---- §6 event -----------------------------------------------------------------------------

AES_BLOCK = 16
_MODE_CBC = 2
# An event's JSON is padded with spaces to a whole number of these before it is encrypted,
# so that every event envelope has the same size: a watcher cannot tell a disarm from an
# alarm, or a duress disarm from a normal one, by its length (PROTOCOL section 6).
EVENT_BUCKET = 256
_SPACES = b" " * EVENT_BUCKET


def pad_event(text):
    """The event's JSON (bytes) padded with spaces to a multiple of EVENT_BUCKET (at least one).

    JSON allows whitespace after the value, so a receiver parses the padded text as it is."""
    short = (-len(text)) % EVENT_BUCKET
    if not text:
        short = EVENT_BUCKET
    return bytes(text) + _SPACES[:short]


def encrypt_event(k_event, iv, plaintext):
    """iv || AES-256-CBC(K_event, iv, PKCS7(plaintext)): the body of an event envelope."""
    # Imported here, not at the top: delivery.py takes the receipt codes from this module,
    # and its properties are also checked on CPython, which has no cryptolib.
    import cryptolib

    if len(iv) != AES_BLOCK:
        raise ValueError("event IV must be 16 bytes")
    pad = AES_BLOCK - len(plaintext) % AES_BLOCK
    padded = bytearray(len(plaintext) + pad)
    padded[:len(plaintext)] = plaintext
    for i in range(len(plaintext), len(padded)):
        padded[i] = pad
    body = bytearray(AES_BLOCK + len(padded))
    body[:AES_BLOCK] = iv
    cryptolib.aes(k_event, _MODE_CBC, bytes(iv)).encrypt(padded, memoryview(body)[AES_BLOCK:])
    return bytes(body)


# ---- §7 status ----------------------------------------------------------------------------

def status_body(state, fw):
    """The status JSON: {"state": "online"|"offline", "fw": "<version>"}."""
    if state not in ("online", "offline"):
        raise ValueError("status state is online or offline, not %r" % (state,))
    return ('{"state": "%s", "fw": "%s"}' % (state, fw)).encode()


# ---- §8 receipt ---------------------------------------------------------------------------

RECEIPT_STORED = 0
RECEIPT_RESEND = 1
RECEIPT_REJECTED = 2
RECEIPT_SIZE = 50


def parse_receipt(body):
    """A receipt body -> (capture_id, status, frames, sha256)."""
    if len(body) != RECEIPT_SIZE:
        raise BodyError("receipt body of %d bytes, expected %d" % (len(body), RECEIPT_SIZE))
    status = body[16]
    if status > RECEIPT_REJECTED:
        raise BodyError("unknown receipt status %d" % status)
    return bytes(body[0:16]), status, body[17], bytes(body[18:50])


# ---- §9 time ------------------------------------------------------------------------------

def parse_time(body):
    """A time body -> milliseconds since the Unix epoch."""
    if len(body) != 8:
        raise BodyError("time body of %d bytes, expected 8" % len(body))
    return struct.unpack(">Q", body)[0]
