#!/usr/bin/env python3
"""Protocol test vectors from the gateway's implementation (PROTOCOL.md §10).

    python tools/make_vectors.py [OUT_DIR]      # default: tests/vectors/gateway

Writes one JSON file per vector: envelopes of every type (a capture chunk, an encrypted event,
a status, a receipt, a time message), a sealed capture of two small frames, the release
records of a capture and of a cover, HMAC and HKDF. Every random input (device key, DK, slot
key, OAEP seed, IVs) is fixed, so the output is the same on every run and any implementation
given the inputs must produce it byte for byte.

`cryptography` does not let a caller fix the OAEP seed, so `oaep_encrypt`
(`gateway.protocol.keys`) implements EME-OAEP (RFC 8017 §7.1.1, SHA-256, MGF1-SHA-256, empty
label) and raw RSA with `pow`: the device's side of a wrap. Its output is checked to decrypt
with cryptography's OAEP.

A device that seals captures and builds envelopes with fresh randomness, for tests and
benchmarks, is `simulator.fake_device.FakeDevice`.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

from gateway.protocol import capture as cap  # noqa: E402
from gateway.protocol import envelope as env  # noqa: E402
from gateway.protocol.event import encrypt_event, pad_event  # noqa: E402
from gateway.protocol.keys import (DeviceKeys, arc_key_id, hkdf, hmac_sha256, mgf1_sha256,  # noqa: E402,F401
                                   oaep_encrypt)

TEST_ARC_KEY = ROOT / "tests" / "vectors" / "test_arc_key.json"
OUT_DIR = ROOT / "tests" / "vectors" / "gateway"


def load_test_arc_key() -> dict:
    """The test ARC key pair: {"n", "e", "private_key" (cryptography), "key_id" (bytes)}."""
    if not TEST_ARC_KEY.exists():
        raise SystemExit(f"{TEST_ARC_KEY} is missing: it is the shared test ARC key "
                         "(tests/vectors/make_test_arc_key.py writes it)")
    raw = json.loads(TEST_ARC_KEY.read_text())
    private = serialization.load_pem_private_key(raw["private_key_pem"].encode(), password=None)
    pub = private.public_key().public_numbers()
    if pub.n != int(raw["n"], 16) or pub.e != raw["e"]:
        raise SystemExit(f"{TEST_ARC_KEY}: the PEM and the n/e fields disagree")
    return {"n": pub.n, "e": pub.e, "private_key": private, "key_id": arc_key_id(private.public_key())}


# Building from vector inputs (also used by tests/test_gateway_vectors.py) ------------------------
def h(text: str) -> bytes:
    return bytes.fromhex(text)


def build_sealed_capture(inputs: dict) -> bytes:
    """A sealed capture from a `sealed_capture` vector's inputs, OAEP seed included."""
    dk = h(inputs["dk"])
    wrapped = oaep_encrypt(int(inputs["arc_n"], 16), inputs["arc_e"], dk, h(inputs["oaep_seed"]))
    frames = inputs["frames"]
    if [f["index"] for f in frames] != list(range(len(frames))):
        raise ValueError("frames must be numbered 0, 1, ...")
    return cap.seal([(f["t"], h(f["data"])) for f in frames], trigger=inputs["trigger"],
                    capture_id=h(inputs["capture_id"]), captured_at=inputs["captured_at"],
                    arc_key_id=h(inputs["arc_key_id"]), dk=dk, slot_key=h(inputs["sk"]),
                    wrapped_key=wrapped, meta_iv=h(inputs["meta_iv"]), ivs=[h(f["iv"]) for f in frames])


def build_release(inputs: dict) -> bytes:
    """A release record from a `release` vector's inputs (its OAEP seed is derived, §4.4)."""
    return cap.release(kind=inputs["kind"], frames=inputs["frames"], capture_id=h(inputs["capture_id"]),
                       slot_key=h(inputs["sk"]), arc_n=int(inputs["arc_n"], 16), arc_e=inputs["arc_e"],
                       arc_key_id=h(inputs["arc_key_id"]))


