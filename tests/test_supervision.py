"""Heartbeats and supervision (PROTOCOL section 11): a silent device raises a technical alarm, and clears it when heard."""

import json

from gateway.ingest.pipeline import Ingest, Message
from gateway.protocol import envelope as env
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from simulator.fake_device import FakeDevice


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def technical(store, device):
    return [e["code"] for e in store.events.list(device) if e.get("kind") == "technical"]


def test_a_silent_device_raises_supervision_lost_once_and_a_heartbeat_restores_it(tmp_path):
    data = tmp_path / "gw"
    init_arc(data)
    dev = FakeDevice(add_device(data, "cam-1", "site"))
    add_device(data, "cam-never", "site")  # provisioned, never installed: not supervised
    clock = Clock(1_800_000_000.0)
    with Store.open(data) as store:
        ingest = Ingest(store, log=lambda line: None, clock=clock)
        ingest.supervision_window_ms = 180_000
        beat = dev.envelope(env.T_HEARTBEAT, json.dumps({"interval_s": 60, "pending": 0}).encode(),
                            time_s=int(clock.t))
        assert beat[0] == "vc/v1/cam-1/up/heartbeat"
        result = ingest.process_batch([Message(*beat)])
        assert result.rejected == {}
        assert store.devices.list()[0]["last_seen_ms"] == int(clock.t * 1000)

        clock.t += 170  # inside the window: nothing
        assert ingest.supervise() == []
        clock.t += 20   # 190 s of silence
        assert ingest.supervise() == [("cam-1", "supervision_lost")]
        assert ingest.supervise() == []  # raised once, not on every check
        assert technical(store, "cam-1") == ["supervision_lost"]
        assert technical(store, "cam-never") == []

        beat = dev.envelope(env.T_HEARTBEAT, b'{"interval_s": 60, "pending": 0}', time_s=int(clock.t))
        ingest.process_batch([Message(*beat)])
        assert ingest.supervise() == [("cam-1", "supervision_restored")]
        assert technical(store, "cam-1") == ["supervision_lost", "supervision_restored"]


def test_a_heartbeat_on_another_topic_or_forged_is_refused(tmp_path):
    data = tmp_path / "gw"
    init_arc(data)
    dev = FakeDevice(add_device(data, "cam-1", "site"))
    with Store.open(data) as store:
        ingest = Ingest(store, log=lambda line: None)
        topic, payload = dev.envelope(env.T_HEARTBEAT, b"{}")
        moved = ingest.process_batch([Message("vc/v1/cam-1/up/event", payload)])
        forged = ingest.process_batch([Message(topic, payload[:-1] + bytes([payload[-1] ^ 1]))])
        assert moved.rejected == {"topic_mismatch": 1} and forged.rejected == {"bad_mac": 1}
