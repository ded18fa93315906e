"""Per-device quotas (issue 14, finding 6): a device, even one whose key was stolen, cannot flood the ingest.

Past its quota (messages or bytes per second, or bytes in reassembly) a device's messages are
refused as `rate_limited`: counted, acknowledged, told to the ARC as one technical event a
minute, and never logged one line each. Alarm photos at link speed stay far inside the
defaults, forgeries and replays cannot spend a device's quota, and a flooding device does not
hold up another device's alarm: the last test floods a real broker and gateway.
"""

import os
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ingest.pipeline import Ingest, Message
from gateway.ingest.quotas import DeviceLimits, Quotas
from gateway.ingest.service import Gateway
from gateway.protocol import envelope as env
from gateway.protocol import errors
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from simulator.fake_device import FakeDevice, fake_jpeg

from support.link import DeviceLink


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def alarm_photos(dev: FakeDevice, alarm_id: bytes) -> list[tuple[str, bytes]]:
    """A 3-frame capture of about 130 KB in 2 KiB chunks: one alarm's photos. Padded to 128 KiB
    for the wire (PROTOCOL §4.5), that is 64 chunks."""
    cid, sealed = dev.seal([fake_jpeg(43_000) for _ in range(3)])
    return dev.chunk_messages(cid, sealed, alarm_id)


@pytest.fixture
def site(tmp_path):
    data = tmp_path / "gw"
    init_arc(data)
    configs = {d: add_device(data, d, "site-a") for d in ("cam-1", "cam-2")}
    store = Store.open(data)
    lines = []
    yield store, configs, lines
    store.close()


def ingest_with(store, lines, limits=DeviceLimits()):
    ingest = Ingest(store, log=lines.append, limits=limits)
    ingest.quotas.clock = Clock()  # frozen: every message at the same instant, the worst case
    return ingest


def send(ingest, messages):
    return ingest.process_batch([Message(t, p) for t, p in messages])


def gateway_events(store, device, code):
    return [e["event"] for e in store.events.list(device) if e["code"] == code and e["event"].get("source") == "gateway"]


def test_the_defaults_take_30_alarm_captures_and_their_events_at_link_speed(site):
    store, configs, lines = site
    ingest = ingest_with(store, lines)
    dev = FakeDevice(configs["cam-1"], chunk_size=2048)
    messages = []
    for _ in range(30):
        aid = os.urandom(8)
        messages.append(dev.event({"kind": "alarm", "code": "intrusion", "alarm_id": aid.hex(), "t": int(time.time())}))
        messages += alarm_photos(dev, aid)
    assert len(messages) == 30 * 65 <= DeviceLimits().message_burst
    result = send(ingest, messages)
    assert result.rejected == {} and len(result.stored) == 30
    assert not gateway_events(store, "cam-1", "rate_limited")


def test_a_device_over_its_message_rate_is_refused_counted_and_reported_once_a_minute(site):
    store, configs, lines = site
    limits = DeviceLimits(messages_per_s=10, message_burst=50)
    ingest = ingest_with(store, lines, limits)
    flooder = FakeDevice(configs["cam-1"])
    flood = [flooder.event({"kind": "technical", "code": "flood", "seq": i, "t": int(time.time())}) for i in range(200)]
    result = send(ingest, flood)
    assert result.rejected == {"rate_limited": 150}
    assert len(store.events.list("cam-1")) == 50 + 1  # the burst, and one technical event
    [notice] = gateway_events(store, "cam-1", "rate_limited")
    assert notice["kind"] == "technical" and notice["refused"] == 1
    assert sum("rejected rate_limited" in line for line in lines) == 0  # no line per message
    assert sum("technical alarm rate_limited: device=cam-1" in line for line in lines) == 1
    # Two seconds later 20 more fit; the rest is refused, and a minute on the next event says how many.
    ingest.quotas.clock.t += 2
    more = [flooder.event({"kind": "technical", "code": "x", "t": int(time.time())}) for _ in range(30)]
    assert send(ingest, more).rejected == {"rate_limited": 10}
    ingest.notices.clock = lambda: 1e12
    send(ingest, [flooder.event({"kind": "technical", "code": "x", "t": int(time.time())})])
    assert [n["refused"] for n in gateway_events(store, "cam-1", "rate_limited")] == [1, 160]
    assert store.rejections.counts() == {"rate_limited": 161}
    # The other device was never touched.
    other = FakeDevice(configs["cam-2"])
    assert send(ingest, [other.event({"kind": "disarmed", "slot": 1, "t": int(time.time())})]).rejected == {}