def build_body(inputs: dict) -> bytes | None:
    """The envelope body rebuilt from its description in the inputs, if there is one."""
    keys = DeviceKeys.derive(h(inputs["device_key"]))
    if "chunk" in inputs:
        c = inputs["chunk"]
        return cap.build_chunk(h(c["capture_id"]), h(c["alarm_id"]), c["total"], c["index"], c["count"],
                               h(c["data"]))
    if "event" in inputs:
        return encrypt_event(keys.event, h(inputs["event"]["iv"]), h(inputs["event"]["plaintext"]))
    if "receipt" in inputs:
        r = inputs["receipt"]
        return env.build_receipt_body(h(r["capture_id"]), r["status"], r["frames"], h(r["sha256"]))
    if "time_ms" in inputs:
        return env.build_time_body(inputs["time_ms"])
    return None


def build_output(kind: str, inputs: dict) -> bytes:
    if kind == "hmac":
        return hmac_sha256(h(inputs["key"]), h(inputs["msg"]))
    if kind == "hkdf":
        return hkdf(h(inputs["ikm"]), h(inputs["salt"]), h(inputs["info"]), inputs["length"])
    if kind == "envelope":
        keys = DeviceKeys.derive(h(inputs["device_key"]))
        key = keys.down if inputs["type"] >= 0x80 else keys.up
        return env.build(inputs["type"], inputs["device_id"], inputs["counter"], inputs["time"],
                         h(inputs["body"]), key, inputs["topic"])
    if kind == "sealed_capture":
        return build_sealed_capture(inputs)
    if kind == "release":
        return build_release(inputs)
    raise ValueError(f"unknown vector kind {kind!r}")


# The vectors ---------------------------------------------------------------------------------
def fixed(label: str, size: int) -> bytes:
    """A fixed 'random' value: reproducible, and different for every label."""
    out = b""
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"vericam gateway vectors {label} {i}".encode()).digest()
        i += 1
    return out[:size]


