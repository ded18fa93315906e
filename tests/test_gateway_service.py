"""The gateway as a service against a real Mosquitto: photos arrive, are stored, and are receipted."""

import hashlib
import json
import os
import signal
import stat
import subprocess
import time

import pytest

from gateway.protocol import envelope as env
from gateway.provisioning.devices import add_device, init_arc
from gateway.ingest.service import Gateway
from gateway.storage.store import Store

from simulator.fake_device import FakeDevice, fake_jpeg
from support.cli import VERICAM, vericam
from support.link import DeviceLink

JPEGS = [fake_jpeg(9006), fake_jpeg(7006)]


class Log(list):
    def __call__(self, line):
        self.append(line)

    @property
    def text(self):
        return "\n".join(self)


@pytest.fixture
def site(tmp_path, broker):
    data = tmp_path / "gw"
    init_arc(data)
    config = add_device(data, "cam-1", "site-a")
    log = Log()
    gw = Gateway(data, broker.host, broker.port, log=log).start()
    link = DeviceLink(broker, FakeDevice(config, chunk_size=4096))
    yield gw, link, log, data
    link.close()
    gw.stop()


def test_an_alarm_capture_arrives_in_chunks_is_stored_and_receipted(site):
    gw, link, log, data = site
    dev = link.device
    link.send([dev.status("online")])
    assert abs(link.next_downlink("time") - time.time() * 1000) < 5000
    cid, sealed = dev.seal(JPEGS)
    t0 = time.monotonic()
    link.send(dev.chunk_messages(cid, sealed, alarm_id=os.urandom(8)))
    receipt = link.next_downlink()
    elapsed_ms = (time.monotonic() - t0) * 1000
    assert receipt == (cid, env.RECEIPT_STORED, 2, hashlib.sha256(sealed).digest())
    assert gw.wait_idle()
    with Store.open(data) as store:  # a reader of its own, as the console would be
        images = store.images.list("cam-1")
        assert [store.images.read(i["id"]) for i in images] == JPEGS
        [capture] = store.captures.list()
        assert capture["stored_at_ms"] is not None
    assert any(line.startswith(f"stored capture {cid.hex()[:8]} from cam-1: 2 frames") for line in log)
    print(f"\n{len(sealed)} bytes in {len(dev.chunk_messages(cid, sealed, b'x' * 8))} chunks: "
          f"publish to receipt {elapsed_ms:.0f} ms; gateway stats {gw.stats}")


def test_a_capture_sent_again_is_stored_once_and_receipted_again(site):
    gw, link, log, data = site
    dev = link.device
    cid, sealed = dev.seal(JPEGS)
    aid = os.urandom(8)
    link.send(dev.chunk_messages(cid, sealed, aid))
    first = link.next_downlink()
    link.send(dev.chunk_messages(cid, sealed, aid))  # new counters: the device resends after a lost receipt
    assert link.next_downlink() == first
    with Store.open(data) as store:
        assert len(store.images.list()) == 2 and len(store.captures.list()) == 1


def test_attacks_and_garbage_are_counted_and_a_good_capture_still_goes_through(site, broker):
    gw, link, log, data = site
    dev = link.device
    cid, sealed = dev.seal(JPEGS)
    msgs = dev.chunk_messages(cid, sealed, os.urandom(8))
    tampered = bytearray(msgs[0][1])
    tampered[-40] ^= 1
    forger = FakeDevice({"device_id": "cam-1", "device_key": os.urandom(32).hex(),
                            "arc_n": format(dev.arc_public.public_numbers().n, "x"), "arc_e": 65537,
                            "arc_key_id": dev.arc_key_id.hex()})
    link.send([(msgs[0][0], bytes(tampered)),
               forger.event({"kind": "disarmed", "slot": 1, "t": int(time.time())}),
               ("vc/v1/cam-2/up/capture", msgs[0][1]),
               ("vc/v1/cam-1/up/event", b"\x00garbage" * 20),
               msgs[0], msgs[0]])  # the second copy is a replay
    link.send(msgs[1:])
    assert link.next_downlink()[1] == env.RECEIPT_STORED
    assert gw.wait_idle()
    with Store.open(data) as store:
        assert store.rejections.counts() == {"bad_mac": 2, "topic_mismatch": 1, "malformed": 1, "replay": 1}
        assert len(store.images.list()) == 2
    for _, payload in msgs[:1]:
        assert payload[40:60].hex() not in log.text and str(payload[40:60])[2:-1] not in log.text
    assert "garbage" not in log.text
    assert all("internal_error" not in line for line in log)


def test_photos_sent_while_the_gateway_is_down_are_stored_when_it_returns(tmp_path, broker):
    data = tmp_path / "gw"
    init_arc(data)
    config = add_device(data, "cam-1", "site-a")
    Gateway(data, broker.host, broker.port, log=Log()).start().stop()  # creates its persistent session
    link = DeviceLink(broker, FakeDevice(config))
    try:
        cid, sealed = link.device.seal(JPEGS)
        link.send(link.device.chunk_messages(cid, sealed, os.urandom(8)))  # nobody consumes yet
        with Gateway(data, broker.host, broker.port, log=Log()):
            assert link.next_downlink()[:3] == (cid, env.RECEIPT_STORED, 2)
    finally:
        link.close()


