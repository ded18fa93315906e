"""The wire as a watcher at the broker sees it: the observer account and `vericam sim run --wire-log`.

The simulator's Mosquitto has a second loopback listener for one account that may read every
topic and write none. `WireObserver` logs in with it, so the wire log is counted at the broker,
independently of what the device says about itself.
"""

import json
import time

import paho.mqtt.client as mqtt
import pytest

from simulator.broker import OBSERVER_USER, Broker, WireObserver

from support.cli import vericam

WIRE_KEYS = {"t", "topic", "bytes", "qos", "retain"}


def publisher(broker: Broker, client_id: str, user: str | None = None, password: str | None = None,
              port: int | None = None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if user:
        c.username_pw_set(user, password)
    connected = []
    c.on_connect = lambda _c, _u, _f, rc, _p: connected.append(rc)
    c.connect(broker.host, port or broker.port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not connected and time.monotonic() < deadline:
        time.sleep(0.02)
    return c, connected


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_the_observer_sees_every_message_with_its_qos_and_retain_flag_and_writes_nothing(tmp_path):
    with Broker(tmp_path / "broker") as broker:
        wire = WireObserver(broker)
        device, _ = publisher(broker, "panel-1")
        try:
            device.publish("vc/v1/panel-1/up/status", b"s" * 90, qos=1, retain=True).wait_for_publish(5)
            device.publish("vc/v1/panel-1/up/heartbeat", b"h" * 92, qos=0).wait_for_publish(5)
            device.publish("vc/v1/panel-1/up/capture", b"c" * 2100, qos=1).wait_for_publish(5)
            assert wait_for(lambda: len(wire.snapshot()) == 3)
            assert [(r["topic"], r["bytes"], r["qos"], r["retain"]) for r in wire.snapshot()] == [
                ("vc/v1/panel-1/up/status", 90, 1, True),
                ("vc/v1/panel-1/up/heartbeat", 92, 0, False),
                ("vc/v1/panel-1/up/capture", 2100, 1, False),
            ]
            # Read-only: what the observer publishes reaches nobody, not even itself.
            got = []
            device.on_message = lambda _c, _u, m: got.append(m.topic)
            device.subscribe("vc/v1/panel-1/down/#", qos=1)
            time.sleep(0.2)
            wire.client.publish("vc/v1/panel-1/down/receipt", b"forged", qos=1)
            time.sleep(0.5)
            assert got == [] and len(wire.snapshot()) == 3
            out = tmp_path / "wire.jsonl"
            assert wire.write_jsonl(out) == 3
            lines = [json.loads(line) for line in out.read_text().splitlines()]
            assert all(set(line) == WIRE_KEYS for line in lines) and lines == wire.snapshot()
        finally:
            device.loop_stop()
            wire.close()


def test_the_observer_listener_admits_only_the_observer_account(tmp_path):
    with Broker(tmp_path / "broker") as broker:
        for user, password in ((None, None), (OBSERVER_USER, "wrong"), ("panel-1", None)):
            c, connected = publisher(broker, f"x-{user}", user, password, port=broker.observer_port)
            c.loop_stop()
            assert connected and connected[0].is_failure, (user, connected)


@pytest.mark.timeout(180)
def test_sim_run_writes_the_wire_log_and_the_flash_dump_figures(tmp_path):
    log = tmp_path / "wire.jsonl"
    proc = vericam("sim", "run", "disarm-no-alarm", "--json", "--wire-log", log, timeout=170)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == result["wire_messages"] > 0
    assert sum(line["bytes"] for line in lines) == result["wire_bytes"]
    assert all(set(line) == WIRE_KEYS for line in lines)
    assert [line["t"] for line in lines] == sorted(line["t"] for line in lines)
    topics = {line["topic"] for line in lines}
    # The disarm event, heartbeats (QoS 0) and the retained status; on the capture topic only
    # the disarm's cover (issue 13), its bytes told apart by the capture ids the broker sees.
    assert {"vc/v1/panel-1/up/event", "vc/v1/panel-1/up/heartbeat", "vc/v1/panel-1/up/status"} <= topics
    on_wire = sum(line["bytes"] for line in lines if line["topic"].endswith("/up/capture"))
    assert on_wire == result["capture_bytes_at_broker"] == result["cover_bytes_at_broker"] > 0
    assert result["image_bytes_sent_without_alarm"] == 0 and result["images_at_arc"] == 0
    assert {line["qos"] for line in lines if line["topic"].endswith("/heartbeat")} == {0}
    assert all(line["retain"] for line in lines if line["topic"].endswith("/status"))
    # The raw-flash figures are reported (their value is what issue 13 is about).
    for key in ("sealed_headers_on_flash", "capture_keys_recoverable_with_arc_key",
                "captures_recoverable_with_arc_key"):
        assert isinstance(result[key], int) and result[key] >= 0
    assert result["captures_recoverable_with_arc_key"] <= result["capture_keys_recoverable_with_arc_key"] \
        <= result["sealed_headers_on_flash"]
