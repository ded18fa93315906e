"""Writing the firmware's protocol test vectors (PROTOCOL §10), on MicroPython.

    micropython tests/firmware/make_vectors.py [OUT_DIR]

OUT_DIR defaults to tests/vectors/firmware. Every random input is fixed, so running it
again writes byte-identical files. The input keys of each kind are listed in
tests/firmware/check_vectors.py and in PROTOCOL §10. The RSA key is the TEST-ONLY ARC key
of tests/vectors/test_arc_key.json.
"""

import json
import os
import sys


def parent(path):
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else ("/" if cut == 0 else ".")


REPO = parent(parent(parent(__file__)))
sys.path.append(REPO + "/firmware")  # so it also runs without MICROPYPATH
sys.path.append(REPO + "/tests/firmware")  # the ARC's side of the bodies

from arc_side import receipt_body, time_body
from vericam import FW_VERSION
from vericam.envelope import (RECEIPT_STORED, TYPE_CAPTURE, TYPE_EVENT, TYPE_RECEIPT, TYPE_STATUS,
                              TYPE_TIME, chunk_header, encrypt_event, pad_event, seal_envelope,
                              status_body, topic_for)
from vericam.hkdf import hkdf_sha256
from vericam.hmac256 import hmac_sha256
from vericam.keys import INFO_DOWN, INFO_EVENT, INFO_UP, DeviceKeys
from vericam.seal import (INFO_FRAME_ENC, INFO_FRAME_MAC, INFO_META_ENC, RELEASE_CAPTURE, RELEASE_COVER,
                          TRIGGER_INTRUSION, CaptureSealer, padded_size, release_record)

ARC_KEY_FILE = REPO + "/tests/vectors/test_arc_key.json"
TOP_KEYS = ("name", "kind", "inputs", "output")


# ---- deterministic JSON (MicroPython's json has no indent and no key order) ------------

def _string(text):
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif code < 0x20:
            out.append("\\u%04x" % code)
        elif code > 0x7E:
            raise ValueError("vector strings are ASCII")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _ordered_keys(obj):
    first = [k for k in TOP_KEYS if k in obj]
    return first + sorted(k for k in obj if k not in TOP_KEYS)


def to_json(value, level=0):
    """JSON text with 2-space indentation and a fixed key order (name, kind, inputs, output, then sorted)."""
    pad = "  " * (level + 1)
    end = "  " * level
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(pad + to_json(v, level + 1) for v in value) + "\n" + end + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [pad + _string(k) + ": " + to_json(value[k], level + 1) for k in _ordered_keys(value)]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    raise TypeError("cannot write %r as vector JSON" % (value,))


def write_vector(out_dir, name, kind, inputs, output):
    doc = {"name": name, "kind": kind, "inputs": inputs, "output": output.hex()}
    with open(out_dir + "/" + name + ".json", "w") as f:
        f.write(to_json(doc) + "\n")
    print("wrote", name)


# ---- fixed inputs ----------------------------------------------------------------------

def pattern(label, size):
    """`size` fixed, random-looking bytes named by label (SHA-256 in counter mode)."""
    import hashlib
    out = bytearray()
    counter = 0
    while len(out) < size:
        h = hashlib.sha256(label.encode())
        h.update(bytes((counter >> 8, counter & 0xFF)))
        out.extend(h.digest())
        counter += 1
    return bytes(out[:size])


DEVICE_ID = "cam-hall-01"
DEVICE_KEY = pattern("device key", 32)
T = 1795300000


def hmac_vectors(out):
    cases = [
        ("hmac-rfc4231-case1", b"\x0b" * 20, b"Hi There"),
        ("hmac-rfc4231-case6", b"\xaa" * 131,
         b"Test Using Larger Than Block-Size Key - Hash Key First"),
        ("hmac-empty-message", pattern("hmac key", 32), b""),
        ("hmac-two-blocks", pattern("hmac key 2", 64), pattern("hmac msg", 200)),
    ]
    for name, key, msg in cases:
        write_vector(out, name, "hmac", {"key": key.hex(), "msg": msg.hex()},
                     hmac_sha256(key, msg))


def hkdf_vectors(out):
    dk = pattern("data key", 32)
    sk = pattern("slot key", 32)
    capture_id = pattern("capture id", 16)
    cases = [
        ("hkdf-rfc5869-case1", b"\x0b" * 22, bytes(range(13)), bytes(range(0xF0, 0xFA)), 42),
        ("hkdf-rfc5869-case3", b"\x0b" * 22, b"", b"", 42),
        ("hkdf-device-up", DEVICE_KEY, b"", INFO_UP, 32),
        ("hkdf-device-down", DEVICE_KEY, b"", INFO_DOWN, 32),
        ("hkdf-device-event", DEVICE_KEY, b"", INFO_EVENT, 32),
        ("hkdf-frame-enc", dk + sk, capture_id, INFO_FRAME_ENC, 32),
        ("hkdf-frame-mac", dk + sk, capture_id, INFO_FRAME_MAC, 32),
        ("hkdf-meta-enc", dk + sk, capture_id, INFO_META_ENC, 32),
    ]
    for name, ikm, salt, info, length in cases:
        write_vector(out, name, "hkdf",
                     {"ikm": ikm.hex(), "salt": salt.hex(), "info": info.hex(), "length": length},
                     hkdf_sha256(ikm, salt, info, length))


def envelope_vector(out, name, msg_type, counter, t, body, described):
    keys = DeviceKeys(DEVICE_KEY)
    topic = topic_for(DEVICE_ID, msg_type)
    inputs = {"device_key": DEVICE_KEY.hex(), "topic": topic, "type": msg_type,
              "device_id": DEVICE_ID, "counter": counter, "time": t, "body": bytes(body).hex()}
    inputs.update(described)
    envelope = seal_envelope(keys.mac_key(msg_type), topic, msg_type, DEVICE_ID, counter, t, body)
    write_vector(out, name, "envelope", inputs, envelope)


