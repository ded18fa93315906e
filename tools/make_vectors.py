#!/usr/bin/env python3
"""Protocol test vectors from the gateway's implementation (PROTOCOL.md §10).

    python tools/make_vectors.py [OUT_DIR]      # default: tests/vectors/gateway

Writes one JSON file per vector: envelopes of every type (a capture chunk, an encrypted event,
a status, a receipt, a time message), a sealed capture of two small frames, HMAC and HKDF.
Every random input (device key, DK, OAEP seed, IVs) is fixed, so the output is the same on
every run and any implementation given the inputs must produce it byte for byte.

`cryptography` does not let a caller fix the OAEP seed, so `oaep_encrypt` below implements
EME-OAEP (RFC 8017 §7.1.1, SHA-256, MGF1-SHA-256, empty label) and raw RSA with `pow`. It is
for vectors and tests only; the result is checked to decrypt with cryptography's OAEP.

A device that seals captures and builds envelopes with fresh randomness, for tests and
benchmarks, is `simulator.fake_device.FakeDevice`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

from gateway.protocol import capture as cap  # noqa: E402
from gateway.protocol import envelope as env  # noqa: E402
from gateway.protocol.event import encrypt_event  # noqa: E402
from gateway.protocol.keys import DeviceKeys, arc_key_id, hkdf, hmac_sha256  # noqa: E402

TEST_ARC_KEY = ROOT / "tests" / "vectors" / "test_arc_key.json"
OUT_DIR = ROOT / "tests" / "vectors" / "gateway"


# RSA-OAEP with a given seed --------------------------------------------------------------------
def mgf1_sha256(seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def oaep_encrypt(n: int, e: int, message: bytes, seed: bytes, label: bytes = b"") -> bytes:
    """RSAES-OAEP-ENCRYPT (RFC 8017 §7.1.1) with SHA-256/MGF1-SHA-256 and the given seed."""
    k = (n.bit_length() + 7) // 8
    h_len = 32
    if len(seed) != h_len or len(message) > k - 2 * h_len - 2:
        raise ValueError("OAEP: the seed is 32 bytes and the message at most k - 66 bytes")
    db = hashlib.sha256(label).digest() + b"\0" * (k - len(message) - 2 * h_len - 2) + b"\1" + message
    masked_db = bytes(a ^ b for a, b in zip(db, mgf1_sha256(seed, k - h_len - 1)))
    masked_seed = bytes(a ^ b for a, b in zip(seed, mgf1_sha256(masked_db, h_len)))
    em = b"\0" + masked_seed + masked_db
    return pow(int.from_bytes(em, "big"), e, n).to_bytes(k, "big")


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
                    arc_key_id=h(inputs["arc_key_id"]), dk=dk, wrapped_key=wrapped,
                    ivs=[h(f["iv"]) for f in frames])


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
    for name, info in (("enc", b"vericam v1 frame enc"), ("mac", b"vericam v1 frame mac")):
        add(f"hkdf-frame-{name}", "hkdf", {"ikm": dk.hex(), "salt": capture_id.hex(), "info": info.hex(),
                                           "length": 32})

    # Sealed capture: two small frames, every random input fixed.
    frames = [{"index": 0, "t": T0 - 2, "iv": fixed("iv 0", 16).hex(), "data": fake_jpeg("frame 0", 203).hex()},
              {"index": 1, "t": T0 - 1, "iv": fixed("iv 1", 16).hex(), "data": fake_jpeg("frame 1", 160).hex()}]
    sealed = add("sealed-capture-two-frames", "sealed_capture", {
        "arc_n": format(arc["n"], "x"), "arc_e": arc["e"], "arc_key_id": arc["key_id"].hex(),
        "capture_id": capture_id.hex(), "trigger": 2, "captured_at": T0 - 2, "dk": dk.hex(),
        "oaep_seed": fixed("oaep seed", 32).hex(), "frames": frames})
    # The wrapped key must open with cryptography's own OAEP.
    w = int.from_bytes(sealed[36:38], "big")
    unwrapped = arc["private_key"].decrypt(sealed[38:38 + w], padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    assert unwrapped == dk, "the fixed-seed OAEP does not decrypt with cryptography's OAEP"

    # Envelopes of every type.
    def envelope(name, etype, counter, time_s, body, **description):
        inputs = {"device_key": DEVICE_KEY.hex(), "topic": env.topic_for(DEVICE_ID, etype), "type": etype,
                  "device_id": DEVICE_ID, "counter": counter, "time": time_s, "body": body.hex(), **description}
        add(name, "envelope", inputs)

    alarm_id = fixed("alarm id", 8)
    data = sealed[:300]
    chunk = {"capture_id": capture_id.hex(), "alarm_id": alarm_id.hex(), "total": len(sealed), "index": 0,
             "count": (len(sealed) + 299) // 300, "data": data.hex()}
    envelope("envelope-capture-chunk", env.T_CAPTURE, 4097, T0,
             cap.build_chunk(capture_id, alarm_id, len(sealed), 0, chunk["count"], data), chunk=chunk)
    event = json.dumps({"kind": "alarm", "code": "intrusion", "alarm_id": alarm_id.hex(), "t": T0,
                        "captures": [capture_id.hex()]}, separators=(",", ":")).encode()
    ev = {"iv": fixed("event iv", 16).hex(), "plaintext": event.hex()}
    envelope("envelope-event", env.T_EVENT, 4098, T0 + 1,
             encrypt_event(DeviceKeys.derive(DEVICE_KEY).event, h(ev["iv"]), event), event=ev)
    envelope("envelope-status", env.T_STATUS, 4099, 0, b'{"state":"offline","fw":"0.1.0"}',
             status={"state": "offline", "fw": "0.1.0"})
    receipt = {"capture_id": capture_id.hex(), "status": 0, "frames": 2,
               "sha256": hashlib.sha256(sealed).hexdigest()}
    envelope("envelope-receipt", env.T_RECEIPT, 1795300002123, T0 + 2,
             env.build_receipt_body(capture_id, 0, 2, hashlib.sha256(sealed).digest()), receipt=receipt)
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
