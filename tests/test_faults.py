"""Faults played for real: link cuts, broker restart, power cut, gateway down, during an alarm.

Each scenario runs the real firmware on MicroPython, a real Mosquitto and the gateway
process, with the simulator's network proxy between device and broker. Whatever the
fault, every alarm photo must end up at the ARC exactly once, nothing may be left on the
device's flash, and the ARC must see the device online again at the end.
"""

import json
import socket
import time

import paho.mqtt.client as paho
import pytest

from simulator.netproxy import NetProxy
from simulator.scenario import list_scenarios, run

from support.micropython import MicroPythonScript

FAULTS = ["outage-during-alarm", "broker-restart-mid-upload", "power-cut-mid-upload", "gateway-down"]


def test_the_fault_scenarios_are_listed():
    assert set(FAULTS) <= {s["name"] for s in list_scenarios()}


@pytest.mark.parametrize("name", FAULTS)
def test_every_alarm_photo_reaches_the_arc_exactly_once(name, scenarios):
    result = scenarios.play(name).result
    assert result["passed"], result["failures"]
    assert result["images_captured"] == 3
    assert result["images_at_arc"] == result["images_captured"]
    assert result["duplicates_stored"] == 0
    assert result["device_captures_left"] == 0
    assert result["device_online"] is True, "the ARC still believes the device is offline"
    assert result["image_bytes_sent_without_alarm"] == 0


def test_the_outage_really_cut_the_link_during_the_upload(scenarios):
    # The scenario is only worth something if the cut hit the upload: the capture must
    # have needed a second connection to get through.
    result = scenarios.play("outage-during-alarm").result
    assert result["passed"], result["failures"]
    assert result["link"]["connections"] >= 2


