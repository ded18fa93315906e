"""A whole Vericam installation on one machine: broker, gateway process and simulated devices.

`Stack` is what the demo, the scenarios, the benchmarks and the end-to-end tests stand on.
Every part is the real thing: Mosquitto with the project's configuration, the gateway as
its own `vericam gateway run` process, and each device as a real MicroPython process
running `firmware/`.

With `dc09` settings (`gateway.forward.config.Settings`), the gateway forwards every alarm to
the ARC's alarm receivers given there, and each device is given a DC-09 account as its panel
would report under: `dc09_account` for the first, the next hex number for each further one.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from simulator.broker import Broker
from simulator.device import DeviceError, SimulatedDevice
from simulator.flash import captures_left
from simulator.netproxy import NetProxy
from simulator.panel import Panel
from simulator.processes import stop_process
from simulator.timeline import Timeline


class StackError(RuntimeError):
    pass


class Stack:
    def __init__(self, workdir: str | Path | None = None, timeline: Timeline | None = None,
                 keep: bool = False, db_url: str | None = None, blobs_args: list[str] | None = None,
                 dc09=None, dc09_account: str = "1234"):
        self._own = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="vericam-run-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        # e.g. ["--blobs", "s3://BUCKET/PREFIX", "--s3-endpoint", URL]; credentials come from the
        # environment the gateway process inherits (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
        self.blobs_args = list(blobs_args or [])
        self.timeline = timeline or Timeline()
        self.broker = Broker(self.workdir / "broker")
        self.gateway_dir = self.workdir / "gateway"
        self.db_url = db_url  # None: the gateway keeps its metadata in SQLite in gateway_dir
        self.gateway_proc: subprocess.Popen | None = None
        self.devices: dict[str, SimulatedDevice] = {}
        self.proxies: dict[str, NetProxy] = {}  # device id -> the link between it and the broker
        self.panels: dict[str, Panel] = {}
        self.alarm_sent_ms: dict[str, list[float]] = {}
        self.dc09 = dc09  # gateway.forward.config.Settings, or None: no DC-09 forwarding
        self.dc09_accounts: dict[str, str] = {}  # device id -> the DC-09 account it is reported under
        self._next_dc09_account = int(dc09_account, 16)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "Stack":
        self.broker.start()
        self.timeline.add("broker", f"Mosquitto listening on {self.broker.host}:{self.broker.port}")
        if self.db_url:
            from gateway.storage.sqldb import bind

            bind(self.gateway_dir, self.db_url)  # init, add_device and store() then find it too
        init_arc(self.gateway_dir)
        self.start_gateway()
        return self

    def start_gateway(self, timeout: float = 20.0) -> None:
        log = open(self.workdir / "gateway.log", "ab")
        argv = [sys.executable, "-m", "gateway.cli.main", "gateway", "run",
                "--data", str(self.gateway_dir), "--broker", f"{self.broker.host}:{self.broker.port}",
                *self.blobs_args]
        clock = self.timeline.clock
        if clock.scale != 1:
            # Scaled time: the gateway reads the devices' world clock (gateway/ingest/clock.py).
            argv += ["--sim-time", f"{clock.scale}@{int(clock.epoch_s * 1000)}"]
        if self.db_url:
            argv += ["--db", self.db_url]
        if self.dc09 is not None:
            argv += self.dc09.argv()
        self.gateway_proc = subprocess.Popen(argv, stdout=log, stderr=log)
        ready = self.gateway_dir / "ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.gateway_proc.poll() is not None:
                raise StackError(f"gateway exited with {self.gateway_proc.returncode}: {self.gateway_log()[-2000:]}")
            if "subscribed" in self.gateway_log() or ready.exists():
                self.timeline.add("gateway", f"gateway up (pid {self.gateway_proc.pid}), subscribed to the shared group")
                return
            time.sleep(0.05)
        raise StackError(f"gateway not ready within {timeout} s: {self.gateway_log()[-2000:]}")

    def stop_gateway(self, kill: bool = False) -> None:
        if self.gateway_proc and self.gateway_proc.poll() is None:
            stop_process(self.gateway_proc, 10, signal.SIGKILL if kill else signal.SIGTERM)
            self.timeline.add("gateway", "gateway killed" if kill else "gateway stopped")
        self.gateway_proc = None

    def gateway_log(self) -> str:
        p = self.workdir / "gateway.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def close(self) -> None:
        for panel in self.panels.values():
            panel.close()  # no exit or entry delay may fire into a stack being taken down
        for dev in self.devices.values():
            dev.close()
        for proxy in self.proxies.values():
            proxy.close()
        self.stop_gateway()
        self.broker.stop()
        if self._own and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- devices ------------------------------------------------------------------------------

    def add_device(self, device_id: str, site: str = "demo-site", triggers: dict | None = None,
                   hold_window_ms: int | None = None, flash_blocks: int = 512,
                   heapsize: str | None = None, panel_kwargs: dict | None = None,
                   extra_config: dict | None = None, via_proxy: bool | dict = False) -> SimulatedDevice:
        """Provision a device and prepare its process (call `boot()` on it).

        `via_proxy` puts a `NetProxy` between the device and the broker: True for an
        unshaped link, or a dict of `NetProxy` shaping (`latency_ms` one way,
        `bandwidth_bps`, `loss`). The proxy is `stack.proxies[device_id]` and `dev.proxy`.
        """
        config = add_device(self.gateway_dir, device_id, site)
        if self.dc09 is not None:
            self._give_dc09_account(device_id)
        proxy = None
        if via_proxy:
            shaping = via_proxy if isinstance(via_proxy, dict) else {}
            proxy = NetProxy(self.broker.host, self.broker.port, name=device_id, **shaping)
            self.proxies[device_id] = proxy
            config["broker"] = {"host": proxy.host, "port": proxy.port}
            desc = ", ".join(f"{k}={v}" for k, v in shaping.items()) or "unshaped"
            self.timeline.add("network", f"{device_id} reaches the broker through a proxy on port {proxy.port} ({desc})")
        else:
            config["broker"] = {"host": self.broker.host, "port": self.broker.port}
        if triggers is not None:
            # Without it the device runs the firmware's default triggers (policy.py): photos on
            # disarm, smoke, intrusion, tamper and duress, as a camera detector ships.
            config["triggers"] = triggers
        if hold_window_ms is not None:
            config["hold_window_ms"] = hold_window_ms
        config.update(extra_config or {})
        dev = SimulatedDevice(device_id, self.workdir / "devices" / device_id, config, self.timeline,
                              flash_blocks=flash_blocks, heapsize=heapsize)
        dev.proxy = proxy
        self.devices[device_id] = dev

        def bus(event: str, **fields) -> None:
            if event in ALARM_EVENTS:
                self.alarm_sent_ms.setdefault(device_id, []).append(time.time() * 1000)
            try:
                dev.panel(event, **fields)
            except DeviceError:
                # The device is off (a power cut, not booted yet): as on a real bus, the
                # event is lost for it. Say so rather than raise in the panel's timer thread.
                self.timeline.add("panel", f"{event} on the bus; the device is off and misses it")

        self.panels[device_id] = Panel(bus, lambda text: self.timeline.add("panel", text),
                                       time_scale=self.timeline.scale, **(panel_kwargs or {}))
        return dev

    def _give_dc09_account(self, device_id: str) -> None:
        from gateway.provisioning.dc09 import set_account

        account = format(self._next_dc09_account, "X")
        self._next_dc09_account += 1
        with self.store() as s:
            set_account(s, device_id, account)
        self.dc09_accounts[device_id] = account
        self.timeline.add("gateway", f"{device_id} is reported over DC-09 as account {account}")

    # -- what the ARC holds -------------------------------------------------------------------

    def store(self) -> Store:
        return Store.open(self.gateway_dir)

    def images_at_arc(self, device_id: str | None = None) -> list[dict]:
        with self.store() as s:
            return s.images.list(device_id)

    def read_images(self, device_id: str | None = None) -> list[bytes]:
        with self.store() as s:
            return [s.images.read(row["id"]) for row in s.images.list(device_id)]

    def wait_images(self, device_id: str, count: int, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.images_at_arc(device_id)
            if len(rows) >= count:
                return rows
            if time.monotonic() > deadline:
                raise StackError(f"{len(rows)} of {count} images at the ARC after {timeout} s; "
                                 f"gateway log: {self.gateway_log()[-1500:]}")
            time.sleep(0.05)

    def dc09_reports(self) -> list[dict]:
        """What the gateway queued for the ARC's receivers, oldest first: event, device, account,
        seq, follow_up, and acked_by (the receiver that acknowledged it; None: not yet)."""
        from gateway.forward.stored import StoredOutbox

        route = self.dc09.route if self.dc09 is not None else "arc"
        with self.store() as s:
            box = StoredOutbox(s.dc09_outbox)
            return [{"event": e.report.event, "device": e.report.device, "account": e.report.account,
                     "zone": e.report.zone, "alarm_id": e.report.alarm_id, "seq": e.seq,
                     "follow_up": e.report.follow_up, "attempts": box.attempts(e.id, route),
                     "acked_by": box.acked_by(e.id, route)} for e in box.entries()]

    def wait_dc09_acked(self, count: int, timeout: float = 30.0) -> list[dict]:
        """Wait (bounded) until `count` reports are queued and every one is acknowledged; the reports as they are then."""
        deadline = time.monotonic() + timeout
        while True:
            reports = self.dc09_reports()
            if len(reports) >= count and all(r["acked_by"] for r in reports):
                return reports
            if time.monotonic() > deadline:
                return reports
            time.sleep(0.05)

    def device_captures_left(self, device_id: str) -> int:
        """Sealed captures on the device's flash, read from the raw image by littlefs-python."""
        return captures_left(self.devices[device_id].flash_path)


ALARM_EVENTS = {"intrusion_alarm", "duress_disarm", "tamper", "sos", "panic", "silent_alarm", "smoke"}
