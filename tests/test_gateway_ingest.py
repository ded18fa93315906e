"""Ingest without a broker: chunks become durable, encrypted images; bad messages are counted, never stored."""

import hashlib
import os
import stat
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ingest.pipeline import Ingest, Message
from gateway.storage.keystore import KeyDestroyed
from gateway.protocol import capture as cap
from gateway.protocol import envelope as env
from gateway.protocol import encrypt_event
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from simulator.fake_device import FakeDevice

from support.plaintext import assert_no_plaintext

# A recent alarm time on the device's clock: its photos' retention counts from it (issue 15).
T_ALARM = int(time.time()) - 600

JPEGS = [b"\xff\xd8\xff\xe0" + os.urandom(5000) + b"\xff\xd9", b"\xff\xd8\xff\xe0" + os.urandom(3000) + b"\xff\xd9"]


class Captured:
    def __init__(self):
        self.lines = []

    def __call__(self, line):
        self.lines.append(line)

    @property
    def text(self):
        return "\n".join(self.lines)


@pytest.fixture
def gw(tmp_path):
    data = tmp_path / "gw"
    init_arc(data)
    config = add_device(data, "cam-1", "site-a")
    other = add_device(data, "cam-2", "site-b")
    store = Store.open(data)
    log = Captured()
    ingest = Ingest(store, log=log)
    yield ingest, FakeDevice(config, chunk_size=1024), FakeDevice(other), log
    store.close()


def run(ingest, messages):
    return ingest.process_batch([Message(t, p) for t, p in messages])


def receipts(device, result):
    out = []
    for o in result.outbound:
        if o.topic.endswith("/down/receipt"):
            e = device.open_downlink(o.topic, o.payload)
            out.append(env.parse_receipt_body(e.body))
    return out


def test_a_capture_in_chunks_is_stored_encrypted_and_receipted(gw):
    ingest, dev, _, _ = gw
    cid, sealed = dev.seal(JPEGS)
    msgs = dev.chunk_messages(cid, sealed, alarm_id=b"A" * 8)
    assert len(msgs) > 3
    first = run(ingest, msgs[:-1][::-1])  # reordered, and the last chunk in a later batch
    assert first.outbound == [] and ingest.store.images.list() == []
    result = run(ingest, msgs[-1:])
    assert receipts(dev, result) == [(cid, env.RECEIPT_STORED, 2, hashlib.sha256(sealed).digest())]
    images = ingest.store.images.list("cam-1")
    assert [ingest.store.images.read(i["id"]) for i in images] == JPEGS
    assert images[0]["trigger"] == "intrusion" and images[0]["alarm_id"] == (b"A" * 8).hex()
    for image in images:
        blob = (ingest.store.data_dir / image["blob_path"]).read_bytes()
        assert_no_plaintext(blob, JPEGS[image["frame_index"]], "the photo in its blob file")
        assert stat.S_IMODE(os.stat(ingest.store.data_dir / image["blob_path"]).st_mode) == 0o600
    assert ingest.store.spool.size() == 0
    [capture] = ingest.store.captures.list()
    assert capture["sha256"] == hashlib.sha256(sealed).hexdigest() and capture["frames"] == 2


def test_a_capture_sent_twice_is_stored_once_and_receipted_twice(gw):
    ingest, dev, _, _ = gw
    cid, sealed = dev.seal(JPEGS)
    r1 = run(ingest, dev.chunk_messages(cid, sealed, b"B" * 8))
    r2 = run(ingest, dev.chunk_messages(cid, sealed, b"B" * 8))  # the device did not get the receipt
    assert receipts(dev, r1) == receipts(dev, r2) and len(receipts(dev, r2)) == 1
    assert len(ingest.store.images.list()) == 2 and len(ingest.store.captures.list()) == 1


