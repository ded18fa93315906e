"""A normal and a duress disarm, as the broker sees them: the same messages, and no photo in the cover.

Real firmware on MicroPython, real Mosquitto, the gateway process, at 1 x. The broker's
observer account keeps every payload it carries, as anyone at the broker could (TLS ends
there). One homecoming ends in a user's disarm, the next in the duress code. Checked:

- each disarm puts the same on the wire: one event of the same size, one delivery of the
  same structure (release record, sealed capture, zero padding, in the clear only as chunk
  headers and ciphertext), one receipt of the same size, held to the gateway's floor;
- the normal disarm's delivery is a cover: opened from the wire with the ARC's private key
  (as the gateway opens it) it holds random frames of the lengths of the disarm photos,
  and not a byte of any photo; its photos stayed on the device and were shredded;
- at the ARC the normal disarm is a disarm, the duress disarm is the duress alarm with its
  photos, and the cover left nothing that looks like photos;
- heartbeats carry nothing but their interval.
"""

import json
import time

import pytest

from gateway.protocol import capture as cap
from simulator.broker import WireObserver
from simulator.flash import key_slots
from simulator.stack import Stack

from support.plaintext import assert_no_plaintext

DEVICE = "cover-1"
PIN, DURESS = "2580", "9999"


def _armed(dev):
    return sum(1 for t in list(dev.traces) if t.get("what") == "panel" and t.get("event") == "armed")


def _episode(stack, dev, pin, wait_for):
    panel = stack.panels[DEVICE]
    armed = _armed(dev)
    panel.arm(PIN)
    deadline = time.monotonic() + 20
    while _armed(dev) == armed:  # the device heard "armed", after the exit delay
        assert time.monotonic() < deadline, "the device never heard 'armed'"
        time.sleep(0.05)
    panel.open_zone("door-1")
    time.sleep(0.3)
    settled = dev.trace_count(wait_for)
    start = time.time()
    panel.disarm(pin)
    dev.wait_trace(wait_for, count=settled + 1, timeout=30)
    time.sleep(0.5)  # the receipt's own record at the observer
    return start, time.time()


def _chunks(wire, start, end):
    """{capture id: [(index, count, total, data)]} of the capture chunks the broker carried."""
    out = {}
    for i, record in enumerate(wire.snapshot()):
        if not start <= record["t"] < end or not record["topic"].endswith("/up/capture"):
            continue
        payload = wire.payloads[i]
        body = payload[21 + payload[4]:-32]
        chunk = cap.parse_chunk(body)
        out.setdefault(chunk.capture_id.hex(), []).append((chunk.index, chunk.count, chunk.total, chunk.data))
    return out


def _leaves(wire, start, end):
    """(topic leaf, payload size) of what the device and the gateway sent, in order, heartbeats aside."""
    return [(r["topic"].rsplit("/", 1)[-1], r["bytes"]) for r in wire.snapshot()
            if start <= r["t"] < end and "/up/heartbeat" not in r["topic"] and "/up/status" not in r["topic"]]


