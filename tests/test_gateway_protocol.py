"""The gateway's protocol code: every §3 rejection in order, sealed captures, and no crash on any input."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocol import capture as cap
from gateway.protocol import envelope as env
from gateway.protocol import errors
from gateway.protocol.event import decrypt_event, encrypt_event
from gateway.protocol.keys import DeviceKeys

from support.vectors import mv

KEY = bytes(range(32))
KEYS = DeviceKeys.derive(KEY)
NOW = 1795300000
ARC = mv.load_test_arc_key()


def envelope(etype=env.T_EVENT, device="cam-1", counter=1, time_s=NOW, body=b"x" * 32, key=None, topic=None):
    topic = topic or env.topic_for(device, etype)
    return env.build(etype, device, counter, time_s, body, key or KEYS.up, topic)


def open_(payload, topic="vc/v1/cam-1/up/event", window=None, keys=KEYS, now=NOW):
    window = window if window is not None else env.ReplayWindow()
    return env.open_envelope(topic, payload, lambda d: keys, lambda d: window, now)


def test_a_good_envelope_opens_and_its_fields_come_back():
    e = open_(envelope(counter=7, body=b"hello"))
    assert (e.etype, e.device_id, e.counter, e.time, e.body) == (env.T_EVENT, "cam-1", 7, NOW, b"hello")


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: p[:40], "malformed"),
    (lambda p: b"XX" + p[2:], "malformed"),
    (lambda p: p[:2] + b"\x02" + p[3:], "malformed"),
    (lambda p: p + b"\0", "malformed"),
    (lambda p: p[:5] + b"CAM-1" + p[10:], "malformed"),  # upper case is outside the alphabet
])
def test_malformed_envelopes_are_rejected_as_malformed(mutate, reason):
    with pytest.raises(errors.ProtocolError) as info:
        open_(mutate(envelope()))
    assert info.value.reason == reason


def test_rejections_come_in_the_spec_order():
    good = envelope()
    # Another device's topic beats a bad MAC: topic_mismatch.
    with pytest.raises(errors.TopicMismatch):
        open_(good, topic="vc/v1/cam-2/up/event")
    # The right device but the wrong kind of topic: topic_mismatch.
    with pytest.raises(errors.TopicMismatch):
        open_(good, topic="vc/v1/cam-1/up/capture")
    # No key: unknown_device, before any MAC is computed.
    with pytest.raises(errors.UnknownDevice):
        env.open_envelope("vc/v1/cam-1/up/event", good, lambda d: None, lambda d: env.ReplayWindow(), NOW)
    # Wrong device key: bad_mac.
    with pytest.raises(errors.BadMac):
        open_(good, keys=DeviceKeys.derive(os.urandom(32)))
    # Signed with K_down (a reflected message): bad_mac.
    with pytest.raises(errors.BadMac):
        open_(envelope(key=KEYS.down))
    # Replay beats stale: an old and replayed message is a replay.
    w = env.ReplayWindow()
    open_(envelope(counter=5), window=w)
    with pytest.raises(errors.Replay):
        open_(envelope(counter=5, time_s=NOW - 10_000), window=w)
    with pytest.raises(errors.Stale):  # a chunk sent 301 s ago
        open_(envelope(env.T_CAPTURE, counter=6, time_s=NOW - 301), topic="vc/v1/cam-1/up/capture", window=w)
    with pytest.raises(errors.Stale):  # an event from 301 s in the future
        open_(envelope(counter=8, time_s=NOW + 301), window=w)
    # An event sent long ago with a fresh counter is late, not refused (§3 "Late events")...
    late = open_(envelope(counter=9, time_s=NOW - 3600), window=w)
    assert env.late_by_s(late, NOW) == 3600
    assert env.late_by_s(open_(envelope(counter=10, time_s=NOW - 300), window=w), NOW) == 0
    # ...and a replay of it is still a replay.
    with pytest.raises(errors.Replay):
        open_(envelope(counter=9, time_s=NOW - 3600), window=w)
    # Time 0 (clock not set) is accepted.
    assert open_(envelope(counter=7, time_s=0), window=w).time == 0


def test_replay_window_accepts_each_counter_once_and_refuses_far_behind():
    W = env.REPLAY_WINDOW
    w2 = env.ReplayWindow()
    w2.accept(W + 100)
    w2.accept(W + 98)
    w2.accept(W + 99)  # reordered inside the window: accepted once
    with pytest.raises(errors.Replay):
        w2.accept(W + 99)
    w2.accept(100)  # exactly REPLAY_WINDOW below: inside the window
    with pytest.raises(errors.Replay):
        w2.accept(99)  # more than REPLAY_WINDOW below
    with pytest.raises(errors.Replay):
        w2.accept(100)  # seen
    w2.accept(10 * W)  # a jump forward clears the bitmap
    w2.accept(10 * W - 1)
    with pytest.raises(errors.Replay):
        w2.accept(W + 100)


@given(st.lists(st.integers(min_value=0, max_value=3000), max_size=80))
def test_replay_window_matches_a_set_model(counters):
    w, seen, high = env.ReplayWindow(), set(), -1
    for c in counters:
        expect_ok = c not in seen and (high < 0 or high - c <= env.REPLAY_WINDOW)
        try:
            w.accept(c)
            ok = True
        except errors.Replay:
            ok = False
        assert ok == expect_ok
        if ok:
            seen.add(c)
            high = max(high, c)


def test_status_envelopes_are_ordered_among_themselves_not_by_window_or_clock():
    will = env.build(env.T_STATUS, "cam-1", 11, NOW - 86400, b'{"state":"offline"}', KEYS.up)
    # Long after, far below the data high-water mark and a day old: still accepted.
    e = env.open_envelope("vc/v1/cam-1/up/status", will, lambda d: KEYS,
                          lambda d: env.ReplayWindow(10_000, 1), NOW, lambda d: 10)
    assert e.counter == 11
    with pytest.raises(errors.Replay):
        env.open_envelope("vc/v1/cam-1/up/status", will, lambda d: KEYS, lambda d: env.ReplayWindow(), NOW,
                          lambda d: 11)


def seal_two(frames=(b"\xff\xd8first\xff\xd9", b"\xff\xd8" + b"s" * 100 + b"\xff\xd9")):
    dk, sk, cid = os.urandom(32), os.urandom(32), os.urandom(16)
    wrapped = mv.oaep_encrypt(ARC["n"], ARC["e"], dk, os.urandom(32))
    sealed = cap.seal([(NOW, f) for f in frames], trigger=2, capture_id=cid, captured_at=NOW,
                      arc_key_id=ARC["key_id"], dk=dk, slot_key=sk, wrapped_key=wrapped, meta_iv=os.urandom(16),
                      ivs=[os.urandom(16) for _ in frames])
    return cid, sealed, list(frames), sk


def release_of(cid, sk, frames=2, kind=cap.KIND_CAPTURE):
    return cap.release(kind=kind, frames=frames, capture_id=cid, slot_key=sk, arc_n=ARC["n"], arc_e=ARC["e"],
                       arc_key_id=ARC["key_id"])


def deliver_two():
    """(capture_id, delivery, frames, header end): what a device sends for the capture (§4.5)."""
    cid, sealed, frames, sk = seal_two()
    release = release_of(cid, sk)
    return cid, cap.delivery(release, sealed), frames, len(release)


def test_a_sealed_capture_opens_to_its_frames():
    cid, sealed, frames, sk = seal_two()
    opened, end = cap.open_sealed(sealed, ARC["private_key"], sk, expected_key_id=ARC["key_id"])
    assert opened.capture_id == cid and [f.jpeg for f in opened.frames] == frames
    assert opened.trigger_name == "intrusion" and opened.captured_at == NOW
    assert end == len(sealed)


def test_a_delivery_opens_with_the_slot_key_from_its_release_record():
    cid, sent, frames, head = deliver_two()
    assert len(sent) == cap.BUCKET and sent[:4] == b"VREL" and sent[head:head + 4] == b"VCAP"
    opened = cap.open_delivery(sent, ARC["private_key"], ARC["key_id"])
    assert opened.capture_id == cid and [f.jpeg for f in opened.frames] == frames
    assert not opened.cover and opened.trigger_name == "intrusion"


def test_the_trigger_time_and_frame_lengths_are_not_in_the_clear():
    cid, sealed, frames, _sk = seal_two(frames=(b"\xff\xd8" + b"a" * 37 + b"\xff\xd9",))
    w = 256
    assert sealed[4] == 2 and sealed[5:8] == b"\0\0\0"  # no trigger byte in the header any more
    assert NOW.to_bytes(4, "big") not in sealed
    assert (41).to_bytes(4, "big") not in sealed[cap.HEADER_FIXED + w:]  # only c, the ciphertext length


def test_without_its_slot_key_a_capture_does_not_open_even_with_the_arc_key():
    cid, sealed, _frames, sk = seal_two()
    for wrong in (bytes(32), os.urandom(32), sk[:-1] + bytes([sk[-1] ^ 1])):
        with pytest.raises(errors.BadCapture, match="header MAC"):
            cap.open_sealed(sealed, ARC["private_key"], wrong, expected_key_id=ARC["key_id"])


def test_a_release_record_is_the_same_bytes_on_every_resend_and_opens_with_cryptography():
    cid, sk = os.urandom(16), os.urandom(32)
    assert release_of(cid, sk) == release_of(cid, sk)
    assert release_of(cid, sk) != release_of(cid, os.urandom(32))
    rel = cap.open_release(release_of(cid, sk, frames=3), ARC["private_key"], ARC["key_id"])
    assert (rel.kind, rel.frames, rel.capture_id, rel.slot_key, rel.size) == (cap.KIND_CAPTURE, 3, cid, sk, 272)


def test_a_cover_delivery_is_discarded_and_says_how_many_frames_to_echo():
    cid, sealed, _frames, sk = seal_two()
    sent = cap.delivery(release_of(cid, sk, frames=3, kind=cap.KIND_COVER), sealed)
    opened = cap.open_delivery(sent, ARC["private_key"], ARC["key_id"])
    assert opened.cover and opened.frames == [] and opened.frames_claimed == 3
    assert opened.capture_id == cid and opened.trigger_name == "cover"


def test_a_delivery_whose_parts_disagree_is_refused():
    cid, sealed, _frames, sk = seal_two()
    other = os.urandom(16)
    cases = [
        (cap.delivery(release_of(other, sk), sealed), "another capture"),          # release of another capture
        (cap.delivery(release_of(cid, os.urandom(32)), sealed), "header MAC"),     # another slot key
        (cap.delivery(release_of(cid, sk, frames=3), sealed), "3 frames"),         # wrong frame count
        (release_of(cid, sk) + sealed + b"\0\1", "not zero padding"),              # padding that is not zeros
        (sealed, "release record"),                                                 # no release record
    ]
    for data, words in cases:
        with pytest.raises(errors.ProtocolError, match=words):
            cap.open_delivery(data, ARC["private_key"], ARC["key_id"])


def test_any_changed_byte_of_a_sealed_capture_is_refused():
    _, sent, _, head = deliver_two()
    end = len(sent.rstrip(b"\0")) + 1  # the release record and the sealed capture; not the padding
    for i in list(range(0, end, 7)) + [end - 1]:
        bad = bytearray(sent)
        bad[i] ^= 0x40
        with pytest.raises(errors.ProtocolError):
            cap.open_delivery(bytes(bad), ARC["private_key"], ARC["key_id"])


def test_frame_tags_are_checked_before_decrypting(monkeypatch):
    _, sealed, _, sk = seal_two()
    calls = []
    real = cap._cbc_decrypt
    monkeypatch.setattr(cap, "_cbc_decrypt", lambda *a: calls.append(a[-1]) or real(*a))
    bad = bytearray(sealed)
    bad[cap.HEADER_FIXED + 256 + cap.META_SIZE + 32 + 30] ^= 1  # inside frame 0's ciphertext
    with pytest.raises(errors.BadCapture, match="tag of frame 0"):
        cap.open_sealed(bytes(bad), ARC["private_key"], sk, expected_key_id=ARC["key_id"])
    assert calls == ["header"]  # the header's own fields, after its MAC; no frame was decrypted


def test_dropped_or_truncated_frames_are_refused():
    _, sealed, frames, sk = seal_two()
    with pytest.raises(errors.BadCapture):
        cap.open_sealed(sealed[:-34], ARC["private_key"], sk, expected_key_id=ARC["key_id"])  # no end record
    with pytest.raises(errors.WrongArcKey):
        cap.open_sealed(sealed, ARC["private_key"], sk, expected_key_id=b"\0" * 8)
    _, sent, _, _ = deliver_two()
    with pytest.raises(errors.WrongArcKey):
        cap.open_delivery(sent, ARC["private_key"], b"\0" * 8)


def test_events_decrypt_and_garbage_is_a_protocol_error():
    body = encrypt_event(KEYS.event, os.urandom(16), {"kind": "disarmed", "slot": 2, "t": NOW})
    assert decrypt_event(KEYS.event, body)["slot"] == 2
    with pytest.raises(errors.ProtocolError):
        decrypt_event(os.urandom(32), body)
    with pytest.raises(errors.ProtocolError):
        decrypt_event(KEYS.event, encrypt_event(KEYS.event, os.urandom(16), b"[1,2]"))


# Any input at all: only protocol errors ------------------------------------------------------
SEALED = deliver_two()[1].rstrip(b"\0")  # release record and sealed capture (a whole delivery, unpadded)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_errors(data):
    for fn in (env.parse, cap.parse_chunk, lambda d: decrypt_event(KEYS.event, d),
               lambda d: open_(d), lambda d: env.parse_receipt_body(d)):
        try:
            fn(data)
        except errors.ProtocolError:
            pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.integers(min_value=0, max_value=len(SEALED) - 1), st.binary(min_size=1, max_size=8),
       st.integers(min_value=0, max_value=len(SEALED)))
def test_corrupted_or_cut_sealed_captures_raise_only_protocol_errors(at, junk, cut):
    bad = (SEALED[:at] + junk + SEALED[at + len(junk):])[:cut]
    if bad == SEALED:
        return  # junk equal to what it replaced: nothing was corrupted
    with pytest.raises(errors.ProtocolError):
        cap.open_delivery(bad, ARC["private_key"], ARC["key_id"])


@given(st.binary(max_size=200))
def test_arbitrary_bodies_in_valid_envelopes_raise_only_protocol_errors(body):
    for etype in (env.T_CAPTURE, env.T_EVENT, env.T_STATUS):
        e = open_(envelope(etype=etype, body=body), topic=env.topic_for("cam-1", etype), now=NOW)
        try:
            if etype == env.T_CAPTURE:
                cap.parse_chunk(e.body)
            elif etype == env.T_EVENT:
                decrypt_event(KEYS.event, e.body)
            else:
                from gateway.protocol.event import parse_status
                parse_status(e.body)
        except errors.ProtocolError:
            pass