def test_a_replayed_last_chunk_of_a_stored_capture_is_refused_and_gets_no_receipt(gw):
    """PROTOCOL section 8 (issue 14, finding 4): a refused chunk gets no receipt, also a
    byte-exact copy of the last chunk of a capture already stored. The device gets its receipt
    again by sending the capture again under fresh counters."""
    ingest, dev, _, _ = gw
    cid, sealed = dev.seal(JPEGS)
    msgs = dev.chunk_messages(cid, sealed, b"R" * 8)
    first = run(ingest, msgs)
    assert len(receipts(dev, first)) == 1
    # The device's QoS-1 retransmission after a lost PUBACK, or a recorded copy sent later.
    for batch in ([msgs[-1]], [msgs[-1], msgs[-1]], msgs):
        replayed = run(ingest, batch)
        assert replayed.outbound == [] and replayed.rejected == {"replay": len(batch)}
    assert ingest.store.rejections.counts() == {"replay": 3 + len(msgs)}
    # Sent again under fresh counters, the stored capture is answered again, as the first time.
    again = run(ingest, dev.chunk_messages(cid, sealed, b"R" * 8))
    assert receipts(dev, again) == receipts(dev, first)
    assert len(ingest.store.captures.list()) == 1 and len(ingest.store.images.list()) == 2


def test_bad_messages_are_counted_by_reason_and_logged_without_payload(gw):
    ingest, dev, other, log = gw
    cid, sealed = dev.seal(JPEGS)
    msgs = dev.chunk_messages(cid, sealed, b"C" * 8)
    topic, payload = msgs[0]
    tampered = bytearray(payload)
    tampered[60] ^= 1
    wrong_key = FakeDevice({**_config(dev), "device_key": os.urandom(32).hex()})
    stranger = FakeDevice({**_config(dev), "device_id": "cam-9"})
    run(ingest, [
        (topic, bytes(tampered)),                              # bad_mac
        wrong_key.chunk_messages(cid, sealed, b"C" * 8)[0],     # bad_mac
        (topic, payload), (topic, payload),                    # the second is a replay
        ("vc/v1/cam-2/up/capture", msgs[1][1]),                # topic_mismatch
        (topic, os.urandom(300)),                              # malformed
        stranger.status("online"),                             # unknown_device
        dev.envelope(env.T_EVENT, os.urandom(48), time_s=int(time.time()) + 3600),  # stale: from the future
    ])
    assert ingest.store.rejections.counts() == {"bad_mac": 2, "replay": 1, "topic_mismatch": 1, "malformed": 1,
                                               "unknown_device": 1, "stale": 1}
    assert "device=cam-1" in log.text and "topic=vc/v1/cam-1/up/capture" in log.text
    for _, p in msgs[:2]:
        assert p[40:56].hex() not in log.text and repr(p[40:56])[2:-1] not in log.text
    assert dev.keys.up.hex() not in log.text
    # And a good capture still goes through afterwards.
    result = run(ingest, msgs[1:])
    assert receipts(dev, result)[0][1] == env.RECEIPT_STORED


def _config(dev):
    pub = dev.arc_public.public_numbers()
    return {"device_id": dev.device_id, "device_key": os.urandom(32).hex(), "arc_n": format(pub.n, "x"),
            "arc_e": pub.e, "arc_key_id": dev.arc_key_id.hex()}


def test_a_sealed_capture_that_does_not_open_gets_a_rejected_receipt(gw):
    ingest, dev, _, _ = gw
    cid, release, sealed = dev.seal_parts(JPEGS)
    bad = bytearray(cap.delivery(release, sealed))
    bad[len(release) + len(sealed) - 50] ^= 1  # inside the last frame's tag, before the padding
    result = run(ingest, dev.chunk_messages(cid, bytes(bad), b"D" * 8))
    assert receipts(dev, result) == [(cid, env.RECEIPT_REJECTED, 0, hashlib.sha256(bad).digest())]
    assert ingest.store.images.list() == [] and ingest.store.rejections.counts() == {"bad_capture": 1}


def test_reassembly_limits(gw):
    ingest, dev, _, _ = gw
    firsts = []
    for _ in range(5):
        cid, sealed = dev.seal(JPEGS)
        firsts.append(dev.chunk_messages(cid, sealed, b"E" * 8)[0])
    run(ingest, firsts)
    assert ingest.store.rejections.counts() == {"too_many_captures": 1}
    too_big = dev.envelope(env.T_CAPTURE, cap.build_chunk(os.urandom(16), b"E" * 8, 5 << 20, 0, 2, b"x" * 100))
    inconsistent = dev.envelope(env.T_CAPTURE, cap.build_chunk(os.urandom(16), b"E" * 8, 1000, 0, 3, b"x" * 100))
    run(ingest, [too_big, inconsistent])
    assert ingest.store.rejections.counts() == {"too_many_captures": 1, "capture_too_large": 1, "malformed": 1}


