"""Attacks on a RUNNING gateway (`vericam gateway run`, its own process) over a real Mosquitto.

Each attack ends with the same four checks (`Site.after`):
- the gateway process is alive and still stores a good capture from a real device;
- nothing is stored from a forged source (no capture id the attacker made is in the store);
- every rejected message is counted by its reason (the store's `rejection_counts()` moved by
  exactly what the attack should cost);
- no payload bytes appear in the gateway's log.

The broker here is the project's anonymous loopback test broker, so anyone may publish on any
topic: that is the point, it shows what the GATEWAY refuses on its own. That the production
broker config refuses the same publishes first is `tests/test_broker_security.py`.
Everything is on 127.0.0.1 and bounded in count and time.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest

from gateway.protocol import capture as cap
from gateway.protocol import envelope as env
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from simulator.fake_device import FakeDevice, fake_jpeg
from simulator.processes import stop_process

from support.cli import VERICAM
from support.link import DeviceLink

JPEGS = [fake_jpeg(9006), fake_jpeg(7006)]
FLOOD = 2000


class Site:
    """A broker, a gateway process on its own data directory, and two provisioned devices."""

    def __init__(self, broker, tmp: Path):
        self.broker = broker
        self.data = tmp / "gw"
        init_arc(self.data)
        self.configs = {d: add_device(self.data, d, "site-a") for d in ("cam-1", "cam-2")}
        self.logfile = tmp / "gateway.log"
        self._log_fh = open(self.logfile, "w")
        self.proc = subprocess.Popen([VERICAM, "gateway", "run", "--data", str(self.data),
                                      "--broker", f"{broker.host}:{broker.port}"],
                                     stdout=self._log_fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "gateway running" not in self.logfile.read_text():
            assert self.proc.poll() is None, "gateway exited early:\n" + self.logfile.read_text()
            assert time.monotonic() < deadline, "gateway did not subscribe within 30 s"
            time.sleep(0.05)
        self.links = {d: DeviceLink(broker, FakeDevice(c, chunk_size=4096)) for d, c in self.configs.items()}
        self.attacker = DeviceLink(broker, FakeDevice(self.forged_config("cam-1")), client_id="attacker",
                                   max_inflight=100)
        self.sent_payloads: list[bytes] = []  # every hostile payload, to look for in the log
        self.forged_ids: set[str] = set()     # capture ids made by the attacker
        self.counts = self.rejections()

    def forged_config(self, device_id: str) -> dict:
        """A device config with the right ARC key but a key the gateway never issued."""
        real = self.configs["cam-1"]
        return {"device_id": device_id, "device_key": os.urandom(32).hex(), "arc_n": real["arc_n"],
                "arc_e": real["arc_e"], "arc_key_id": real["arc_key_id"]}

    def rejections(self) -> dict:
        with Store.open(self.data) as store:
            return store.rejections.counts()

    def stored_capture_ids(self) -> set[str]:
        with Store.open(self.data) as store:
            return {c["capture_id"] for c in store.captures.list() if c["status"] == "stored"}

    def hostile(self, messages, link=None):
        """Publish hostile (topic, payload) messages with QoS 1 and remember their payloads."""
        self.sent_payloads += [p for _, p in messages]
        (link or self.attacker).send(messages)

    def wait_counts(self, expected_delta: dict, timeout: float = 30.0) -> dict:
        """Wait until the rejection counts moved by exactly `expected_delta`, and no more."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.rejections()
            delta = {k: now.get(k, 0) - self.counts.get(k, 0) for k in set(now) | set(self.counts)}
            delta = {k: v for k, v in delta.items() if v}
            if delta == expected_delta or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(0.3)  # nothing more may trickle in
        now = self.rejections()
        delta = {k: v for k in set(now) | set(self.counts) if (v := now.get(k, 0) - self.counts.get(k, 0))}
        self.counts = now
        assert delta == expected_delta, f"rejections moved by {delta}, expected {expected_delta}"
        return delta

    def good_capture(self, device="cam-1", timeout: float = 30) -> bytes:
        link = self.links[device]
        cid, sealed = link.device.seal(JPEGS)
        link.send(link.device.chunk_messages(cid, sealed, os.urandom(8)))
        deadline = time.monotonic() + timeout
        while True:  # a receipt for an earlier capture may still be on its way
            receipt = link.next_downlink(timeout=max(0.1, deadline - time.monotonic()))
            if receipt[0] == cid:
                break
        assert receipt[:3] == (cid, env.RECEIPT_STORED, 2)
        return cid

    def after(self, timeout: float = 30):
        """The checks every attack ends with."""
        assert self.proc.poll() is None, "the gateway process died:\n" + self.logfile.read_text()[-3000:]
        cid = self.good_capture(timeout=timeout)
        stored = self.stored_capture_ids()
        assert cid.hex() in stored
        assert not (self.forged_ids & stored), "a capture from a forged source was stored"
        self.assert_log_clean()

    def assert_log_clean(self):
        log = self.logfile.read_bytes()
        for c in self.configs.values():
            assert c["device_key"].encode() not in log
        for payload in self.sent_payloads:
            # Any 12-byte window of the payload past the envelope header, raw, hex or repr'd.
            for i in range(40, max(41, len(payload) - 44), max(1, len(payload) // 8)):
                piece = payload[i:i + 12]
                if len(piece) < 12 or len(set(piece)) < 4:
                    continue  # too short or too regular to mean anything
                assert piece not in log, "payload bytes in the gateway log"
                assert piece.hex().encode() not in log, "payload hex in the gateway log"
                assert repr(piece)[2:-1].encode() not in log, "payload repr in the gateway log"
        assert b"internal_error" not in log and b"Traceback" not in log and b"INGEST STOPPED" not in log

    def close(self):
        for link in [*self.links.values(), self.attacker]:
            link.close()
        stop_process(self.proc, 20)
        self._log_fh.close()


@pytest.fixture
def site(broker, tmp_path):
    s = Site(broker, tmp_path)
    try:
        yield s
    finally:
        s.close()
    assert s.proc.returncode == 0, s.logfile.read_text()[-3000:]


def test_replayed_valid_messages_are_refused_and_counted(site):
    dev = site.links["cam-1"].device
    cid, sealed = dev.seal(JPEGS)
    captured = dev.chunk_messages(cid, sealed, os.urandom(8))
    site.links["cam-1"].send(captured)
    site.links["cam-1"].next_downlink(timeout=30)
    event = dev.event({"kind": "disarmed", "slot": 1, "t": int(time.time())})
    status = dev.status("online")
    site.links["cam-1"].send([event, status])
    site.wait_counts({})
    with Store.open(site.data) as store:
        events_before = len(store.events.list("cam-1"))
    down = site.links["cam-1"].down
    while not down.empty():  # the time message that answered the status
        down.get_nowait()
    # An eavesdropper replays everything it saw, twice, from its own connection.
    site.hostile(captured + [event, status] + captured + [event, status])
    site.wait_counts({"replay": 2 * (len(captured) + 2)})
    # Refused means without effect: no receipt for the replayed last chunk (PROTOCOL section 8).
    assert down.empty(), "the gateway answered a replayed message"
    with Store.open(site.data) as store:
        assert len(store.events.list("cam-1")) == events_before
        assert len([c for c in store.captures.list() if c["capture_id"] == cid.hex()]) == 1
    site.after()


def test_forged_macs_unknown_devices_and_stale_messages_store_nothing_and_are_counted(site):
    forger = site.attacker.device  # claims to be cam-1, with a key of its own
    cid, sealed = forger.seal(JPEGS)
    site.forged_ids.add(cid.hex())
    chunks = forger.chunk_messages(cid, sealed, os.urandom(8))
    # A real message with one bit flipped in the body, and one with a flipped MAC.
    real = site.links["cam-1"].device
    t, p = real.event({"kind": "alarm", "code": "intrusion", "alarm_id": "ab" * 8, "t": int(time.time())})
    flipped_body, flipped_mac = bytearray(p), bytearray(p)
    flipped_body[len(p) // 2] ^= 0x40
    flipped_mac[-1] ^= 1
    forged = chunks + [forger.event({"kind": "disarmed", "slot": 9, "t": int(time.time())}),
                       forger.status("offline"), (t, bytes(flipped_body)), (t, bytes(flipped_mac))]
    # A device the gateway never provisioned, and a real device's chunk held back an hour (an
    # event held back is logged late instead: PROTOCOL section 3 "Late events").
    stranger = FakeDevice(site.forged_config("cam-9"))
    unknown = [stranger.event({"kind": "disarmed", "slot": 9, "t": 0}), stranger.status("online")]
    held_back = real.envelope(env.T_CAPTURE, p[len(p) // 2:len(p) // 2 + 40], time_s=int(time.time()) - 3600)
    site.hostile(forged + unknown)
    site.hostile([held_back], link=site.links["cam-1"])
    site.wait_counts({"bad_mac": len(forged), "unknown_device": len(unknown), "stale": 1})
    with Store.open(site.data) as store:
        assert all(e.get("slot") != 9 for e in store.events.list("cam-1"))
        assert not store.alarms.list("cam-1")
    site.after()


def test_a_valid_device_cannot_speak_into_another_devices_topic(site):
    cam2 = site.links["cam-2"].device
    cid, sealed = cam2.seal(JPEGS)
    site.forged_ids.add(cid.hex())
    [(topic, payload)] = cam2.chunk_messages(cid, sealed, os.urandom(8))[:1]
    moved = topic.replace("/cam-2/", "/cam-1/")
    # 1. cam-2's own valid envelope, moved to cam-1's topic: the id inside is cam-2.
    # 2. cam-2 signs an envelope that names cam-1, on cam-1's topic, with cam-2's key.
    body = cap.split_chunks(sealed, cid, os.urandom(8), 4096)[0]
    impostor = env.build(env.T_CAPTURE, "cam-1", 1 << 40, int(time.time()), body, cam2.keys.up, moved)
    # 3. cam-2 moves its own event to its own status topic (wrong kind of topic).
    et, ep = cam2.event({"kind": "disarmed", "slot": 1, "t": int(time.time())})
    site.hostile([(moved, payload), (moved, impostor), (et.replace("/up/event", "/up/status"), ep)],
                 link=site.links["cam-2"])
    site.wait_counts({"topic_mismatch": 2, "bad_mac": 1})
    assert cid.hex() not in site.stored_capture_ids()
    site.after()


def test_oversized_truncated_and_garbage_messages(site):
    dev = site.links["cam-1"].device
    cid, sealed = dev.seal(JPEGS)
    site.forged_ids.add(cid.hex())
    t, p = dev.chunk_messages(cid, sealed, os.urandom(8))[0]
    rnd = os.urandom
    truncated = [(t, p[:k]) for k in (0, 1, 2, 4, 5, 20, 40, len(p) // 2, len(p) - 33, len(p) - 1)]
    extended = [(t, p + b"\x00"), (t, p + rnd(100))]
    garbage = [(t, rnd(n)) for n in (1, 17, 64, 300, 4096, 60000)]
    wrong_magic = [(t, b"XX" + p[2:]), (t, p[:2] + b"\x02" + p[3:])]
    bad_len = bytearray(p)
    bad_len[4] = 0  # device id length 0
    bad_id = bytearray(p)
    bad_id[5] = ord("A")  # upper case is outside the alphabet
    malformed = truncated + extended + garbage + wrong_magic + [(t, bytes(bad_len)), (t, bytes(bad_id))]
    # Topics that are not ours, or not a device's: topic_mismatch.
    # (A publish on a down/ topic never reaches the gateway: it subscribes to up/ only.)
    topics = [("vc/v1/cam-1/up/nonsense", p), ("vc/v1/cam-1/up", p), ("vc/v1/" + "x" * 200 + "/up/capture", p)]
    # Oversized capture: a valid envelope whose chunk claims more than the 4 MiB / 1024-chunk limits.
    big = [dev.envelope(env.T_CAPTURE, cid2 + rnd(8) + total.to_bytes(4, "big") + (0).to_bytes(2, "big")
                        + count.to_bytes(2, "big") + rnd(4096))
           for cid2, total, count in ((rnd(16), 5 * 2**20, 1280), (rnd(16), 8 * 2**20, 2048))]
    # And one message above the test broker's max_packet_size: the broker drops it (and the
    # publisher's connection), the gateway never sees it. Sent from a throwaway link.
    site.hostile(malformed + topics)
    site.hostile(big, link=site.links["cam-1"])
    site.wait_counts({"malformed": len(malformed), "topic_mismatch": len(topics), "capture_too_large": 2})
    throwaway = DeviceLink(site.broker, dev, client_id="throwaway", max_inflight=100)
    try:
        throwaway.client.publish(t, rnd(70000), qos=1)
        time.sleep(0.5)
    finally:
        throwaway.close()
    site.wait_counts({})
    site.after()


def test_a_bounded_flood_from_one_device_is_all_counted(site):
    """FLOOD messages from one device connection in a few seconds: a third forged, a third
    garbage, a third valid events. The valid ones are all stored, the rest all counted."""
    real = site.links["cam-1"].device
    forger = site.attacker.device
    third = FLOOD // 3
    msgs = []
    for i in range(FLOOD):
        kind = i % 3
        if kind == 0:
            msgs.append(real.event({"kind": "technical", "code": "flood", "seq": i, "t": int(time.time())}))
        elif kind == 1:
            msgs.append(forger.event({"kind": "disarmed", "slot": 7, "t": int(time.time())}))
        else:
            msgs.append(("vc/v1/cam-1/up/event", os.urandom(40 + i % 200)))
    valid = sum(1 for i in range(FLOOD) if i % 3 == 0)
    with Store.open(site.data) as store:
        before = len(store.events.list("cam-1"))
    t0 = time.monotonic()
    site.hostile(msgs)
    sent_s = time.monotonic() - t0
    site.wait_counts({"bad_mac": FLOOD - valid - (FLOOD - valid) // 2, "malformed": (FLOOD - valid) // 2},
                     timeout=60)
    drained_s = time.monotonic() - t0
    with Store.open(site.data) as store:
        events = store.events.list("cam-1")
    assert len(events) - before == valid
    assert not any(e.get("slot") == 7 for e in events)
    print(f"\nflood: {FLOOD} messages published in {sent_s:.1f} s, all handled in {drained_s:.1f} s "
          f"({third} of each kind)")
    assert sent_s < 30
    site.after()


def test_a_counter_above_the_signed_64_bit_range_is_malformed_not_an_internal_error(site):
    """Found by this suite: a validly signed envelope with counter 2**64 - 1 reached the store,
    overflowed SQLite's INTEGER and was counted as internal_error. Now it is malformed."""
    thief = FakeDevice(site.configs["cam-1"])
    thief.counter = 2**63 - 1
    status = thief.envelope(env.T_STATUS, b'{"state":"online","fw":"x"}', counter=2**64 - 1)
    site.hostile([thief.event({"kind": "technical", "code": "x", "t": int(time.time())}), status],
                 link=site.attacker)
    site.wait_counts({"malformed": 2})
    site.after()


def test_a_stolen_key_cannot_lock_the_genuine_device_out_with_a_huge_counter(site):
    """Issue 14, finding 5 (was a strict xfail): a counter may leap only so far above the
    highest seen (PROTOCOL section 3 "Counters"; from 0 for a device not heard yet, as here),
    so the thief's message is refused as `counter_jump`, the ARC gets a technical event, and
    the genuine device goes on."""
    thief = FakeDevice(site.configs["cam-1"])  # the key, read off the flash
    thief.counter = 2**63 - 2  # the highest counter the gateway accepts (2**63 - 1)
    site.hostile([thief.event({"kind": "technical", "code": "tamper", "t": int(time.time())})], link=site.attacker)
    site.wait_counts({"counter_jump": 1})
    with Store.open(site.data) as store:
        codes = [e["code"] for e in store.events.list("cam-1")]
    assert "counter_jump" in codes and "tamper" not in codes
    site.after(timeout=5)  # the genuine device's next capture must still be stored



FAKE_LINE = "2026-01-01 00:00:00,000 stored capture deadbeef from cam-1: 3 frames"


def test_one_devices_reassembly_limit_does_not_touch_another_device(site):
    """cam-2 opens a fifth capture in reassembly (refused, too_many_captures); cam-1 still delivers.
    A topic carrying a fake log line never reaches the gateway: Mosquitto drops the publisher."""
    cam2 = site.links["cam-2"].device
    firsts = []
    for _ in range(5):
        cid, sealed = cam2.seal(JPEGS)
        site.forged_ids.add(cid.hex())  # never completed, so never stored
        firsts.append(cam2.chunk_messages(cid, sealed, os.urandom(8))[0])
    site.hostile(firsts, link=site.links["cam-2"])
    throwaway = DeviceLink(site.broker, cam2, client_id="log-forger", max_inflight=100)
    try:
        throwaway.client.publish(f"vc/v1/cam-1/up/x\n{FAKE_LINE}\r", b"VC" + os.urandom(60), qos=1)
        time.sleep(0.5)
    finally:
        throwaway.close()
    site.wait_counts({"too_many_captures": 1})
    assert "log-forger disconnected due to malformed packet" in site.broker.log()
    assert FAKE_LINE not in site.logfile.read_text()
    site.after()


def test_the_gateway_itself_never_lets_a_topic_forge_a_log_line(tmp_path):
    """In case a broker passes control characters in topics: the ingest logs them escaped."""
    from gateway.ingest.pipeline import Ingest, Message

    data = tmp_path / "gw"
    init_arc(data)
    add_device(data, "cam-1", "site-a")
    lines = []
    with Store.open(data) as store:
        result = Ingest(store, log=lines.append).process_batch(
            [Message(f"vc/v1/cam-1/up/x\n{FAKE_LINE}", b"VC" + os.urandom(60)),
             Message(f"vc/v1/cam-1\n{FAKE_LINE}/up/event", os.urandom(60))])
    assert sum(result.rejected.values()) == 2
    assert len(lines) == 2 and not any("\n" in ln or "\r" in ln for ln in lines)
