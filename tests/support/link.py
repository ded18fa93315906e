"""A fake device's MQTT side: QoS-1 publishes to a broker, and its downlink (receipts, time) collected."""

from __future__ import annotations

import queue
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.protocol import envelope as env
from simulator.fake_device import FakeDevice


class DeviceLink:
    """`device` connected to `broker` as an MQTT 3.1.1 client, subscribed to its own downlink.

    `client_id` defaults to `dev-<device id>`; an attacker needs one of its own, so that it
    does not push the real device off the broker."""

    def __init__(self, broker, device: FakeDevice, client_id: str | None = None, max_inflight: int | None = None):
        self.device = device
        self.down: queue.Queue = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"dev-{device.device_id}",
                                  protocol=mqtt.MQTTv311)
        if max_inflight:
            self.client.max_inflight_messages_set(max_inflight)
        subscribed = threading.Event()
        self.client.on_message = lambda c, u, m: self.down.put((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"vc/v1/{device.device_id}/down/#", qos=1)
        self.client.loop_start()
        if not subscribed.wait(5):
            self.close()
            raise AssertionError(f"{device.device_id}: the broker did not acknowledge the downlink subscription")

    def send(self, messages) -> None:
        """Publish (topic, payload) messages at QoS 1 and wait for the broker's PUBACKs."""
        infos = [self.client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(5)

    def next_downlink(self, kind: str = "receipt", timeout: float = 10.0):
        """The next verified downlink of `kind`: a parsed receipt tuple, or the time in ms."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                topic, payload = self.down.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            e = self.device.open_downlink(topic, payload)
            if topic.endswith("/" + kind):
                return env.parse_receipt_body(e.body) if kind == "receipt" else env.parse_time_body(e.body)
        raise AssertionError(f"no {kind} from the gateway within {timeout} s")

    def close(self) -> None:
        self.client.disconnect()  # first: the network thread then ends at once, not after its 1 s select
        self.client.loop_stop()