def test_a_partial_capture_expires_and_the_device_is_asked_to_resend(gw):
    ingest, dev, _, _ = gw
    cid, sealed = dev.seal(JPEGS)
    run(ingest, dev.chunk_messages(cid, sealed, b"F" * 8)[:2])
    assert ingest.expire().outbound == []
    ingest.spool_expiry_ms = -1
    result = ingest.expire()
    assert receipts(dev, result) == [(cid, env.RECEIPT_RESEND, 0, bytes(32))]
    assert ingest.store.spool.size() == 0


def test_events_are_decrypted_and_an_alarm_links_its_captures(gw):
    ingest, dev, _, _ = gw
    cid, sealed = dev.seal(JPEGS)
    aid = os.urandom(8)
    online = dev.status("online")
    result = run(ingest, [online,
                          dev.event({"kind": "disarmed", "slot": 2, "t": (T_ALARM - 900)}),
                          dev.event({"kind": "alarm", "code": "intrusion", "alarm_id": aid.hex(), "t": T_ALARM,
                                     "captures": [cid.hex()]})] + dev.chunk_messages(cid, sealed, aid))
    [time_msg] = [o for o in result.outbound if o.topic == "vc/v1/cam-1/down/time"]
    assert dev.open_downlink(time_msg.topic, time_msg.payload).etype == env.T_TIME
    events = ingest.store.events.list("cam-1")
    assert [(e["kind"], e["slot"]) for e in events] == [("disarmed", 2), ("alarm", None)]
    alarm = ingest.store.alarms.first("cam-1")
    assert alarm["alarm_id"] == aid.hex() and alarm["code"] == "intrusion" and alarm["captures"] == [cid.hex()]
    assert alarm["captures_stored"] == 1
    device = ingest.store.devices.list()[0]
    assert device["online"] == 1 and device["fw"] == "test"
    # The last will (counter online + 1, §7), published by the broker long after with its old
    # time and a counter far below the data counters, still marks the device offline...
    will = dev.envelope(env.T_STATUS, b'{"state":"offline","fw":"test"}', counter=2, time_s=1)
    run(ingest, [will])
    assert ingest.store.devices.list()[0]["online"] == 0
    # ...and the old online status replayed after it does not bring it back.
    run(ingest, [online])
    assert ingest.store.devices.list()[0]["online"] == 0
    assert ingest.store.rejections.counts() == {"replay": 1}


def cover_delivery(dev, frames=3, size=4000):
    """What a device sends as cover (PROTOCOL §4.4): a sealed capture of random frames behind a
    release record of kind 1, padded like any delivery."""
    cid, release, sealed = dev.seal_parts([os.urandom(size) for _ in range(frames)], trigger=9,
                                          kind=cap.KIND_COVER)
    return cid, cap.delivery(release, sealed, dev.bucket)


def test_a_cover_is_receipted_like_a_stored_capture_and_leaves_nothing_to_mistake_for_photos(gw):
    ingest, dev, _, _ = gw
    cid, delivery = cover_delivery(dev)
    real_cid, real = dev.seal([os.urandom(4000) for _ in range(3)])
    assert len(delivery) == len(real), "a cover has the size of the capture it stands for"
    decoy = os.urandom(8)
    cover_msgs = dev.chunk_messages(cid, delivery, decoy)
    real_aid = os.urandom(8)
    real_msgs = dev.chunk_messages(real_cid, real, real_aid)
    assert [len(p) for _, p in cover_msgs] == [len(p) for _, p in real_msgs]
    first = run(ingest, cover_msgs)
    second = run(ingest, real_msgs)
    # The same answer as for photos: status stored, the frames of its release record, the hash
    # of what was sent; the same size on the downlink, which the broker sees in the clear.
    assert receipts(dev, first) == [(cid, env.RECEIPT_STORED, 3, hashlib.sha256(delivery).digest())]
    assert [len(o.payload) for o in first.outbound] == [len(o.payload) for o in second.outbound]
    assert first.stored == [] and first.rejected == {}
    # Nothing a later reader could take for photos: no image, no alarm, no event; one row that
    # says cover, so that a resend gets the same answer.
    store = ingest.store
    assert [i["capture_id"] for i in store.images.list("cam-1")] == [real_cid.hex()] * 3
    assert [a["alarm_id"] for a in store.alarms.list("cam-1")] == [real_aid.hex()]
    assert store.events.list("cam-1") == []
    (row,) = [r for r in store.captures.list("cam-1") if r["capture_id"] == cid.hex()]
    assert (row["status"], row["trigger"], row["alarm_id"], row["frames"]) == ("cover", "cover", "", 3)
    resent = run(ingest, dev.chunk_messages(cid, delivery, decoy))  # fresh counters: a resend
    assert receipts(dev, resent) == receipts(dev, first)
    assert len(store.captures.list("cam-1")) == 2 and store.spool.size() == 0


