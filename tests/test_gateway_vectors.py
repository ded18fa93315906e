"""The gateway against the protocol test vectors: its own, reproduced byte for byte, and the firmware's."""

import json

import pytest

from gateway.protocol import capture as cap
from gateway.protocol import envelope as env
from gateway.protocol.event import decrypt_event, parse_status
from gateway.protocol.keys import DeviceKeys

from support.vectors import VECTORS, mv


def vector_files(side):
    d = VECTORS / side
    return sorted(d.glob("*.json")) if d.is_dir() else []


def test_gateway_vectors_are_what_the_gateway_produces_today():
    fresh = {v["name"]: v for v in mv.vectors()}
    stored = {p.stem: json.loads(p.read_text()) for p in vector_files("gateway")}
    assert stored, "tests/vectors/gateway is empty: run `python tools/make_vectors.py`"
    assert stored == fresh, "the vectors on disk differ from the gateway's output: a wire-format change?"


def open_vector(vector):
    inputs, output = vector["inputs"], bytes.fromhex(vector["output"])
    kind = vector["kind"]
    if kind in ("hmac", "hkdf"):
        return
    if kind == "sealed_capture":
        arc = mv.load_test_arc_key()
        opened, end = cap.open_sealed(output, arc["private_key"], bytes.fromhex(inputs["sk"]),
                                      expected_key_id=bytes.fromhex(inputs["arc_key_id"]))
        assert opened.capture_id.hex() == inputs["capture_id"] and end == len(output)
        assert opened.trigger == inputs["trigger"] and opened.captured_at == inputs["captured_at"]
        assert [(f.index, f.t, f.jpeg.hex()) for f in opened.frames] == \
            [(f["index"], f["t"], f["data"]) for f in inputs["frames"]]
        # The ARC key alone no longer opens it: the slot key is part of its keys (§4.1).
        with pytest.raises(cap.BadCapture):
            cap.open_sealed(output, arc["private_key"], bytes(32))
        return
    if kind == "release":
        arc = mv.load_test_arc_key()
        rel = cap.open_release(output, arc["private_key"], bytes.fromhex(inputs["arc_key_id"]))
        assert (rel.kind, rel.frames, rel.capture_id.hex(), rel.slot_key.hex(), rel.size) == \
            (inputs["kind"], inputs["frames"], inputs["capture_id"], inputs["sk"], len(output))
        return
    keys = DeviceKeys.derive(bytes.fromhex(inputs["device_key"]))
    opened = env.open_envelope(inputs["topic"], output, lambda d: keys, lambda d: env.ReplayWindow(),
                               now_s=inputs["time"] or 1e9)
    assert (opened.etype, opened.device_id, opened.counter, opened.time, opened.body.hex()) == \
        (inputs["type"], inputs["device_id"], inputs["counter"], inputs["time"], inputs["body"])
    body = opened.body
    rebuilt = mv.build_body(inputs)
    if rebuilt is not None:
        assert rebuilt == body
    if "chunk" in inputs:
        c = cap.parse_chunk(body)
        assert (c.capture_id.hex(), c.alarm_id.hex(), c.total, c.index, c.count, c.data.hex()) == tuple(
            inputs["chunk"][k] for k in ("capture_id", "alarm_id", "total", "index", "count", "data"))
    if "event" in inputs:
        assert decrypt_event(keys.event, body) == json.loads(bytes.fromhex(inputs["event"]["plaintext"]))
    if "status" in inputs:
        s = parse_status(body)
        assert (s["state"], s["fw"]) == (inputs["status"]["state"], inputs["status"]["fw"])
    if "receipt" in inputs:
        r = env.parse_receipt_body(body)
        assert (r[0].hex(), r[1], r[2], r[3].hex()) == tuple(
            inputs["receipt"][k] for k in ("capture_id", "status", "frames", "sha256"))
    if "time_ms" in inputs:
        assert env.parse_time_body(body) == inputs["time_ms"]
    # And the same bytes on another device's topic, or altered, are refused.
    with pytest.raises(env.TopicMismatch):
        env.check_topic(opened, inputs["topic"].replace(inputs["device_id"], inputs["device_id"] + "x"))
    tampered = bytearray(output)
    tampered[-33] ^= 1
    with pytest.raises(env.BadMac):
        env.verify_mac(env.parse(bytes(tampered)), inputs["topic"], keys)


@pytest.mark.parametrize("path", vector_files("gateway"), ids=lambda p: p.stem)
def test_gateway_reproduces_and_opens_its_own_vector(path):
    vector = json.loads(path.read_text())
    assert mv.build_output(vector["kind"], vector["inputs"]).hex() == vector["output"]
    open_vector(vector)


FIRMWARE = vector_files("firmware")


@pytest.mark.skipif(not FIRMWARE, reason="no firmware vectors yet: run tests/firmware/make_vectors.py on MicroPython")
@pytest.mark.parametrize("path", FIRMWARE or [None], ids=lambda p: p.stem if p else "none")
def test_gateway_reproduces_and_opens_firmware_vector(path):
    vector = json.loads(path.read_text())
    assert mv.build_output(vector["kind"], vector["inputs"]).hex() == vector["output"], \
        f"{path.name}: the gateway builds different bytes from the same inputs"
    open_vector(vector)


def test_fixed_seed_oaep_decrypts_with_cryptography():
    arc = mv.load_test_arc_key()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    for i in range(3):
        msg, seed = bytes([i]) * 32, bytes([i + 7]) * 32
        ct = mv.oaep_encrypt(arc["n"], arc["e"], msg, seed)
        assert arc["private_key"].decrypt(ct, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                           algorithm=hashes.SHA256(), label=None)) == msg
