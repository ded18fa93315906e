"""Provisioning: a device gets its key, broker account and flash config in one step, and a revoked
or rotated-away device is refused by both the broker and the gateway."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from littlefs import LittleFS

from gateway.provisioning.brokerconf import GATEWAY_USER
from gateway.ingest.pipeline import Ingest, Message
from gateway.cli.provision import ca_der
from gateway.ingest.service import Gateway
from gateway.storage.store import Store
from simulator.fake_device import FakeDevice
from simulator.mpy import micropython_binary, micropython_env

from support.cli import vericam, vericam_ok
from support.secure_broker import Client, SecureBroker, provision


@pytest.fixture
def ground(tmp_path):
    """A gateway data directory whose broker configuration runs in a real Mosquitto."""
    broker = SecureBroker(tmp_path)  # writes tmp_path/broker with broker-config's code
    data = tmp_path / "gw"
    vericam_ok("gateway", "init", "--data", data)
    broker.start()
    yield broker, data
    broker.stop()


def test_the_flash_image_is_littlefs_that_micropython_mounts_and_holds_the_config(ground, tmp_path):
    broker, data = ground
    image = tmp_path / "cam-1.img"
    vericam_ok("provision", "cam-1", "--site", "Storgatan 1", "--data", data, "--broker-dir", broker.dir,
            "--flash-image", image)
    assert stat.S_IMODE(image.stat().st_mode) == 0o600
    assert image.stat().st_size == 512 * 4096

    fs = LittleFS(block_size=4096, block_count=512, mount=False)
    fs.context.buffer = bytearray(image.read_bytes())
    fs.mount()
    with fs.open("config.json") as f:
        config = json.loads(f.read())
    with fs.open("ca.der", "rb") as f:
        assert f.read() == ca_der(broker.dir)
    assert config["device_id"] == "cam-1" and len(bytes.fromhex(config["device_key"])) == 32
    assert config["broker"]["port"] == broker.port and config["broker"]["tls"] is True

    # The real MicroPython mounts the image the way a board mounts its vfs partition, and the
    # agent's own config loader accepts what it finds.
    script = (
        "from vericam.hal_sim import mount_flash\n"
        f"mount_flash({str(image)!r}, 4096, 512)\n"
        "from vericam.agent import load_config\n"
        "import os\n"
        "cfg = load_config('/flash/config.json')\n"
        "print(cfg['device_id'], cfg['broker']['port'], sorted(os.listdir('/flash')))\n"
    )
    out = subprocess.run([micropython_binary(), "-c", script], env=micropython_env(), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(None, 2)[:2] == ["cam-1", str(broker.port)]
    assert "'ca.der', 'config.json'" in out.stdout


def test_the_config_files_for_mpremote_are_private(ground, tmp_path):
    broker, data = ground
    config = provision(broker, data, "cam-1", tmp_path / "dev")
    assert stat.S_IMODE((tmp_path / "dev" / "config.json").stat().st_mode) == 0o600
    ca = x509.load_der_x509_certificate((tmp_path / "dev" / "ca.der").read_bytes())
    assert ca == x509.load_pem_x509_certificate((broker.dir / "ca.pem").read_bytes())
    with Store.open(data) as store:
        assert store.devices.keys_for("cam-1") is not None
        assert [d["site"] for d in store.devices.list() if d["id"] == "cam-1"] == ["Storgatan 1"]
    assert config["site"] == "Storgatan 1"


def _send(broker, config, message) -> Client:
    dev = Client(broker, config["device_id"], config["broker"]["password"], client_id=config["device_id"])
    assert dev.connect(), broker.log()[-300:]
    dev.publish(*message)
    return dev


def _wait_for_events(data, device, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Store.open(data) as store:
            events = store.events.list(device)
        if len(events) >= n:
            return events
        time.sleep(0.05)
    raise AssertionError(f"the gateway stored {len(events)} events of {device}, expected {n}")


@pytest.fixture
def running(ground):
    broker, data = ground
    gw = Gateway(data, "127.0.0.1", broker.local_port, username=GATEWAY_USER,
                 password=broker.gateway_password, log=lambda line: None).start()
    yield broker, data
    gw.stop()


def test_a_revoked_device_is_refused_by_the_broker_and_by_the_gateway(running, tmp_path):
    broker, data = running
    config = provision(broker, data, "cam-1", tmp_path / "dev")
    device = FakeDevice(config)
    link = _send(broker, config, device.event({"kind": "armed", "mode": "away", "slot": 2, "t": int(time.time())}))
    assert _wait_for_events(data, "cam-1", 1)[0]["event"]["kind"] == "armed"

    vericam_ok("provision", "revoke", "cam-1", "--data", data, "--broker-dir", broker.dir)

    assert link.disconnected.wait(5), "the broker kept the revoked device connected"
    assert not Client(broker, "cam-1", config["broker"]["password"], client_id="cam-1").connect()
    # Even a message that got past the broker (or was queued before) is refused at the gateway.
    with Store.open(data) as store:
        result = Ingest(store, log=lambda line: None).process_batch(
            [Message(*device.event({"kind": "disarmed", "slot": 2, "t": int(time.time())}))])
        assert result.rejected == {"unknown_device": 1}
        assert len(store.events.list("cam-1")) == 1
    link.close()


def test_rotation_refuses_the_old_key_and_password_and_accepts_the_new(running, tmp_path):
    broker, data = running
    old = provision(broker, data, "cam-1", tmp_path / "old")
    old_device = FakeDevice(old)
    link = _send(broker, old, old_device.event({"kind": "armed", "mode": "away", "slot": 1, "t": int(time.time())}))
    _wait_for_events(data, "cam-1", 1)

    vericam_ok("provision", "rotate", "cam-1", "--data", data, "--broker-dir", broker.dir, "--out", tmp_path / "new")
    new = json.loads((tmp_path / "new" / "config.json").read_text())
    assert new["device_key"] != old["device_key"] and new["broker"]["password"] != old["broker"]["password"]

    assert link.disconnected.wait(5), "the broker kept the old credentials connected"
    assert not Client(broker, "cam-1", old["broker"]["password"], client_id="cam-1").connect()
    with Store.open(data) as store:
        result = Ingest(store, log=lambda line: None).process_batch(
            [Message(*old_device.event({"kind": "disarmed", "slot": 1, "t": int(time.time())}))])
        assert result.rejected == {"bad_mac": 1}

    # The re-flashed device starts its counter again and is accepted end to end.
    new_link = _send(broker, new, FakeDevice(new).event({"kind": "disarmed", "slot": 1, "t": int(time.time())}))
    assert _wait_for_events(data, "cam-1", 2)[-1]["event"]["kind"] == "disarmed"
    new_link.close()
    link.close()


def test_a_revoked_device_is_not_rotated_back_by_accident(ground, tmp_path):
    broker, data = ground
    provision(broker, data, "cam-1", tmp_path / "dev")
    vericam_ok("provision", "revoke", "cam-1", "--data", data, "--broker-dir", broker.dir)
    result = vericam("provision", "rotate", "cam-1", "--data", data, "--broker-dir", broker.dir,
                     "--out", tmp_path / "again")
    assert result.returncode == 2 and "--reinstate" in result.stdout + result.stderr
    assert not (tmp_path / "again").exists()


def test_provisioning_twice_or_a_bad_id_is_refused_without_touching_the_broker(ground, tmp_path):
    broker, data = ground
    provision(broker, data, "cam-1", tmp_path / "dev")
    before = (broker.dir / "passwd").read_text()
    for device in ("cam-1", "Cam_1", "revoke-me-not" * 4):
        result = vericam("provision", device, "--site", "s", "--data", data, "--broker-dir", broker.dir,
                         "--out", tmp_path / device)
        assert result.returncode == 2, result.stdout + result.stderr
    assert (broker.dir / "passwd").read_text() == before


def test_an_image_with_the_firmware_holds_an_agent_that_micropython_imports_from_it(ground, tmp_path):
    broker, data = ground
    image = tmp_path / "full.img"
    vericam_ok("provision", "cam-1", "--site", "s", "--data", data, "--broker-dir", broker.dir,
            "--flash-image", image, "--with-firmware")
    script = (
        "import sys\n"
        "from vericam.hal_sim import mount_flash\n"
        f"mount_flash({str(image)!r}, 4096, 512)\n"
        "for name in list(sys.modules):\n"
        "    if name.startswith('vericam'):\n"
        "        del sys.modules[name]\n"
        "sys.path[:] = ['/flash']\n"
        "import os, vericam\n"
        "from vericam.agent import load_config\n"
        "import vericam.agent as agent\n"
        "print(agent.__file__, load_config('/flash/config.json')['device_id'], sorted(os.listdir('/flash/vericam')))\n"
    )
    out = subprocess.run([micropython_binary(), "-c", script], env=micropython_env(), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    where, device, files = out.stdout.split(" ", 2)
    assert where == "/flash/vericam/agent.py" and device == "cam-1"
    assert "'agent.py'" in files and "'hal_esp32.py'" in files and "'mqtt'" in files
    assert "hal_sim" not in files, "the simulator's HAL has no business on a board"


def test_tools_flash_copies_the_agent_and_the_config_with_mpremote(ground, tmp_path):
    broker, data = ground
    provision(broker, data, "cam-1", tmp_path / "dev")
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    (fake / "mpremote").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                                   f'case "$*" in *"cp -r "*) ls -R "$(echo "$@" | sed "s/.*cp -r //; s/ :.*//")" '
                                   f'>> {calls};; esac\n')
    (fake / "mpremote").chmod(0o755)
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    run = subprocess.run(["bash", str(root / "tools" / "flash"), "--port", "/dev/ttyUSB7", "--config",
                          str(tmp_path / "dev")], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    log = calls.read_text()
    assert "connect /dev/ttyUSB7 mip install ntptime" in log
    assert "cp -r" in log and "agent.py" in log and "hal_esp32.py" in log and "hal_sim.py" not in log
    assert f"cp {tmp_path / 'dev' / 'config.json'} :config.json" in log
    assert f"cp {tmp_path / 'dev' / 'ca.der'} :ca.der" in log
    assert log.rstrip().endswith("connect /dev/ttyUSB7 reset")
