"""Checking protocol test vectors (PROTOCOL §10) against the firmware, on MicroPython.

    micropython tests/firmware/check_vectors.py DIR [DIR ...]

For every *.json in each DIR, reproduces `output` exactly from `inputs` with the firmware
code, and opens it again. Prints one line per vector (ok / FAIL / skip) and exits 1 if any
vector failed (2 if there were none). Unknown kinds are skipped; known kinds are strict:
a missing input key is a failure.

Inputs of each kind (bytes are lowercase hex, numbers are JSON integers):

  hmac            key, msg                          output = HMAC-SHA256(key, msg)
  hkdf            ikm, salt, info, length           output = HKDF-SHA256 OKM of `length` bytes
  envelope        device_key, topic, type, device_id, counter, time, body
                                                    output = the envelope (MAC key derived
                                                    from device_key per §1 and type)
                  and, optionally, one description of the body that must rebuild it:
                    chunk:   {capture_id, alarm_id, total, index, count, data}  (type 0x01)
                    event:   {iv, plaintext}   body = encrypted event (§6)      (type 0x02)
                    status:  {state, fw}       body JSON has these values       (type 0x03)
                    receipt: {capture_id, status, frames, sha256}               (type 0x81)
                    time_ms: integer                                            (type 0x82)
  sealed_capture  arc_n (hex), arc_e, arc_key_id, capture_id, trigger, captured_at,
                  dk, sk, oaep_seed, meta_iv, frames: [{index, t, iv, data}]
                                                    output = the whole sealed capture (§4)
  release         arc_n (hex), arc_e, arc_key_id, kind, frames, capture_id, sk
                                                    output = the release record (§4.4)

The device cannot unwrap what it wraps to the ARC, so a release record and a sealed
capture's wrapped key are checked by rebuilding them byte for byte; the sealed capture is
opened with the vector's DK and SK, as the ARC opens it once it has both.
"""

import json
import os
import sys


def parent(path):
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else ("/" if cut == 0 else ".")


sys.path.append(parent(parent(parent(__file__))) + "/firmware")  # runs without MICROPYPATH too
sys.path.append(parent(__file__))  # the ARC's side of the bodies

import cryptolib  # noqa: E402
import struct  # noqa: E402

from arc_side import decrypt_event, parse_chunk, receipt_body, time_body  # noqa: E402
from vericam.envelope import (BAD_MAC, TOPIC_MISMATCH, EnvelopeError,  # noqa: E402
                              chunk_header, encrypt_event, open_envelope, parse_receipt,
                              parse_time, seal_envelope)
from vericam.hkdf import hkdf_sha256  # noqa: E402
from vericam.hmac256 import HMAC, compare_digest, hmac_sha256  # noqa: E402
from vericam.keys import DeviceKeys  # noqa: E402
from vericam.seal import (INFO_FRAME_ENC, INFO_FRAME_MAC, INFO_META_ENC, CaptureSealer,  # noqa: E402
                          release_record)


class Mismatch(Exception):
    """The firmware's result differs from the vector."""


def h(text):
    return bytes.fromhex(text)