def test_a_duress_disarm_is_the_duress_alarm_at_the_arc_and_a_normal_disarm_stays_a_disarm(gw):
    ingest, dev, _, _ = gw
    duress_aid, decoy = os.urandom(8).hex(), os.urandom(8).hex()
    normal = dev.event({"kind": "disarmed", "slot": 2, "duress": False, "alarm_id": decoy, "t": (T_ALARM - 900),
                        "event_id": "d1d1d1d1d1d1d1d1"})
    duress = dev.event({"kind": "disarmed", "slot": 2, "duress": True, "alarm_id": duress_aid, "t": (T_ALARM - 800),
                        "event_id": "d2d2d2d2d2d2d2d2"})
    assert len(normal[1]) == len(duress[1]), "the two disarms look alike on the wire"
    cid, sealed = dev.seal(JPEGS, trigger=cap.TRIGGER_CODES["duress"])
    run(ingest, [normal, duress] + dev.chunk_messages(cid, sealed, bytes.fromhex(duress_aid)))
    events = ingest.store.events.list("cam-1")
    # The normal disarm as it always was: the user slot, no alarm id, no duress flag.
    assert events[0]["event"] == {"kind": "disarmed", "slot": 2, "t": (T_ALARM - 900), "event_id": "d1d1d1d1d1d1d1d1"}
    assert events[0]["alarm_id"] is None
    # The duress disarm as the duress alarm it is, recorded as before issue 13, with its photos.
    assert events[1]["event"] == {"kind": "alarm", "code": "duress", "alarm_id": duress_aid, "slot": 2,
                                  "t": (T_ALARM - 800), "event_id": "d2d2d2d2d2d2d2d2"}
    (alarm,) = ingest.store.alarms.list("cam-1")
    assert (alarm["alarm_id"], alarm["code"], alarm["t"]) == (duress_aid, "duress", (T_ALARM - 800))
    assert alarm["captures"] == [cid.hex()] and alarm["captures_stored"] == 1
    # Sealed again (a lost PUBACK): counted once, as every event.
    run(ingest, [dev.event({"kind": "disarmed", "slot": 2, "duress": True, "alarm_id": duress_aid,
                            "t": (T_ALARM - 800), "event_id": "d2d2d2d2d2d2d2d2"})])
    assert len(ingest.store.events.list("cam-1")) == 2 and len(ingest.store.alarms.list("cam-1")) == 1


def test_an_alarm_sealed_twice_after_a_lost_puback_is_logged_once(gw):
    """PROTOCOL section 6: the device seals an event again when its first envelope may have gone
    stale; if the first copy did arrive, the gateway gets the same event under two counters."""
    ingest, dev, _, _ = gw
    aid = os.urandom(8).hex()
    alarm = {"kind": "alarm", "code": "smoke", "alarm_id": aid, "t": T_ALARM, "event_id": "e1e1e1e1e1e1e1e1"}
    armed = {"kind": "armed", "mode": "away", "slot": 1, "t": (T_ALARM - 1000), "event_id": "a2a2a2a2a2a2a2a2"}
    run(ingest, [dev.event(armed), dev.event(alarm)])
    run(ingest, [dev.event(dict(alarm)), dev.event(dict(armed))])   # fresh counters, same events
    assert [e["kind"] for e in ingest.store.events.list("cam-1")] == ["armed", "alarm"]
    assert [(a["alarm_id"], a["code"]) for a in ingest.store.alarms.list("cam-1")] == [(aid, "smoke")]
    assert ingest.store.rejections.counts() == {}
    # Events without an id (older firmware) are stored every time, as before.
    run(ingest, [dev.event({"kind": "disarmed", "slot": 1, "t": 1}), dev.event({"kind": "disarmed", "slot": 1, "t": 1})])
    assert [e["kind"] for e in ingest.store.events.list("cam-1")] == ["armed", "alarm", "disarmed", "disarmed"]


