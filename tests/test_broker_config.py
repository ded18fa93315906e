"""The project's Mosquitto configuration: persistence that survives a restart, and its own log."""

import threading
import time

import paho.mqtt.client as mqtt


def _client(broker, cid, clean):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean)
    c.connect(broker.host, broker.port)
    return c


def test_a_message_queued_for_an_offline_durable_subscriber_survives_a_broker_restart(broker):
    sub = _client(broker, "durable-sub", clean=False)
    sub.loop_start()
    sub.subscribe("vc/v1/dev/down/receipt", qos=1)
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()

    pub = _client(broker, "pub", clean=True)
    pub.loop_start()
    pub.publish("vc/v1/dev/down/receipt", b"receipt-1", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    time.sleep(1.5)  # autosave_interval is 1 s
    broker.restart()

    got = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="durable-sub", clean_session=False)
    sub.on_message = lambda c, u, m: got.set() if m.payload == b"receipt-1" else None
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    try:
        assert got.wait(5), "the queued message was lost in the restart: " + broker.log()[-500:]
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert "New connection" in broker.log()
