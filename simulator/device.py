"""One simulated device: the real firmware on a real MicroPython process, with the simulator as its hardware.

The simulator side of firmware/vericam/hal_sim.py. It owns the device's flash image (a
host file holding a littlefs v2 image), listens on a loopback control port for the
device's HAL, answers its camera requests with JPEG frames rendered by `Camera`, feeds it
panel events, and records everything the device reports on a shared `Timeline`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from simulator.camera import Camera
from simulator.mpy import FIRMWARE_DIR, micropython_argv, micropython_env
from simulator.timeline import Timeline

# Which scene the camera sees for each trigger.
TRIGGER_SCENES = {
    "disarm": "resident", "intrusion": "intruder", "duress": "intruder", "tamper": "intruder",
    "sos": "resident", "panic": "resident", "silent": "intruder", "smoke": "smoke",
}


class DeviceError(RuntimeError):
    pass


class SimulatedDevice:
    """A device process plus the hardware it talks to."""

    def __init__(self, device_id: str, run_dir: Path, provision: dict, timeline: Timeline,
                 flash_blocks: int = 512, heapsize: str | None = None, camera: Camera | None = None):
        self.device_id = device_id
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.flash_path = self.run_dir / "flash.img"
        self.flash_blocks = flash_blocks
        self.frames_dir = self.run_dir / "camera"
        self.frames_dir.mkdir(exist_ok=True)
        self.provision_path = self.run_dir / "provision.json"
        fd = os.open(self.provision_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(provision, f)
        self.timeline = timeline
        # VERICAM_DEVICE_HEAPSIZE sets the heap of every simulated device that was not given
        # one (`vericam bench device` uses it to play scenarios at a given heap size).
        self.heapsize = heapsize or os.environ.get("VERICAM_DEVICE_HEAPSIZE") or None
        # More hal_sim arguments, e.g. ["--no-clock", "1"] or ["--pause-at", "frame1:40", ...].
        self.hal_args: list[str] = []
        self.camera = camera or Camera(device_id)
        self.frames: list[tuple[str, int, bytes]] = []  # (trigger, index, jpeg) as the camera produced them
        self.frame_times: list[float] = []  # time.monotonic() of each camera request
        self.traces: list[dict] = []
        self.proc: subprocess.Popen | None = None
        self._conn: socket.socket | None = None
        self._conn_lock = threading.Lock()
        self._changed = threading.Condition()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(1)
        self.control_port = self._server.getsockname()[1]
        self._stderr_path = self.run_dir / "device.log"
        self._closing = False

    # -- process ------------------------------------------------------------------------------

    def boot(self, timeout: float = 15.0) -> None:
        """Start the MicroPython process and wait until it has said hello."""
        # VERICAM_DEVICE_FIRMWARE_DIR runs a firmware tree other than firmware/, e.g. the
        # same modules precompiled by mpy-cross (`vericam bench device`).
        fw_dir = Path(os.environ.get("VERICAM_DEVICE_FIRMWARE_DIR") or FIRMWARE_DIR)
        env = micropython_env()
        if fw_dir != FIRMWARE_DIR:
            env["MICROPYPATH"] = f"{fw_dir}:.frozen"
        argv = micropython_argv(fw_dir / "main.py", self.heapsize) + [
            "--control", f"127.0.0.1:{self.control_port}",
            "--flash", str(self.flash_path),
            "--flash-blocks", str(self.flash_blocks),
            "--provision", str(self.provision_path),
        ] + self._clock_args() + list(self.hal_args)
        self._log = open(self._stderr_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=self._log,
                                     cwd=str(self.run_dir))
        self._server.settimeout(0.1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn, _ = self._server.accept()
                break
            except socket.timeout:
                if self.proc.poll() is not None:
                    raise DeviceError(f"device {self.device_id} exited with {self.proc.returncode} "
                                      f"during boot: {self.log_tail()}")
                if time.monotonic() > deadline:
                    raise DeviceError(f"device {self.device_id} did not connect to the simulator within "
                                      f"{timeout} s: {self.log_tail()}")
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._conn_lock:
            self._conn = conn
        self._reader_thread = threading.Thread(target=self._reader, args=(conn,), daemon=True,
                                               name=f"hal-{self.device_id}")
        self._reader_thread.start()
        self.timeline.add("device", f"booted MicroPython (pid {self.proc.pid})")

    def _clock_args(self) -> list[str]:
        """hal_sim's world clock: the run's, so that it goes on across reboots (scaled time)."""
        clock = self.timeline.clock
        if clock.scale == 1:
            return []
        return ["--time-scale", str(clock.scale), "--time-epoch-ms", str(int(clock.epoch_s * 1000))]

    def kill(self) -> None:
        """Power cut: SIGKILL, no chance to flush or say goodbye."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self._drain_reader()
            self.timeline.add("device", "power cut (SIGKILL)")

    def _drain_reader(self, timeout: float = 5.0) -> None:
        """Wait until every trace the dead process wrote has been read: its socket is at EOF.

        What the device said before it died may still sit in the socket when the process is
        gone; a caller reading `traces` straight after a kill must see it (a CI run once
        missed a `sealed` trace that way)."""
        reader = getattr(self, "_reader_thread", None)
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)

    def stop(self) -> None:
        self._closing = True
        if self.proc and self.proc.poll() is None:
            self._send({"op": "stop"})
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.poll() is not None:
            self._drain_reader()
        with self._conn_lock:
            if self._conn:
                self._conn.close()
                self._conn = None

    def close(self) -> None:
        self.stop()
        self._server.close()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- hardware -----------------------------------------------------------------------------

    def panel(self, event: str, **fields) -> None:
        """A panel bus event reaches the device (armed, disarmed, intrusion_alarm, ...)."""
        self._send({"op": "panel", "event": event, **fields})

    def _send(self, msg: dict) -> None:
        with self._conn_lock:
            if self._conn is None:
                raise DeviceError(f"device {self.device_id} is not connected")
            self._conn.sendall(json.dumps(msg).encode() + b"\n")

    def _reader(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                self._handle(msg)
        with self._changed:
            self._changed.notify_all()

    def _handle(self, msg: dict) -> None:
        op = msg.get("op")
        if op == "frame?":
            asked = time.monotonic()
            trigger = msg.get("trigger", "")
            index = int(msg.get("index", 0))
            # The photo's timestamp overlay shows world time, as the device's clock does.
            jpeg = self.camera.render(TRIGGER_SCENES.get(trigger, "empty"), len(self.frames),
                                      self.timeline.clock(), trigger)
            path = self.frames_dir / f"frame-{len(self.frames):04d}.jpg"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(jpeg)
            os.replace(tmp, path)
            self.frames.append((trigger, index, jpeg))
            self.frame_times.append(asked)
            self.timeline.add("camera", f"frame {index} for {trigger}: {len(jpeg) // 1024} KB JPEG")
            self._send({"op": "frame", "path": str(path), "len": len(jpeg)})
        elif op == "trace":
            msg["rx"] = time.time()  # host time it arrived; its "ms" is the device's world clock
            self.traces.append(msg)
            text = describe_trace(msg)
            if text:
                self.timeline.add("device", text)
        elif op == "hello":
            pass
        with self._changed:
            self._changed.notify_all()

    # -- waiting ------------------------------------------------------------------------------

    def wait_trace(self, what: str, count: int = 1, timeout: float = 30.0, since: int = 0) -> list[dict]:
        """Wait until the device has reported `what` at least `count` times."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [t for t in self.traces[since:] if t.get("what") == what]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceError(f"device {self.device_id}: no {count} x {what!r} within {timeout} s; "
                                      f"log: {self.log_tail()}")
                self._changed.wait(min(left, 0.2))

    def trace_count(self, what: str) -> int:
        return sum(1 for t in self.traces if t.get("what") == what)


def describe_trace(msg: dict) -> str | None:
    """One readable timeline line for a device trace, or None for noise."""
    what = msg.get("what")
    cap = (msg.get("capture") or "")[:8]
    if what == "boot":
        return f"firmware {msg.get('fw')} up; {msg.get('captures')} capture(s) on flash"
    if what == "online":
        return "connected to the broker"
    if what == "panel":
        slot = f" (user slot {msg['slot']})" if msg.get("slot") is not None else ""
        return f"panel event {msg.get('event')}{slot}"
    if what == "alarm":
        return f"ALARM {msg.get('trigger')} (alarm {msg.get('alarm', '')[:8]})"
    if what == "sealed":
        return f"sealed capture {cap}: {msg.get('frames')} frames, {msg.get('bytes')} bytes on flash"
    if what == "held":
        return f"holding capture {cap} on flash (no alarm)"
    if what == "send":
        return f"capture {cap} queued for the ARC"
    if what == "capture_sent":
        return f"capture {cap} published: {msg.get('chunks')} chunks, {msg.get('bytes')} bytes"
    if what == "event_sent":
        return f"event {msg.get('kind')} {msg.get('code') or ''} published".replace("  ", " ")
    if what == "event_resealed":
        return f"event {msg.get('kind')} {msg.get('code') or ''} too old to send as stamped: sealing it again".replace("  ", " ")
    if what == "receipt":
        return f"ARC receipt for {cap}: deleted from flash ({msg.get('left')} left)"
    if what == "shredded":
        return f"capture {cap} shredded on the device"
    if what == "cover":
        of = (msg.get("of") or "")[:8]
        if msg.get("sent"):
            return f"cover {cap} sealed in the shape of {of}, queued for the ARC"
        return f"twin {cap} sealed in the shape of {of} (for its time only; shredded)"
    if what == "cover_sent":
        return f"cover {cap} published: {msg.get('chunks')} chunks, {msg.get('bytes')} bytes"
    if what == "cover_receipt":
        return f"ARC receipt for cover {cap}: deleted from flash ({msg.get('left')} left)"
    if what == "clock_set":
        return "clock set from the gateway's time message"
    if what == "flash_full":
        return f"FLASH FULL: {msg.get('trigger')} photos not taken; technical event raised"
    if what == "mqtt":
        return None if msg.get("level") == "debug" else f"mqtt: {msg.get('msg')}"
    return f"{what} {json.dumps({k: v for k, v in msg.items() if k not in ('op', 'what', 'ms', 'rx')})}"
