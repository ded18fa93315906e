"""A device played in CPython: what a provisioned device sends, built with the gateway's protocol code.

`FakeDevice` seals captures as the firmware does at the lens (a fresh data key per capture,
wrapped to the ARC's public key, and a fresh slot key), sends them as the firmware does on an
alarm (behind the release record that gives the ARC the slot key, padded with zeros: a
delivery, PROTOCOL.md §4.4-4.5), cuts them into chunk envelopes, and seals activity events
and statuses under the device's keys. It is the one host-side stand-in for a device, used by
the tests, the benchmarks (`simulator/bench/`) and the fuzzer when what matters is the bytes
a device sends, not the firmware that sends them. The real firmware on MicroPython is
`simulator.device.SimulatedDevice`; the test vectors keep the two in step.

It speaks the protocol through `gateway.protocol`, so it proves nothing about the firmware's
own implementation of it: that is what the vectors and the MicroPython tests are for.
"""

from __future__ import annotations

import json
import os
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.protocol import capture as cap
from gateway.protocol import envelope as env
from gateway.protocol.event import encrypt_event
from gateway.protocol.keys import DeviceKeys

def fake_jpeg(size: int = 600) -> bytes:
    """`size` bytes framed as a JPEG (start-of-image, APP0, random body, end-of-image)."""
    return b"\xff\xd8\xff\xe0" + os.urandom(max(0, size - 6)) + b"\xff\xd9"


class FakeDevice:
    """Builds what a provisioned device sends: sealed captures in chunks, events, statuses.

    `config` is the provisioning config (`device_id`, `device_key` hex, `arc_n` hex, `arc_e`,
    `arc_key_id` hex), as `gateway.provisioning.devices.add_device` returns it. `keys` may
    stand in for `device_key` when only the derived keys are at hand (a gateway's store).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, config: dict, counter: int = 0, chunk_size: int = 4096, keys: DeviceKeys | None = None,
                 bucket: int = cap.BUCKET):
        self.device_id = config["device_id"]
        self.keys = keys or DeviceKeys.derive(bytes.fromhex(config["device_key"]))
        self.arc_public = rsa.RSAPublicNumbers(int(config["arc_e"]), int(config["arc_n"], 16)).public_key()
        self.arc_key_id = bytes.fromhex(config["arc_key_id"])
        self.counter = counter
        self.chunk_size = chunk_size
        self.bucket = bucket

    def next_counter(self) -> int:
        self.counter += 1
        return self.counter

    def envelope(self, etype: int, body: bytes, time_s: int | None = None, topic: str | None = None,
                 counter: int | None = None) -> tuple[str, bytes]:
        """(topic, payload): `body` sealed in an uplink envelope; `topic` may lie about where it goes."""
        topic_for = env.topic_for(self.device_id, etype)
        payload = env.build(etype, self.device_id, self.next_counter() if counter is None else counter,
                            int(time.time()) if time_s is None else time_s, body, self.keys.up, topic_for)
        return topic or topic_for, payload

    def seal_parts(self, jpegs: list[bytes], trigger: int = cap.TRIGGER_CODES["intrusion"],
                   capture_id: bytes | None = None, captured_at: int = 0,
                   kind: int = cap.KIND_CAPTURE) -> tuple[bytes, bytes, bytes]:
        """(capture_id, release record, sealed capture) with fresh randomness, as the firmware
        seals a capture at the lens and releases it for an alarm."""
        capture_id = capture_id or os.urandom(16)
        dk, slot_key = os.urandom(32), os.urandom(32)
        wrapped = self.arc_public.encrypt(dk, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                           algorithm=hashes.SHA256(), label=None))
        sealed = cap.seal([(captured_at, j) for j in jpegs], trigger=trigger, capture_id=capture_id,
                          captured_at=captured_at, arc_key_id=self.arc_key_id, dk=dk, slot_key=slot_key,
                          wrapped_key=wrapped, meta_iv=os.urandom(16), ivs=[os.urandom(16) for _ in jpegs])
        numbers = self.arc_public.public_numbers()
        release = cap.release(kind=kind, frames=len(jpegs), capture_id=capture_id, slot_key=slot_key,
                              arc_n=numbers.n, arc_e=numbers.e, arc_key_id=self.arc_key_id)
        return capture_id, release, sealed

    def seal(self, jpegs: list[bytes], trigger: int = cap.TRIGGER_CODES["intrusion"],
             capture_id: bytes | None = None, captured_at: int = 0) -> tuple[bytes, bytes]:
        """(capture_id, delivery): what the device sends for a capture an alarm claimed,
        release record, sealed capture and zero padding (§4.4-4.5), ready to be chunked."""
        capture_id, release, sealed = self.seal_parts(jpegs, trigger, capture_id, captured_at)
        return capture_id, cap.delivery(release, sealed, self.bucket)

    def chunk_bodies(self, capture_id: bytes, sealed: bytes, alarm_id: bytes) -> list[bytes]:
        """A delivery cut into chunk bodies of `chunk_size` bytes, not yet enveloped."""
        return cap.split_chunks(sealed, capture_id, alarm_id, self.chunk_size)

    def chunk_messages(self, capture_id: bytes, sealed: bytes, alarm_id: bytes,
                       time_s: int | None = None) -> list[tuple[str, bytes]]:
        """The capture as the (topic, payload) messages that carry it, each with a fresh counter."""
        return [self.envelope(env.T_CAPTURE, body, time_s)
                for body in self.chunk_bodies(capture_id, sealed, alarm_id)]

    def event(self, event: dict, time_s: int | None = None) -> tuple[str, bytes]:
        """An activity event, encrypted under the device's event key."""
        return self.envelope(env.T_EVENT, encrypt_event(self.keys.event, os.urandom(16), event), time_s)

    def status(self, state: str, fw: str = "test") -> tuple[str, bytes]:
        return self.envelope(env.T_STATUS, json.dumps({"state": state, "fw": fw}).encode())

    def open_downlink(self, topic: str, payload: bytes):
        """Verify a receipt or time message as the device would (MAC under K_down, topic)."""
        e = env.parse(payload)
        env.check_topic(e, topic)
        env.verify_mac(e, topic, self.keys)
        return e