def _shown(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def expect(what, got, want):
    if isinstance(want, (bytes, bytearray)):
        got = bytes(got)
    if got != want:
        raise Mismatch("%s: got %s, want %s" % (what, _shown(got), _shown(want)))


def first_difference(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


def expect_output(got, want):
    if bytes(got) != want:
        raise Mismatch("output differs at byte %d (got %d bytes, want %d)"
                       % (first_difference(got, want), len(got), len(want)))


def check_hmac(inputs, output):
    key, msg = h(inputs["key"]), h(inputs["msg"])
    expect_output(hmac_sha256(key, msg), output)
    mac = HMAC(key)  # streamed in two pieces: the same
    mac.update(msg[:len(msg) // 2])
    mac.update(msg[len(msg) // 2:])
    expect("streamed HMAC", mac.digest(), output)


def check_hkdf(inputs, output):
    expect_output(hkdf_sha256(h(inputs["ikm"]), h(inputs["salt"]), h(inputs["info"]),
                              inputs["length"]), output)


def rebuild_body(inputs, keys, body):
    """Rebuild the body from its description, if the vector gives one; check it."""
    if "chunk" in inputs:
        c = inputs["chunk"]
        built = chunk_header(h(c["capture_id"]), h(c["alarm_id"]), c["total"], c["index"],
                             c["count"]) + h(c["data"])
        expect("chunk body", built, body)
        capture_id, alarm_id, total, index, count, data = parse_chunk(body)
        expect("chunk fields", [capture_id.hex(), alarm_id.hex(), total, index, count,
                                bytes(data).hex()],
               [c["capture_id"], c["alarm_id"], c["total"], c["index"], c["count"], c["data"]])
    if "event" in inputs:
        e = inputs["event"]
        expect("event body", encrypt_event(keys.event, h(e["iv"]), h(e["plaintext"])), body)
        expect("decrypted event", decrypt_event(keys.event, body), h(e["plaintext"]))
    if "status" in inputs:
        s = inputs["status"]
        doc = json.loads(bytes(body))
        expect("status fields", [doc["state"], doc["fw"]], [s["state"], s["fw"]])
    if "receipt" in inputs:
        r = inputs["receipt"]
        built = receipt_body(h(r["capture_id"]), r["status"], r["frames"], h(r["sha256"]))
        expect("receipt body", built, body)
        capture_id, status, frames, digest = parse_receipt(body)
        expect("receipt fields", [capture_id.hex(), status, frames, digest.hex()],
               [r["capture_id"], r["status"], r["frames"], r["sha256"]])
    if "time_ms" in inputs:
        expect("time body", time_body(inputs["time_ms"]), body)
        expect("time", parse_time(body), inputs["time_ms"])


def expect_rejected(reason, mac_key, topic, payload):
    try:
        open_envelope(mac_key, topic, payload)
    except EnvelopeError as e:
        expect("rejection reason", e.reason, reason)
        return
    raise Mismatch("a changed envelope was accepted; %s expected" % reason)


def check_envelope(inputs, output):
    keys = DeviceKeys(h(inputs["device_key"]))
    msg_type, topic, device_id = inputs["type"], inputs["topic"], inputs["device_id"]
    body = h(inputs["body"])
    mac_key = keys.mac_key(msg_type)
    rebuild_body(inputs, keys, body)
    expect_output(seal_envelope(mac_key, topic, msg_type, device_id, inputs["counter"],
                                inputs["time"], body), output)
    opened = open_envelope(mac_key, topic, output)
    expect("opened fields", [opened[0], opened[1], opened[2], opened[3], bytes(opened[4]).hex()],
           [msg_type, device_id, inputs["counter"], inputs["time"], inputs["body"]])
    tampered = bytearray(output)
    tampered[len(tampered) - 33] ^= 0x01  # last body byte (or counter/time for an empty body)
    expect_rejected(BAD_MAC, mac_key, topic, tampered)
    elsewhere = topic.replace("/" + device_id + "/", "/" + device_id + "x/")
    expect_rejected(TOPIC_MISMATCH, mac_key, elsewhere, output)


def check_sealed_capture(inputs, output):
    capture_id = h(inputs["capture_id"])
    frames = inputs["frames"]
    sealer = CaptureSealer(int(inputs["arc_n"], 16), inputs["arc_e"], h(inputs["arc_key_id"]),
                           capture_id, inputs["trigger"], inputs["captured_at"], h(inputs["sk"]),
                           dk=h(inputs["dk"]), oaep_seed=h(inputs["oaep_seed"]),
                           meta_iv=h(inputs["meta_iv"]))
    sealed = bytearray(sealer.header())
    for frame in frames:
        data = h(frame["data"])
        sealed += sealer.begin_frame(frame["index"], frame["t"], len(data), iv=h(frame["iv"]))
        for at in range(0, len(data), 37):  # an odd piece size: blocks straddle pieces
            sealed += sealer.update(data[at:at + 37])
        sealed += sealer.end_frame()
    sealed += sealer.end()
    expect_output(sealed, output)
    open_sealed_capture(inputs, output)


def open_sealed_capture(inputs, sealed):
    """Open the capture with the vector's DK and SK (the ARC would unwrap DK and get SK from
    the release record) and check every field."""
    ikm = h(inputs["dk"]) + h(inputs["sk"])
    capture_id = h(inputs["capture_id"])
    k_enc = hkdf_sha256(ikm, capture_id, INFO_FRAME_ENC)
    k_mac = hkdf_sha256(ikm, capture_id, INFO_FRAME_MAC)
    k_meta = hkdf_sha256(ikm, capture_id, INFO_META_ENC)
    view = memoryview(sealed)
    expect("magic", bytes(view[0:4]), b"VCAP")
    expect("header fields", [sealed[4], bytes(view[5:8]).hex(), bytes(view[8:24]).hex(), bytes(view[24:32]).hex()],
           [2, "000000", inputs["capture_id"], inputs["arc_key_id"]])
    w = struct.unpack_from(">H", sealed, 32)[0]
    at = 34 + w
    meta_iv = bytes(view[at:at + 16])
    expect("meta IV", meta_iv.hex(), inputs["meta_iv"])
    meta = cryptolib.aes(k_meta, 2, meta_iv).decrypt(bytes(view[at + 16:at + 32]))
    expect("trigger and time", [meta[0], struct.unpack_from(">I", meta, 1)[0], bytes(meta[5:])],
           [inputs["trigger"], inputs["captured_at"], bytes([11]) * 11])
    at += 32
    if not compare_digest(hmac_sha256(k_mac, view[:at]), view[at:at + 32]):
        raise Mismatch("header MAC does not verify")
    at += 32
    tags = []
    for frame in inputs["frames"]:
        start = at
        expect("record type", sealed[at], 0x46)
        index, c = sealed[at + 1], struct.unpack_from(">I", sealed, at + 2)[0]
        iv = bytes(view[at + 6:at + 22])
        data = h(frame["data"])
        expect("frame fields", [index, c, iv.hex()], [frame["index"], 16 * ((8 + len(data)) // 16 + 1), frame["iv"]])
        tag_at = at + 22 + c
        tag = bytes(view[tag_at:tag_at + 32])
        if not compare_digest(hmac_sha256(k_mac, capture_id + bytes(view[start:tag_at])), tag):
            raise Mismatch("tag of frame %d does not verify" % index)
        plain = cryptolib.aes(k_enc, 2, iv).decrypt(bytes(view[at + 22:tag_at]))
        t, p = struct.unpack_from(">II", plain, 0)
        expect("frame %d time and length" % index, [t, p], [frame["t"], len(data)])
        expect("frame %d plaintext" % index, plain[8:8 + p], data)
        expect("frame %d padding" % index, plain[8 + p:], bytes([c - 8 - p]) * (c - 8 - p))
        tags.append(tag)
        at = tag_at + 32
    expect("end record", [sealed[at], sealed[at + 1]], [0x45, len(tags)])
    end_mac = hmac_sha256(k_mac, capture_id + b"E" + bytes((len(tags),)) + b"".join(tags))
    expect("end record MAC", bytes(view[at + 2:at + 34]), end_mac)
    expect("sealed size", len(sealed), at + 34)


def check_release(inputs, output):
    record = release_record(int(inputs["arc_n"], 16), inputs["arc_e"], h(inputs["arc_key_id"]),
                            inputs["kind"], inputs["frames"], h(inputs["capture_id"]), h(inputs["sk"]))
    expect_output(record, output)
    expect("release fields", [bytes(output[0:4]), output[4], output[5], bytes(output[6:14]).hex(),
                              struct.unpack_from(">H", output, 14)[0]],
           [b"VREL", 2, 0, inputs["arc_key_id"], len(output) - 16])


CHECKS = {
    "hmac": check_hmac,
    "hkdf": check_hkdf,
    "envelope": check_envelope,
    "sealed_capture": check_sealed_capture,
    "release": check_release,
}


def check_file(path):
    """'ok', 'skip' or 'fail', with a line printed."""
    try:
        with open(path) as f:
            vector = json.load(f)
        name, kind = vector["name"], vector["kind"]
    except (ValueError, KeyError, OSError) as e:
        print("FAIL %s: not a vector (%r)" % (path, e))
        return "fail"
    check = CHECKS.get(kind)
    if check is None:
        print("skip %s: kind %r is not known here" % (name, kind))
        return "skip"
    try:
        check(vector["inputs"], h(vector["output"]))
    except KeyError as e:
        print("FAIL %s: input %s missing" % (name, e))
        return "fail"
    except Exception as e:  # one broken vector must not hide the others
        print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
        return "fail"
    print("ok   %s (%s)" % (name, kind))
    return "ok"


def main(dirs):
    if not dirs:
        print("usage: check_vectors.py DIR [DIR ...]")
        sys.exit(2)
    counts = {"ok": 0, "skip": 0, "fail": 0}
    for directory in dirs:
        for entry in sorted(os.listdir(directory)):
            if entry.endswith(".json"):
                counts[check_file(directory + "/" + entry)] += 1
    print("%d ok, %d skipped, %d failed" % (counts["ok"], counts["skip"], counts["fail"]))
    if counts["fail"]:
        sys.exit(1)
    if not counts["ok"]:
        sys.exit(2)


main(sys.argv[1:])