def fake_jpeg(label: str, size: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + fixed(label, size - 6) + b"\xff\xd9"


DEVICE_ID = "gw-vec-01"
DEVICE_KEY = fixed("device key", 32)
T0 = 1795300000


def vectors() -> list[dict]:
    arc = load_test_arc_key()
    out: list[dict] = []

    def add(name, kind, inputs):
        output = build_output(kind, inputs)
        out.append({"name": name, "kind": kind, "inputs": inputs, "output": output.hex()})
        return output

    # HMAC and HKDF
    add("hmac-empty-message", "hmac", {"key": fixed("hmac key", 32).hex(), "msg": ""})
    add("hmac-long-key", "hmac", {"key": fixed("long hmac key", 100).hex(), "msg": fixed("msg", 200).hex()})
    add("hmac-rfc4231-case2", "hmac", {"key": b"Jefe".hex(), "msg": b"what do ya want for nothing?".hex()})
    for name, info in (("up", b"vericam v1 up mac"), ("down", b"vericam v1 down mac"),
                       ("event", b"vericam v1 event enc")):
        add(f"hkdf-device-{name}", "hkdf", {"ikm": DEVICE_KEY.hex(), "salt": "", "info": info.hex(), "length": 32})
    capture_id = fixed("capture id", 16)
    dk = fixed("dk", 32)
    sk = fixed("slot key", 32)
    for name, info in (("frame-enc", b"vericam v2 frame enc"), ("frame-mac", b"vericam v2 frame mac"),
                       ("meta-enc", b"vericam v2 meta enc")):
        add(f"hkdf-{name}", "hkdf", {"ikm": (dk + sk).hex(), "salt": capture_id.hex(), "info": info.hex(),
                                     "length": 32})

    # Sealed capture: two small frames, every random input fixed.
    arc_inputs = {"arc_n": format(arc["n"], "x"), "arc_e": arc["e"], "arc_key_id": arc["key_id"].hex()}
    frames = [{"index": 0, "t": T0 - 2, "iv": fixed("iv 0", 16).hex(), "data": fake_jpeg("frame 0", 203).hex()},
              {"index": 1, "t": T0 - 1, "iv": fixed("iv 1", 16).hex(), "data": fake_jpeg("frame 1", 160).hex()}]
    sealed = add("sealed-capture-two-frames", "sealed_capture", {
        **arc_inputs, "capture_id": capture_id.hex(), "trigger": 2, "captured_at": T0 - 2, "dk": dk.hex(),
        "sk": sk.hex(), "oaep_seed": fixed("oaep seed", 32).hex(), "meta_iv": fixed("meta iv", 16).hex(),
        "frames": frames})
    # The wrapped key must open with cryptography's own OAEP.
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    w = struct.unpack_from(">H", sealed, cap.HEADER_FIXED - 2)[0]
    unwrapped = arc["private_key"].decrypt(sealed[cap.HEADER_FIXED:cap.HEADER_FIXED + w], oaep)
    assert unwrapped == dk, "the fixed-seed OAEP does not decrypt with cryptography's OAEP"

    # Release records (§4.4): of that capture, and of a cover capture (kind 1).
    release = add("release-capture", "release", {**arc_inputs, "kind": cap.KIND_CAPTURE, "frames": 2,
                                                 "capture_id": capture_id.hex(), "sk": sk.hex()})
    cover_id, cover_sk = fixed("cover capture id", 16), fixed("cover slot key", 32)
    add("release-cover", "release", {**arc_inputs, "kind": cap.KIND_COVER, "frames": 3,
                                     "capture_id": cover_id.hex(), "sk": cover_sk.hex()})
    payload = arc["private_key"].decrypt(release[cap.REL_FIXED:], oaep)
    assert payload == bytes([cap.KIND_CAPTURE, 2]) + capture_id + sk, "a release record does not open"
    # What the device sends for an alarm (§4.5): release record, sealed capture, zero padding.
    sent = cap.delivery(release, sealed)

    # Envelopes of every type.
    def envelope(name, etype, counter, time_s, body, **description):
        inputs = {"device_key": DEVICE_KEY.hex(), "topic": env.topic_for(DEVICE_ID, etype), "type": etype,
                  "device_id": DEVICE_ID, "counter": counter, "time": time_s, "body": body.hex(), **description}
        add(name, "envelope", inputs)

    alarm_id = fixed("alarm id", 8)
    data = sent[:300]
    chunk = {"capture_id": capture_id.hex(), "alarm_id": alarm_id.hex(), "total": len(sent), "index": 0,
             "count": (len(sent) + 299) // 300, "data": data.hex()}
    envelope("envelope-capture-chunk", env.T_CAPTURE, 4097, T0,
             cap.build_chunk(capture_id, alarm_id, len(sent), 0, chunk["count"], data), chunk=chunk)
    event = pad_event(json.dumps({"kind": "alarm", "code": "intrusion", "alarm_id": alarm_id.hex(), "t": T0,
                                  "captures": [capture_id.hex()]}, separators=(",", ":")).encode())
    ev = {"iv": fixed("event iv", 16).hex(), "plaintext": event.hex()}
    envelope("envelope-event", env.T_EVENT, 4098, T0 + 1,
             encrypt_event(DeviceKeys.derive(DEVICE_KEY).event, h(ev["iv"]), event), event=ev)
    envelope("envelope-status", env.T_STATUS, 4099, 0, b'{"state":"offline","fw":"0.1.0"}',
             status={"state": "offline", "fw": "0.1.0"})
    receipt = {"capture_id": capture_id.hex(), "status": 0, "frames": 2,
               "sha256": hashlib.sha256(sent).hexdigest()}
    envelope("envelope-receipt", env.T_RECEIPT, 1795300002123, T0 + 2,
             env.build_receipt_body(capture_id, 0, 2, hashlib.sha256(sent).digest()), receipt=receipt)
    envelope("envelope-time", env.T_TIME, 1795300003456, T0 + 3, env.build_time_body(1795300003456),
             time_ms=1795300003456)
    return out


def write(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for vector in vectors():
        path = out_dir / f"{vector['name']}.json"
        path.write_text(json.dumps(vector, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    for p in write(target):
        print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