@pytest.mark.timeout(300)
def test_a_normal_and_a_duress_disarm_look_alike_at_the_broker_and_the_cover_holds_no_photo(tmp_path):
    with Stack(tmp_path / "run") as stack:
        wire = WireObserver(stack.broker, keep_payloads=True)
        try:
            # heartbeats every 2 s, so that some fall in the episodes
            dev = stack.add_device(DEVICE, panel_kwargs={"exit_delay_s": 0.3, "entry_delay_s": 20.0},
                                   extra_config={"heartbeat_s": 2})
            dev.boot()
            dev.wait_trace("online", timeout=30)
            time.sleep(1.0)
            normal_at = [t - wire.t0 for t in _episode(stack, dev, PIN, "cover_receipt")]
            duress_at = [t - wire.t0 for t in _episode(stack, dev, DURESS, "receipt")]
            records = wire.snapshot()
        finally:
            wire.close()
        normal, duress = _leaves(wire, *normal_at), _leaves(wire, *duress_at)

        # One event, one delivery, one receipt each; the same sizes of event and receipt, and
        # deliveries whose chunks are all one size (the total is a multiple of the bucket).
        for seen in (normal, duress):
            assert [leaf for leaf, _ in seen if leaf != "capture"] in (["event", "receipt"], ["receipt", "event"]), seen
        size_of = lambda seen, leaf: {n for what, n in seen if what == leaf}  # noqa: E731
        assert size_of(normal, "event") == size_of(duress, "event")
        assert size_of(normal, "receipt") == size_of(duress, "receipt")
        (normal_cid, normal_chunks), = _chunks(wire, *normal_at).items()
        (duress_cid, duress_chunks), = _chunks(wire, *duress_at).items()
        for chunks in (normal_chunks, duress_chunks):
            assert chunks[0][2] % cap.BUCKET == 0 and len({len(c[3]) for c in chunks}) == 1
        # Both receipts leave the gateway at its floor after the last chunk (1 s at 1 x), not
        # as soon as the cover was dropped or the photos stored. A lower bound, so load cannot
        # break it; 0.5 s leaves room for the observer seeing the last chunk late.
        for start, end in (normal_at, duress_at):
            seen = [(r["t"], r["topic"].rsplit("/", 1)[-1]) for r in records if start <= r["t"] < end]
            last_chunk = max(t for t, leaf in seen if leaf == "capture")
            receipt = min(t for t, leaf in seen if leaf == "receipt")
            assert receipt - last_chunk >= 0.5, f"a receipt {receipt - last_chunk:.3f} s after the last chunk"

        # The normal disarm's delivery, opened from the wire as the gateway opens it: cover.
        with stack.store() as store:
            arc = store.keys.arc_private_key()
            arc_key_id = store.keys.arc_key_id()
            images = store.images.list(DEVICE)
            alarms = store.alarms.list(DEVICE)
            events = store.events.list(DEVICE)
            captures = {c["capture_id"]: c for c in store.captures.list(DEVICE)}
        sent = b"".join(data for _i, _n, _t, data in sorted(normal_chunks))
        release = cap.open_release(sent, arc, arc_key_id)
        assert release.kind == cap.KIND_COVER and release.capture_id.hex() == normal_cid
        opened, end = cap.open_sealed(sent, arc, release.slot_key, release.size, arc_key_id)
        assert not sent[end:].strip(b"\0"), "a cover is padded like any delivery"
        photos = [jpeg for trigger, _i, jpeg in dev.frames if trigger == "disarm"]
        assert len(opened.frames) == release.frames == len(photos) == 3
        for frame, photo in zip(opened.frames, photos):
            # the longest plaintext of the photo's ciphertext size: the same record on the wire
            assert len(photo) <= len(frame.jpeg) < len(photo) + 16
            assert not frame.jpeg.startswith(b"\xff\xd8")
            assert_no_plaintext(frame.jpeg, photo, "a disarm photo inside the cover")
            assert_no_plaintext(sent, photo, "a disarm photo on the wire")
        assert opened.trigger == 9  # the cover's own code (PROTOCOL section 4.2)

        # At the ARC: a disarm, and the duress alarm with its photos; the cover stored nothing.
        assert captures[normal_cid]["status"] == "cover" and captures[duress_cid]["status"] == "stored"
        assert {i["capture_id"] for i in images} == {duress_cid} and len(images) == 3
        assert [(a["code"], a["captures"]) for a in alarms] == [("duress", [duress_cid])]
        kinds = [(e["kind"], e.get("code")) for e in events if e["kind"] in ("disarmed", "alarm")]
        assert kinds == [("disarmed", None), ("alarm", "duress")]
        assert "alarm_id" not in events[[e["kind"] for e in events].index("disarmed")]["event"]
        # The disarm photos were held, then shredded at the end of their window (not sent).
        assert dev.trace_count("held") == 1 and dev.trace_count("shredded") == 0

        # Heartbeats: the interval, nothing that counts photos on the flash.
        beats = [wire.payloads[i] for i, r in enumerate(records) if r["topic"].endswith("/up/heartbeat")]
        assert beats
        for payload in beats:
            body = payload[21 + payload[4]:-32]
            assert json.loads(body) == {"interval_s": 2}


@pytest.mark.timeout(120)
def test_a_cover_never_takes_the_key_slot_of_a_held_capture(tmp_path):
    # One key slot: the disarm photos take it. Their cover finds none free and is skipped,
    # where a new series would take the oldest held capture's slot: a cover is not evidence.
    with Stack(tmp_path / "run") as stack:
        dev = stack.add_device("cover-2", triggers={"disarm": {"frames": 1, "interval_ms": 0}},
                               hold_window_ms=600_000, extra_config={"key_slots": 1})
        dev.boot()
        dev.wait_trace("online", timeout=30)
        dev.panel("disarmed", slot=1)
        held = dev.wait_trace("held", timeout=20)[0]["capture"]
        (skipped,) = dev.wait_trace("cover_skipped", timeout=20)
        assert skipped["of"] == held and "SlotsExhausted" in skipped["why"]
        assert dev.trace_count("cover") == 0 and dev.trace_count("dropped") == 0
        dev.stop()
        assert [cid.hex() for state, cid in key_slots(dev.flash_path) if state == "claimed"] == [held]