def test_an_alarm_that_waited_at_the_broker_while_the_gateway_was_down_is_logged_late_not_lost(gw):
    """PROTOCOL section 3 "Late events": the broker acknowledged the alarm in time, then every
    gateway was down for 20 minutes. The alarm is stored with how late it came; an old chunk
    is still refused (the device resends captures), and the late event cannot be replayed."""
    ingest, dev, _, log = gw
    sent = int(time.time()) - 1200
    aid = os.urandom(8).hex()
    alarm = {"kind": "alarm", "code": "intrusion", "alarm_id": aid, "t": sent, "event_id": "c3c3c3c3c3c3c3c3"}
    late = dev.envelope(env.T_EVENT, encrypt_event(dev.keys.event, os.urandom(16), alarm), time_s=sent)
    cid, sealed = dev.seal(JPEGS)
    old_chunk = dev.envelope(env.T_CAPTURE, cap.split_chunks(sealed, cid, b"L" * 8, 4096)[0], time_s=sent)
    run(ingest, [late, old_chunk, late])
    [event] = ingest.store.events.list("cam-1")
    assert event["kind"] == "alarm" and 1195 <= event["event"]["delivered_late_s"] <= 1260
    assert [(a["alarm_id"], a["code"]) for a in ingest.store.alarms.list("cam-1")] == [(aid, "intrusion")]
    assert ingest.store.rejections.counts() == {"stale": 1, "replay": 1}
    assert "late event: device=cam-1 kind=alarm" in log.text


def test_destroying_the_deletion_day_key_shreds_the_images(gw):
    ingest, dev, _, _ = gw
    cid, sealed = dev.seal(JPEGS)
    run(ingest, dev.chunk_messages(cid, sealed, b"G" * 8))
    images = ingest.store.images.list()
    assert ingest.store.keys.destroy(images[0]["kek_day"])
    with pytest.raises(KeyDestroyed):
        ingest.store.images.read(images[0]["id"])
    keyfile = ingest.store.data_dir / "keys" / "arc_private.pem"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600


def test_the_replay_window_survives_a_restart(gw, tmp_path):
    ingest, dev, _, _ = gw
    msg = dev.event({"kind": "armed", "mode": "away", "slot": 1, "t": 1})
    run(ingest, [msg])
    ingest.store.close()
    store = Store.open(ingest.store.data_dir)
    again = Ingest(store, log=lambda line: None)
    run(again, [msg])
    assert store.rejections.counts() == {"replay": 1}
    ingest.store = store  # closed by the fixture


CHUNK_BODIES = st.builds(
    cap.build_chunk,
    st.sampled_from([b"\1" * 16, b"\2" * 16, b"\3" * 16]), st.just(b"\0" * 8),
    st.integers(min_value=0, max_value=3000), st.integers(min_value=0, max_value=5),
    st.integers(min_value=0, max_value=5), st.binary(max_size=700),
) | st.binary(max_size=80)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(CHUNK_BODIES, max_size=12))
def test_arbitrary_chunk_sequences_never_reach_an_internal_error(gw, bodies):
    ingest, dev, _, _ = gw
    result = run(ingest, [dev.envelope(env.T_CAPTURE, b) for b in bodies])
    assert "internal_error" not in result.rejected
    assert ingest.store.images.list() == []


def test_a_capture_arriving_after_its_deletion_day_is_refused_for_good(gw):
    """A device cut off for longer than the retention period must not bring photos back past it."""
    ingest, dev, _, log = gw
    aid = b"L" * 8
    eight_days_ago = int((__import__("time").time() - 8 * 86400) * 1000)
    with ingest.store.transaction():
        ingest.store.alarms.note("cam-1", aid.hex(), eight_days_ago, code="intrusion")
    cid, sealed = dev.seal(JPEGS)
    result = run(ingest, dev.chunk_messages(cid, sealed, alarm_id=aid))
    assert receipts(dev, result) == [(cid, env.RECEIPT_REJECTED, 0, hashlib.sha256(sealed).digest())]
    assert ingest.store.images.list("cam-1") == []
    assert ingest.store.rejections.counts().get("expired") == 1
    assert "internal_error" not in ingest.store.rejections.counts()
