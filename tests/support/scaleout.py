"""The scale-out tests' tools: gateway worker processes, and fake devices streaming captures at them.

`Workers` starts `vericam gateway run` processes by name (each with its own log and client id),
SIGKILLs and restarts them. `CaptureStream` plays devices as the firmware behaves: each sends
one capture at a time (3 frames, several chunks), waits for the receipt, and sends the capture
again whole if none comes. Both are used by tests/test_gateway_scaleout.py (SQLite and files,
one data directory) and tests/test_scaleout_postgresql.py (PostgreSQL and S3, one data
directory per worker).
"""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.protocol import envelope as env
from simulator.fake_device import FakeDevice
from simulator.processes import stop_process

from support.cli import VERICAM


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def log_has(path, text):
    return path.exists() and text in path.read_text(errors="replace")


def race(*work, timeout: float = 60):
    """Run each callable in a thread of its own, all released at once; their results, in order.

    The first exception any of them raised is raised here, after all have finished."""
    go = threading.Barrier(len(work))
    results, errors = [None] * len(work), []

    def run(i):
        go.wait()
        try:
            results[i] = work[i]()
        except Exception as exc:  # noqa: BLE001 - raised again below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), f"a racer did not finish within {timeout} s"
    if errors:
        raise errors[0]
    return results


class Workers:
    """Gateway worker processes on one broker: `data` maps each worker's name to its data dir."""

    def __init__(self, log_dir: Path, broker, data: dict):
        self.broker = broker
        self.data = data
        self.logs = {name: log_dir / f"{name}.log" for name in data}
        self._files = {name: open(path, "ab") for name, path in self.logs.items()}
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(
            [VERICAM, "gateway", "run", "--data", str(self.data[name]), "--client-id", name,
             "--broker", f"{self.broker.host}:{self.broker.port}"],
            stdout=self._files[name], stderr=self._files[name])

    def start_all(self, timeout: float = 20) -> None:
        for name in self.data:
            self.start(name)
        for name in self.data:
            wait_for(lambda n=name: log_has(self.logs[n], "gateway running"), timeout, f"{name} to subscribe")

    def kill(self, name: str) -> None:
        """SIGKILL: no chance to finish, commit or acknowledge its batch."""
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def restart(self, name: str) -> None:
        """What a supervisor does: the same client id, so the broker hands back its session."""
        self._files[name].write(b"--- restarted ---\n")
        self._files[name].flush()
        self.start(name)

    def all_took_part(self) -> bool:
        return all(log_has(path, "stored capture") for path in self.logs.values())

    def log_text(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc, 20)
        for f in self._files.values():
            f.close()


class CaptureStream:
    """Devices each sending `per_device` captures through the broker, one at a time, until receipted.

    `on_receipt(device_id, capture_id_hex)` runs in the MQTT thread when a receipt arrives,
    before the device counts it: a test checks there what the receipt promises."""

    def __init__(self, broker, configs: list[dict], per_device: int, on_receipt=None, frame_bytes: int = 6000):
        self.broker = broker
        self.devices = [FakeDevice(cfg, chunk_size=2048) for cfg in configs]
        self.per_device = per_device
        self.on_receipt = on_receipt
        self.frame_bytes = frame_bytes
        self.expected: set[tuple[str, str]] = set()
        self.frames: dict[tuple[str, str, int], bytes] = {}
        self.resends = 0
        self.done = 0
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._clients = []
        self._threads = [threading.Thread(target=self._device_life, args=(d,), daemon=True) for d in self.devices]

    @property
    def total(self) -> int:
        return len(self.devices) * self.per_device

    def start(self) -> "CaptureStream":
        for th in self._threads:
            th.start()
        return self

    def wait_done(self, count: int, timeout: float) -> bool:
        """Wait until `count` captures have been receipted."""
        with self._progress:
            return self._progress.wait_for(lambda: self.done >= count, timeout)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for th in self._threads:
            th.join(max(0.0, deadline - time.monotonic()))
        assert not any(th.is_alive() for th in self._threads), "a device never got all its receipts"

    def close(self) -> None:
        for c in self._clients:
            c.disconnect()  # before loop_stop, which otherwise waits out the network thread's 1 s select
            c.loop_stop()

    def _device_life(self, dev) -> None:
        receipts = set()
        got = threading.Condition()

        def on_message(_c, _u, m):
            e = dev.open_downlink(m.topic, bytes(m.payload))
            cid, status, _frames, _sha = env.parse_receipt_body(e.body)
            if status == env.RECEIPT_STORED:
                if self.on_receipt:
                    self.on_receipt(dev.device_id, cid.hex())
                with got:
                    receipts.add(cid)
                    got.notify_all()

        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{dev.device_id}", protocol=mqtt.MQTTv311)
        c.on_message = on_message
        c.connect(self.broker.host, self.broker.port)
        c.subscribe(f"vc/v1/{dev.device_id}/down/receipt", qos=1)
        c.loop_start()
        self._clients.append(c)
        time.sleep(0.2)
        for _k in range(self.per_device):
            frames = [b"\xff\xd8" + os.urandom(self.frame_bytes) + b"\xff\xd9" for _ in range(3)]
            cid, sealed = dev.seal(frames)
            with self._lock:
                self.expected.add((dev.device_id, cid.hex()))
                self.frames.update({(dev.device_id, cid.hex(), i): f for i, f in enumerate(frames)})
            alarm = os.urandom(8)
            for _attempt in range(10):
                for topic, payload in dev.chunk_messages(cid, sealed, alarm):
                    c.publish(topic, payload, qos=1).wait_for_publish(10)
                with got:
                    if got.wait_for(lambda: cid in receipts, timeout=4):
                        break
                with self._lock:
                    self.resends += 1
            else:
                raise AssertionError(f"{dev.device_id}: no receipt for {cid.hex()[:8]} after 10 tries")
            with self._progress:
                self.done += 1
                self._progress.notify_all()
