"""The production broker configuration in a real Mosquitto, and TLS clients that speak to it as devices would.

`SecureBroker` runs exactly what `vericam broker-config` writes (verified TLS for devices,
a loopback listener for the gateway); `Client` is a paho client that verifies the broker
against the generated CA; `provision` gives a device its key, account and config through
the `vericam provision` command.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.provisioning.brokerconf import GATEWAY_USER, SHARE_GROUP, add_device_account, write_broker_config
from simulator.broker import free_port, mosquitto_binary

from support.cli import vericam_ok


class SecureBroker:
    def __init__(self, root: Path, run_as: str | None = "root" if os.geteuid() == 0 else None):
        self.dir = root / "broker"
        self.port, self.local_port = free_port(), free_port()
        self.info = write_broker_config(self.dir, hosts=["localhost", "127.0.0.1"], port=self.port,
                                        bind="127.0.0.1", local_port=self.local_port, run_as=run_as)
        self.ca = str(self.dir / "ca.pem")
        self.gateway_password = json.loads((self.dir / "gateway.secret").read_text())[GATEWAY_USER]
        self.passwords: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None

    def add_device(self, device_id: str) -> str:
        self.passwords[device_id] = add_device_account(self.dir, device_id)
        return self.passwords[device_id]

    def start(self) -> None:
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start: " + self.log())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def log_path(self) -> Path:
        """Where the generated mosquitto.conf sends the broker's log."""
        conf = (self.dir / "mosquitto.conf").read_text().splitlines()
        return Path(next(ln for ln in conf if ln.startswith("log_dest file ")).split(" ", 2)[2])

    def log(self) -> str:
        p = self.log_path()
        return p.read_text(errors="replace") if p.exists() else ""


class Client:
    """A paho client over TLS that verifies the broker against the generated CA."""

    def __init__(self, broker: SecureBroker, user: str | None, password: str | None, client_id: str = "",
                 v5: bool = False, tls: bool = True):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        if tls:
            self.c.tls_set(ca_certs=broker.ca)  # CERT_REQUIRED and hostname check are paho's defaults
        if user is not None:
            self.c.username_pw_set(user, password)
        self.connack = threading.Event()
        self.refused = None
        self.disconnected = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        self.c.on_message = self._on_message
        self.port = broker.port if tls else broker.local_port
        self.ok = False

    def _on_connect(self, client, userdata, flags, rc, props=None):
        self.ok = not rc.is_failure
        self.refused = rc if rc.is_failure else None
        self.connack.set()

    def _on_message(self, client, userdata, msg):
        with self.got:
            self.messages.append((msg.topic, msg.payload))
            self.got.notify_all()

    def connect(self) -> bool:
        self.c.reconnect_delay_set(30, 60)  # a refused client must not retry during the test
        try:
            self.c.connect("127.0.0.1", self.port, keepalive=30)
        except OSError:
            return False
        self.c.loop_start()
        # A refusal answers at once; only a slow TLS handshake on a loaded machine (or a broker
        # still re-reading its accounts after a SIGHUP) takes longer, so wait generously.
        self.connack.wait(20)
        return self.ok

    def subscribe(self, topic: str) -> list:
        """Subscribe at QoS 1; returns the broker's reason codes from the SUBACK."""
        done = threading.Event()
        codes: list = []

        def on_subscribe(client, userdata, mid, reason_codes, properties=None):
            codes.extend(reason_codes)
            done.set()
        self.c.on_subscribe = on_subscribe
        self.c.subscribe(topic, qos=1)
        assert done.wait(5)
        return codes

    def wait_for_count(self, n: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        """The messages received once there are `n` of them, or all there are after `timeout`."""
        with self.got:
            self.got.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def wait_for(self, payload: bytes, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        with self.got:
            assert self.got.wait_for(lambda: any(p == payload for _, p in self.messages), timeout), \
                f"{payload!r} never arrived; got {self.messages}"
            return list(self.messages)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def device(broker: SecureBroker, dev: str, client_id: str | None = None) -> Client:
    c = Client(broker, dev, broker.passwords[dev], client_id=client_id if client_id is not None else dev)
    assert c.connect(), f"{dev} could not connect: {broker.log()[-400:]}"
    return c


def gateway(broker: SecureBroker) -> Client:
    gw = Client(broker, GATEWAY_USER, broker.gateway_password, client_id="gw-test", v5=True)
    assert gw.connect(), broker.log()[-400:]
    gw.subscribe(f"$share/{SHARE_GROUP}/vc/v1/+/up/#")
    return gw


def provision(broker: SecureBroker, data, device: str, out: Path) -> dict:
    """`vericam provision DEVICE` into `out`; its config, after checking no secret was printed."""
    output = vericam_ok("provision", device, "--site", "Storgatan 1", "--data", data, "--broker-dir", broker.dir,
                        "--out", out)
    config = json.loads((out / "config.json").read_text())
    assert config["device_key"] not in output and config["broker"]["password"] not in output
    broker.passwords[device] = config["broker"]["password"]
    return config