def test_cli_init_add_device_run_and_images(tmp_path, broker):
    data, out = tmp_path / "gw", tmp_path / "cam-1.json"
    run = lambda *args: vericam("gateway", *args)
    assert run("init", "--data", str(data)).returncode == 0
    added = run("add-device", "cam-1", "--site", "site-a", "--data", str(data), "--out", str(out))
    assert added.returncode == 0, added.stderr
    config = json.loads(out.read_text())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert config["device_key"] not in added.stdout + added.stderr
    assert run("add-device", "Bad_Id", "--site", "x", "--data", str(data)).returncode == 2
    proc = subprocess.Popen([VERICAM, "gateway", "run", "--data", str(data), "--broker",
                             f"{broker.host}:{broker.port}"], stderr=subprocess.PIPE, text=True)
    head = []
    while not any("gateway running" in line for line in head):  # subscribed: devices may send
        line = proc.stderr.readline()
        assert line, "gateway exited early:\n" + "".join(head)
        head.append(line)
    link = DeviceLink(broker, FakeDevice(config))
    try:
        cid, sealed = link.device.seal(JPEGS)
        link.send(link.device.chunk_messages(cid, sealed, os.urandom(8)))
        assert link.next_downlink(timeout=20)[1] == env.RECEIPT_STORED
    finally:
        link.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        err = "".join(head) + err
    assert proc.returncode == 0, err
    assert f"stored capture {cid.hex()[:8]} from cam-1" in err and "stopped after" in err
    assert config["device_key"] not in err
    # no accounts on this gateway: the reader names themself and asserts a role (audited as such)
    listed = json.loads(run("images", "--data", str(data), "--json", "--by", "ops", "--role", "supervisor").stdout)
    assert [(i["device"], i["frame_index"], i["size"]) for i in listed] == [("cam-1", 0, len(JPEGS[0])),
                                                                            ("cam-1", 1, len(JPEGS[1]))]


def test_a_cover_and_duress_photos_are_receipted_no_sooner_than_the_floor_and_an_intrusion_at_once(site):
    # Storing photos takes longer than dropping a cover; the broker sees both the last chunk
    # and the receipt, so what a disarm may send is receipted at one floor (PROTOCOL 4.7).
    from gateway.ingest.service import DISARM_RECEIPT_FLOOR_S
    from gateway.protocol import capture as cap

    gw, link, log, data = site
    dev = link.device
    assert gw.disarm_receipt_floor_s == DISARM_RECEIPT_FLOOR_S == 1.0
    cover_id, release, sealed = dev.seal_parts([os.urandom(9000)], trigger=9,  # the cover code (PROTOCOL 4.2)
                                               kind=cap.KIND_COVER)
    deliveries = [
        ("cover", cover_id, cap.delivery(release, sealed, dev.bucket), True),
        ("duress", *dev.seal(JPEGS, trigger=cap.TRIGGER_CODES["duress"]), True),
        ("intrusion", *dev.seal(JPEGS), False),
    ]
    for what, cid, delivery, held in deliveries:
        sent = time.monotonic()
        link.send(dev.chunk_messages(cid, delivery, alarm_id=os.urandom(8)))
        receipt = link.next_downlink(timeout=30)
        waited = time.monotonic() - sent
        assert receipt[:2] == (cid, env.RECEIPT_STORED), what
        if held:  # a lower bound: load only makes it later
            assert waited >= DISARM_RECEIPT_FLOOR_S, f"the {what} receipt came {waited:.3f} s after its chunks"
    assert len(gw.held) == 0


def test_held_receipts_go_once_when_due_and_all_at_once_when_the_gateway_stops():
    from gateway.ingest.service import HeldReceipts

    sent = []
    held = HeldReceipts(lambda topic, payload: sent.append((topic, payload)))
    held.hold("now", b"0", 0.0)
    assert sent == [("now", b"0")]
    held.hold("soon", b"1", 0.05)
    held.hold("later", b"2", 3600.0)
    deadline = time.monotonic() + 30
    while ("soon", b"1") not in sent:
        assert time.monotonic() < deadline, "a due receipt was never published"
        time.sleep(0.01)
    assert len(held) == 1
    held.flush()
    assert sent == [("now", b"0"), ("soon", b"1"), ("later", b"2")] and len(held) == 0
    held.flush()
    assert len(sent) == 3


def test_in_scaled_time_the_floor_stays_far_below_the_devices_receipt_timeout(tmp_path):
    from gateway.ingest.clock import WorldClock
    from gateway.ingest.service import DISARM_RECEIPT_FLOOR_MAX_WORLD_S

    for scale in (1, 60, 600):
        gw = Gateway(tmp_path / f"gw{scale}", clock=WorldClock(scale))
        assert gw.disarm_receipt_floor_s * scale <= DISARM_RECEIPT_FLOOR_MAX_WORLD_S < 30
    assert Gateway(tmp_path / "gw1", clock=WorldClock(1)).disarm_receipt_floor_s == 1.0