def test_a_device_over_its_byte_rate_is_refused(site):
    store, configs, lines = site
    ingest = ingest_with(store, lines, DeviceLimits(bytes_per_s=10_000, byte_burst=100_000))
    dev = FakeDevice(configs["cam-1"], chunk_size=2048)
    photos = alarm_photos(dev, os.urandom(8))  # about 135 KB on the wire
    result = send(ingest, photos)
    refused = result.rejected["rate_limited"]
    assert 0 < refused < len(photos) and not result.stored
    # A minute later the device sends the half with the missing chunks again, under fresh
    # counters (about 70 KB, inside the burst): the capture completes.
    ingest.quotas.clock.t += 60
    again = [dev.envelope(env.T_CAPTURE, env.parse(p).body) for _, p in photos[len(photos) // 2:]]
    assert send(ingest, again).rejected == {} and len(store.captures.list()) == 1


def test_captures_in_reassembly_may_claim_only_so_many_bytes(site):
    store, configs, lines = site
    ingest = ingest_with(store, lines, DeviceLimits(reassembly_bytes=300_000))
    dev = FakeDevice(configs["cam-1"], chunk_size=2048)
    captures = [alarm_photos(dev, os.urandom(8)) for _ in range(3)]
    # The first chunk of each: two claim 256 KiB together, the third would pass 300 KB.
    result = send(ingest, [c[0] for c in captures])
    assert result.rejected == {"rate_limited": 1}
    assert len(store.spool.reserved("cam-1")) == 2
    # Once one is complete and receipted, the third fits.
    assert len(send(ingest, captures[0][1:]).stored) == 1
    third = [dev.envelope(env.T_CAPTURE, env.parse(p).body) for _, p in captures[2]]
    assert send(ingest, third).stored and store.rejections.counts() == {"rate_limited": 1}


def test_forgeries_and_replays_cannot_spend_a_devices_quota(site):
    """Only an authentic, new message spends tokens, so whoever lacks the key cannot silence a device."""
    store, configs, lines = site
    ingest = ingest_with(store, lines, DeviceLimits(messages_per_s=1, message_burst=5))
    real = FakeDevice(configs["cam-1"])
    forger = FakeDevice({**configs["cam-1"], "device_key": os.urandom(32).hex()})
    first = real.event({"kind": "armed", "mode": "away", "slot": 1, "t": int(time.time())})
    send(ingest, [first])
    hostile = [forger.event({"kind": "disarmed", "slot": 9, "t": int(time.time())}) for _ in range(50)] + [first] * 50
    assert send(ingest, hostile).rejected == {"bad_mac": 50, "replay": 50}
    alarm = real.event({"kind": "alarm", "code": "intrusion", "alarm_id": "ab" * 8, "t": int(time.time())})
    assert send(ingest, [alarm]).rejected == {}
    assert [a["alarm_id"] for a in store.alarms.list("cam-1")] == ["ab" * 8]


def test_a_batch_that_fails_to_commit_gives_its_tokens_back():
    quotas = Quotas(DeviceLimits(messages_per_s=1, message_burst=3), clock=Clock())
    quotas.spend("cam-1", 10)
    with pytest.raises(OSError):
        with quotas.batch():
            quotas.spend("cam-1", 10)
            quotas.spend("cam-2", 10)
            raise OSError("disk full")
    with quotas.batch():  # the retried batch: the same two messages, and the quota they left
        quotas.spend("cam-1", 10)
        quotas.spend("cam-1", 10)
        with pytest.raises(errors.RateLimited):
            quotas.spend("cam-1", 10)


def test_limits_that_make_no_sense_are_refused():
    for bad in ({"messages_per_s": 0}, {"message_burst": 0}, {"bytes_per_s": -1}, {"reassembly_bytes": 0}):
        with pytest.raises(ValueError):
            DeviceLimits(**bad)


# With the real broker -----------------------------------------------------------------------------
FLOOD_MAX = 60_000
FLOOD_MAX_S = 60.0
FLOOD_LIMITS = DeviceLimits(messages_per_s=50, message_burst=200)


class Flood(threading.Thread):
    """cam-1 publishing valid one-chunk captures of 16 KiB as fast as it can (each one the gateway
    stores costs it an RSA decryption and a file), until told to stop, FLOOD_MAX are out or
    FLOOD_MAX_S passed."""

    def __init__(self, broker, device: FakeDevice):
        super().__init__(daemon=True)
        self.device = device
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flooder", protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(500)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.stop = threading.Event()
        self.sent = 0
        self._last = None

    def run(self):
        deadline = time.monotonic() + FLOOD_MAX_S
        jpeg, aid = fake_jpeg(600), os.urandom(8)
        while not self.stop.is_set() and self.sent < FLOOD_MAX and time.monotonic() < deadline:
            cid, sealed = self.device.seal([jpeg])
            [(topic, payload)] = self.device.chunk_messages(cid, sealed, aid)
            self._last = self.client.publish(topic, payload, qos=1)
            self.sent += 1
            if self.sent % 500 == 0:
                self._last.wait_for_publish(10)  # keep the client's own queue short

    def close(self):
        if self._last is not None:
            self._last.wait_for_publish(30)
        self.client.disconnect()
        self.client.loop_stop()


def test_a_flooding_device_does_not_hold_up_another_devices_alarm(tmp_path, broker):
    data = tmp_path / "gw"
    init_arc(data)
    configs = {d: add_device(data, d, "site-a") for d in ("cam-1", "cam-2")}
    lines = []
    gw = Gateway(data, broker.host, broker.port, log=lines.append, limits=FLOOD_LIMITS).start()
    link = DeviceLink(broker, FakeDevice(configs["cam-2"], chunk_size=2048))
    flood = Flood(broker, FakeDevice(configs["cam-1"], chunk_size=16 * 1024))
    t_start = time.monotonic()
    try:
        flood.start()
        while flood.sent < 1000:  # well past cam-1's burst before cam-2's alarm
            assert flood.is_alive(), "the flood did not get going"
            time.sleep(0.01)
        dev = link.device
        aid = os.urandom(8)
        cid, sealed = dev.seal([fake_jpeg(43_000) for _ in range(3)])
        t0 = time.monotonic()
        link.send([dev.event({"kind": "alarm", "code": "intrusion", "alarm_id": aid.hex(), "t": int(time.time()),
                              "captures": [cid.hex()]})] + dev.chunk_messages(cid, sealed, aid))
        while not alarm_stored(data, "cam-2"):
            assert time.monotonic() - t0 < 30, "cam-2's alarm and photos were not stored within 30 s"
            time.sleep(0.05)
        stored_s = time.monotonic() - t0
        still_flooding = flood.is_alive()
        flood.stop.set()
        flood.join(30)
        flood.close()
        receipt = link.next_downlink(timeout=30)  # it queues behind the receipts of cam-1's captures
        delivered_s = time.monotonic() - t0
        assert receipt[:3] == (cid, env.RECEIPT_STORED, 3)
        assert still_flooding, "the flood ended before cam-2's alarm was stored: nothing was shown"
        deadline = time.monotonic() + 120  # every flood message handled: stored or refused
        while True:
            with Store.open(data) as store:
                flooded = len([c for c in store.captures.list() if c["device"] == "cam-1"])
                counts = store.rejections.counts()
            if flooded + counts.get("rate_limited", 0) >= flood.sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        total_s = time.monotonic() - t_start
    finally:
        link.close()
        gw.stop()
    refused = counts.get("rate_limited", 0)
    with Store.open(data) as store:
        [alarm] = store.alarms.list("cam-2")
        assert alarm["code"] == "intrusion" and alarm["captures_stored"] == 1
        notices = gateway_events(store, "cam-1", "rate_limited")
        assert not gateway_events(store, "cam-2", "rate_limited")
    # Every flood message was stored or refused and counted, and the quota held.
    assert flooded + refused == flood.sent and set(counts) == {"rate_limited"}
    assert flooded <= FLOOD_LIMITS.message_burst + FLOOD_LIMITS.messages_per_s * total_s
    assert 1 <= len(notices) <= 1 + total_s / 60 and sum("rejected rate_limited" in ln for ln in lines) == 0
    assert gw.metrics.rejected == {"rate_limited": refused}
    print(f"\nflood: cam-1 sent {flood.sent} captures in {total_s:.1f} s, {flooded} stored and {refused} refused; "
          f"cam-2's alarm and its 3 photos were stored {stored_s:.2f} s after it sent them, and receipted "
          f"after {delivered_s:.2f} s")


def alarm_stored(data, device: str) -> bool:
    """The device's alarm event and every capture it names are stored (as the console would read them)."""
    with Store.open(data) as store:
        alarms = store.alarms.list(device)
    return bool(alarms) and alarms[0]["code"] is not None and alarms[0]["captures_stored"] >= 1