def _subscriber(port, topic):
    got = []
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"arc-{time.monotonic_ns()}")
    sub.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    sub.connect("127.0.0.1", port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    time.sleep(0.2)
    return sub, got


def test_client_notices_a_silent_link_reconnects_and_sends_no_duplicates_into_the_silence(broker):
    """A pulled cable gives no error. The client must find out by its own deadlines, not
    keep pushing DUPs into the dead connection, and deliver every message after the cut."""
    sub, got = _subscriber(broker.port, "t/silent")
    with NetProxy("127.0.0.1", broker.port) as proxy:
        cfg = json.dumps({"host": "127.0.0.1", "port": proxy.port, "client_id": "cam-silent",
                          "ack_timeout_ms": 500, "connect_timeout_ms": 500, "backoff_min_ms": 50,
                          "backoff_max_ms": 400, "keepalive_s": 60})
        opts = json.dumps({"topic": "t/silent", "count": 40, "size": 2000, "workers": 2, "pace_ms": 50})
        dev = MicroPythonScript("mqtt_pub.py", cfg, opts)
        try:
            dev.expect("UP")
            dev.expect("ACK 5")
            proxy.cut()
            dead = dev.expect("LOG 2 connection dead", timeout=10)
            assert "PINGRESP" in dead
            time.sleep(1.5)
            proxy.restore()
            done = dev.expect("DONE", timeout=20)
            _, _, retransmits, connects = done.split()
            assert int(connects) >= 2
            assert retransmits == "0", "DUPs were pushed into a silent connection"
        finally:
            dev.proc.kill()
            dev.proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len({p[:8] for p in got}) < 40:
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    assert {p[:8] for p in got} == {b"%08d" % i for i in range(40)}


LINK_RESET = """
name = "link-reset"
description = "The router resets the connection: the broker publishes the device's will; the device must come back online."
[device]
via_proxy = true
[[step]]
wait = 0.5
[[step]]
do = "cut_link"
mode = "reset"
for_s = 2
[[step]]
wait = 4.0                 # reconnect (backoff <= 5 s) and the status through the broker
[expect]
device_online = true
"""


def test_after_a_reset_link_the_arc_sees_the_device_online_again(tmp_path):
    """The reset makes the broker publish the will (offline). Only a fresh online status,
    with a counter above that will's, puts the device back online at the ARC (PROTOCOL §7)."""
    path = tmp_path / "link-reset.toml"
    path.write_text(LINK_RESET)
    result = run(path, tmp_path / "run")
    assert result["link"]["resets"] >= 1
    assert result["passed"], result["failures"]


def test_an_alarm_raised_during_a_slow_upload_overtakes_the_photos(tmp_path):
    """Alarms first: a smoke alarm raised while the burglary photos crawl up a 128 kbit/s
    link reaches the broker before the last photo chunk, not after it."""
    from simulator.stack import Stack

    triggers = {"intrusion": {"enabled": True, "frames": 3, "interval_ms": 0},
                "disarm": {"enabled": False}, "smoke": {"enabled": False}}
    with Stack(tmp_path / "run") as stack:
        dev = stack.add_device("panel-1", triggers=triggers, via_proxy={"bandwidth_bps": 128_000, "latency_ms": 50},
                               panel_kwargs={"exit_delay_s": 0.05, "entry_delay_s": 0.05})
        dev.boot()
        dev.wait_trace("online", timeout=20)
        panel = stack.panels["panel-1"]
        panel.arm("2580")
        time.sleep(0.3)
        panel.open_zone("pir-1")
        dev.wait_trace("send", timeout=20)
        time.sleep(0.5)
        panel.smoke()
        dev.wait_trace("receipt", timeout=60)
        order = [(t["what"], t.get("code")) for t in dev.traces if t.get("what") in ("event_sent", "capture_sent")]
        rows = stack.wait_images("panel-1", 3, timeout=10)
    assert ("event_sent", "smoke") in order, order
    assert order.index(("event_sent", "smoke")) < order.index(("capture_sent", None)), order
    assert len(rows) == 3


def test_heartbeats_reach_the_broker_at_the_configured_interval(tmp_path):
    """PROTOCOL §11: a heartbeat every `heartbeat_s`, QoS 0, on up/heartbeat."""
    from simulator.mpy import FIRMWARE_DIR
    from simulator.stack import Stack

    assert "up/heartbeat" in (FIRMWARE_DIR / "vericam" / "envelope.py").read_text()
    with Stack(tmp_path / "run") as stack:
        sub, got = _subscriber(stack.broker.port, "vc/v1/+/up/heartbeat")
        try:
            dev = stack.add_device("panel-1", extra_config={"heartbeat_s": 1})
            dev.boot()
            dev.wait_trace("online", timeout=20)
            dev.wait_trace("heartbeat", 3, timeout=10)
            time.sleep(0.3)
            with stack.store() as s:
                # The gateway accepts them (no rejection) and has heard the device just now.
                assert s.rejections.counts() == {}
                [row] = s.devices.list()
                assert time.time() * 1000 - row["last_seen_ms"] < 3000
        finally:
            sub.disconnect()
            sub.loop_stop()
    assert len(got) >= 3
    assert all(p[:2] == b"VC" and p[3] == 0x04 for p in got)


GATEWAY_SILENT = """
name = "gateway-silent"
description = "The gateway is down for 12 s with a receipt timeout of 1.5 s: the device resends, but backs off."
[device]
triggers = { intrusion = { enabled = true, frames = 3, interval_ms = 0 } }
config = { receipt_timeout_ms = 1500 }
[[step]]
do = "stop_gateway"
[[step]]
do = "arm"
pin = "2580"
[[step]]
wait = 1.2
[[step]]
do = "open"
zone = "pir-1"
[[step]]
do = "wait_for"
what = "capture_sent"
timeout = 20
[[step]]
wait = 12
[[step]]
do = "start_gateway"
[[step]]
do = "wait_for"
what = "receipt"
timeout = 45
[expect]
images_at_arc = 3
duplicates_stored = 0
device_captures_left = 0
"""


def test_a_silent_gateway_gets_the_capture_again_with_backoff_not_a_flood(tmp_path):
    """Each receipt timeout doubles the next: 1.5 + 3 + 6 s fit in 12 s, so at most 4
    resends (a fixed 1.5 s timer would make about 8 copies of the capture wait at the broker)."""
    path = tmp_path / "gateway-silent.toml"
    path.write_text(GATEWAY_SILENT)
    result = run(path, tmp_path / "run")
    assert result["passed"], result["failures"]
    assert 1 <= result["receipt_timeouts"] <= 4, result["receipt_timeouts"]


LINK_STEPS = """
name = "link-steps"
description = "The link is shaped, cut and restored by separate steps while an alarm is sent."
[device]
triggers = { intrusion = { enabled = true, frames = 2, interval_ms = 0 } }
[[step]]
do = "shape"
latency_ms = 20
bandwidth_bps = 512000
[[step]]
do = "arm"
pin = "2580"
[[step]]
wait = 1.2
[[step]]
do = "cut_link"
[[step]]
do = "open"
zone = "pir-1"
[[step]]
wait = 3
[[step]]
do = "restore_link"
[[step]]
do = "wait_for"
what = "receipt"
timeout = 40
[expect]
images_captured = 2
images_at_arc = 2
duplicates_stored = 0
device_captures_left = 0
alarms = ["intrusion"]
"""


def test_link_steps_shape_cut_and_restore_in_a_scenario(tmp_path):
    path = tmp_path / "link-steps.toml"
    path.write_text(LINK_STEPS)
    result = run(path, tmp_path / "run")
    assert result["passed"], result["failures"]
    assert result["link"]["bytes_up"] > 0


def test_a_link_step_without_a_proxy_is_refused(tmp_path):
    from simulator.scenario import ScenarioError, _link_step

    class Dev:
        proxy = None

    with pytest.raises(ScenarioError, match="via_proxy"):
        _link_step(None, Dev(), "cut_link", {})