def envelope_vectors(out, sent):
    """`sent`: what the device sends for the capture (§4.5): release, sealed capture, padding."""
    keys = DeviceKeys(DEVICE_KEY)
    capture_id = pattern("capture id", 16)
    alarm_id = pattern("alarm id", 8)
    data = sent[:200]
    count = (len(sent) + 199) // 200
    header = chunk_header(capture_id, alarm_id, len(sent), 0, count)
    envelope_vector(out, "envelope-capture-chunk", TYPE_CAPTURE, 1025, T, header + data, {
        "chunk": {"capture_id": capture_id.hex(), "alarm_id": alarm_id.hex(),
                  "total": len(sent), "index": 0, "count": count, "data": data.hex()}})

    # padded with spaces to the event bucket, as the agent sends every event (§6)
    plaintext = pad_event(b'{"kind": "armed", "mode": "away", "slot": 2, "t": 1795299000}')
    iv = pattern("event iv", 16)
    envelope_vector(out, "envelope-event", TYPE_EVENT, 1026, T + 1,
                    encrypt_event(keys.event, iv, plaintext),
                    {"event": {"iv": iv.hex(), "plaintext": plaintext.hex()}})

    envelope_vector(out, "envelope-status", TYPE_STATUS, 1027, 0,
                    status_body("online", FW_VERSION),
                    {"status": {"state": "online", "fw": FW_VERSION}})

    import hashlib
    digest = hashlib.sha256(sent).digest()
    envelope_vector(out, "envelope-receipt", TYPE_RECEIPT, 1795300002123, T + 2,
                    receipt_body(capture_id, RECEIPT_STORED, 2, digest),
                    {"receipt": {"capture_id": capture_id.hex(), "status": RECEIPT_STORED, "frames": 2,
                                 "sha256": digest.hex()}})

    envelope_vector(out, "envelope-time", TYPE_TIME, 1795300003456, T + 3,
                    time_body(1795300003456), {"time_ms": 1795300003456})


def sealed_capture_vector(out, arc):
    capture_id = pattern("capture id", 16)
    dk = pattern("data key", 32)
    sk = pattern("slot key", 32)
    seed = pattern("oaep seed", 32)
    meta_iv = pattern("meta iv", 16)
    frames = [  # 300 bytes: a partial last block; 256 bytes: a whole block of padding
        {"index": 0, "t": T - 2, "iv": pattern("frame 0 iv", 16), "data": b"\xff\xd8\xff\xe0" + pattern("frame 0", 296)},
        {"index": 1, "t": T - 1, "iv": pattern("frame 1 iv", 16), "data": b"\xff\xd8\xff\xe0" + pattern("frame 1", 252)},
    ]
    key_id = bytes.fromhex(arc["arc_key_id"])
    n = int(arc["n"], 16)
    sealer = CaptureSealer(n, arc["e"], key_id, capture_id, TRIGGER_INTRUSION, T - 3, sk,
                           dk=dk, oaep_seed=seed, meta_iv=meta_iv)
    sealed = bytearray(sealer.header())
    for frame in frames:
        data = frame["data"]
        sealed += sealer.begin_frame(frame["index"], frame["t"], len(data), iv=frame["iv"])
        for at in range(0, len(data), 100):
            sealed += sealer.update(data[at:at + 100])
        sealed += sealer.end_frame()
    sealed += sealer.end()
    inputs = {"arc_n": arc["n"], "arc_e": arc["e"], "arc_key_id": arc["arc_key_id"],
              "capture_id": capture_id.hex(), "trigger": TRIGGER_INTRUSION,
              "captured_at": T - 3, "dk": dk.hex(), "sk": sk.hex(), "oaep_seed": seed.hex(),
              "meta_iv": meta_iv.hex(),
              "frames": [{"index": f["index"], "t": f["t"], "iv": f["iv"].hex(),
                          "data": f["data"].hex()} for f in frames]}
    write_vector(out, "sealed-capture-two-frames", "sealed_capture", inputs, sealed)
    return bytes(sealed)


def release_vectors(out, arc):
    """The release records (§4.4) of the sealed capture above and of a cover capture."""
    key_id = bytes.fromhex(arc["arc_key_id"])
    n = int(arc["n"], 16)
    records = []
    for name, kind, frames, capture_id, sk in (
            ("release-capture", RELEASE_CAPTURE, 2, pattern("capture id", 16), pattern("slot key", 32)),
            ("release-cover", RELEASE_COVER, 3, pattern("cover capture id", 16), pattern("cover slot key", 32))):
        record = release_record(n, arc["e"], key_id, kind, frames, capture_id, sk)
        write_vector(out, name, "release", {"arc_n": arc["n"], "arc_e": arc["e"], "arc_key_id": arc["arc_key_id"],
                                            "kind": kind, "frames": frames, "capture_id": capture_id.hex(),
                                            "sk": sk.hex()}, record)
        records.append(record)
    return records[0]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else REPO + "/tests/vectors/firmware"
    try:
        os.mkdir(out)
    except OSError:
        pass  # already there
    with open(ARC_KEY_FILE) as f:
        arc = json.load(f)
    hmac_vectors(out)
    hkdf_vectors(out)
    sealed = sealed_capture_vector(out, arc)
    release = release_vectors(out, arc)
    size = len(release) + len(sealed)
    envelope_vectors(out, release + sealed + bytes(padded_size(size) - size))


main()
