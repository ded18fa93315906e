"""The ESP32 HAL on the real MicroPython, with the board's hardware modules played by fakes: a
provisioned device reaches the locked-down broker over verified TLS with its own credentials,
and only its own subtree; camera, panel, smoke contact and clock do what the agent expects."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time

import pytest

from simulator.mpy import micropython_binary, micropython_env

from gateway.provisioning.brokerconf import GATEWAY_USER

from support.cli import vericam_ok
from support.secure_broker import SecureBroker, gateway, provision

# The board's modules, as small as the HAL needs them. PINS/FRAME/FREED let the probe look in.
FAKES = {
    "machine.py": '''
        PINS = {}
        class Pin:
            IN = 1
            PULL_UP = 2
            def __init__(self, n, mode=None, pull=None):
                self.n = n
                self.level = 1
                PINS[n] = self
            def value(self):
                return self.level
        class UART:
            def __init__(self, n, baudrate=9600, tx=None, rx=None):
                self.n = n
        class RTC:
            def datetime(self, t=None):
                return t
        def reset():
            raise SystemExit(9)
    ''',
    "network.py": '''
        STA_IF = 0
        class WLAN:
            def __init__(self, i): pass
            def active(self, on=None): return True
            def isconnected(self): return True
            def connect(self, ssid, password): pass
            def disconnect(self): pass
            def ifconfig(self): return ("127.0.0.1", "", "", "")
    ''',
    "camera.py": '''
        FRAME = b"\\xff\\xd8" + bytes(range(256)) * 12 + b"\\xff\\xd9"
        FREED = []
        class PixelFormat:
            JPEG = 4
        class FrameSize:
            QVGA = 5
            VGA = 8
        class Camera:
            def __init__(self, **kw):
                self.kw = kw
            def capture(self):
                return memoryview(FRAME)
            def free_buffer(self):
                FREED.append(1)
    ''',
}

PROBE = '''
import asyncio
import json
import sys

import camera
import machine
from vericam.hal_esp32 import Esp32Hal
from vericam.mqtt import MQTTClient

cfg = json.loads(open(sys.argv[1]).read())
cfg["broker"]["ca"] = sys.argv[2]
hal = Esp32Hal()
hal.cfg = cfg
hal._configure_tls()
out = {}


async def main():
    out["unix_unset"] = hal.unix_time()
    hal.set_clock_ms(1795300000123)
    out["unix"] = hal.unix_time()

    hal._start_camera()
    stream, length = await hal.open_frame("disarm", 0)
    piece, got = bytearray(100), bytearray()
    while True:
        n = stream.readinto(piece)
        if not n:
            break
        got += piece[:n]
    stream.close()
    out["frame_ok"] = bytes(got) == camera.FRAME and length == len(camera.FRAME)
    out["frame_freed"] = len(camera.FREED)
    out["camera_kw"] = camera and sorted(hal._cam.kw)

    hal._panel_line(b"garbage")
    hal._panel_line(b"[1, 2]")
    hal._panel_line(b'{"event": "disarmed", "slot": 2}')
    out["panel"] = await hal.next_panel_event()
    out["panel_left"] = len(hal._panel)

    hal._start_smoke()
    pin = machine.PINS[13]
    await asyncio.sleep_ms(100)
    pin.level = 0  # a 50 ms bounce: no alarm
    await asyncio.sleep_ms(50)
    pin.level = 1
    await asyncio.sleep_ms(200)
    out["smoke_after_bounce"] = len(hal._panel)
    pin.level = 0  # a real alarm: held low
    await asyncio.sleep_ms(400)
    out["smoke_events"] = [e["event"] for e in hal._panel]

    # The broker connection exactly as the agent builds it: no ssl key of its own, the HAL's
    # defaults give it the provisioned CA.
    broker = cfg["broker"]
    client = MQTTClient({"host": broker["host"], "port": int(broker["port"]), "client_id": cfg["device_id"],
                         "user": cfg["device_id"], "password": broker["password"]},
                        log=lambda level, msg: print("LOG", level, msg))
    sup = asyncio.create_task(client.run())
    await asyncio.wait_for_ms(client.up.wait(), 10000)
    out["tls"] = True
    await client.publish("vc/v1/%s/up/event" % cfg["device_id"], b"own subtree", 1, timeout_ms=5000)
    await client.publish("vc/v1/cam-other/up/event", b"forged for cam-other", 1, timeout_ms=5000)
    await client.publish("vc/v1/%s/up/event" % cfg["device_id"], b"own subtree again", 1, timeout_ms=5000)
    await client.disconnect()
    await sup
    print("RESULT", json.dumps(out))


asyncio.run(main())
'''


@pytest.fixture
def board(tmp_path):
    broker = SecureBroker(tmp_path)
    data = tmp_path / "gw"
    vericam_ok("gateway", "init", "--data", data)
    broker.start()
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for name, text in FAKES.items():
        (fakes / name).write_text(textwrap.dedent(text))
    (fakes / "probe.py").write_text(PROBE)
    yield broker, data, fakes
    broker.stop()


def test_a_provisioned_esp32_hal_reaches_its_own_subtree_over_verified_tls(board, tmp_path):
    broker, data, fakes = board
    config = provision(broker, data, "cam-1", tmp_path / "dev")
    gw = gateway(broker)
    try:
        run = subprocess.run([micropython_binary(), str(fakes / "probe.py"), str(tmp_path / "dev" / "config.json"),
                              str(tmp_path / "dev" / "ca.der")], env=micropython_env([str(fakes)]),
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        line = next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT "))
        out = json.loads(line[len("RESULT "):])
        seen = gw.wait_for(b"own subtree again")
    finally:
        gw.close()
    assert seen == [("vc/v1/cam-1/up/event", b"own subtree"), ("vc/v1/cam-1/up/event", b"own subtree again")]
    assert out["tls"] is True
    assert out["unix_unset"] == 0 and out["unix"] == 1795300000
    assert out["frame_ok"] and out["frame_freed"] == 1
    assert out["camera_kw"] == ["frame_size", "jpeg_quality", "pixel_format"]
    assert out["panel"] == {"event": "disarmed", "slot": 2, "mode": None} and out["panel_left"] == 0
    assert out["smoke_after_bounce"] == 0, "a bounce on the smoke contact raised an alarm"
    assert out["smoke_events"] == ["smoke"]
    assert config["broker"]["host"] == "localhost"


def test_the_esp32_hal_refuses_a_broker_its_ca_did_not_sign(board, tmp_path):
    broker, data, fakes = board
    provision(broker, data, "cam-1", tmp_path / "dev")
    from gateway.provisioning.brokerconf import make_tls
    from gateway.cli.provision import ca_der

    (tmp_path / "rogue").mkdir()
    make_tls(tmp_path / "rogue", ["localhost"])
    (tmp_path / "rogue.der").write_bytes(ca_der(tmp_path / "rogue"))
    probe = (fakes / "probe.py").read_text().replace("await asyncio.wait_for_ms(client.up.wait(), 10000)",
                                                     "await asyncio.wait_for_ms(client.up.wait(), 3000)")
    (fakes / "probe.py").write_text(probe)
    run = subprocess.run([micropython_binary(), str(fakes / "probe.py"), str(tmp_path / "dev" / "config.json"),
                          str(tmp_path / "rogue.der")], env=micropython_env([str(fakes)]),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "RESULT" not in run.stdout
    assert "not correctly signed by the trusted CA" in run.stdout, run.stdout[-1000:]


def test_the_real_agent_provisioned_for_the_locked_down_broker_delivers_an_alarm(board, tmp_path):
    """The agent's own topics (retained status and will, events, capture chunks, its down/#
    subscription) all fit the ACL, and its provisioned password is what gets it in. The
    simulator's HAL has no TLS, so this device uses the broker's password-only loopback
    listener; the TLS path is the test above."""
    from gateway.ingest.service import Gateway
    from gateway.storage.store import Store
    from simulator.device import SimulatedDevice
    from simulator.timeline import Timeline

    broker, data, _fakes = board
    config = provision(broker, data, "cam-1", tmp_path / "dev")
    config["broker"] = {"host": "127.0.0.1", "port": broker.local_port, "password": config["broker"]["password"]}
    gw = Gateway(data, "127.0.0.1", broker.local_port, username=GATEWAY_USER, password=broker.gateway_password,
                 log=lambda line: None).start()
    dev = SimulatedDevice("cam-1", tmp_path / "run", config, Timeline())
    try:
        dev.boot()
        dev.wait_trace("online", timeout=20)
        dev.panel("smoke")  # captures by default, and is an alarm: the photos go to the ARC
        dev.wait_trace("receipt", timeout=60)
        with Store.open(data) as store:
            assert len(store.images.list("cam-1")) >= 1
            assert any(e["kind"] == "alarm" for e in store.events.list("cam-1"))
            assert store.rejections.counts() == {}
    finally:
        dev.close()
        gw.stop()
