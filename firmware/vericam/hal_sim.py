"""The simulator's HAL: flash as a littlefs image in a host file, then the key slots, and panel, camera and clock from the simulator.

The simulator (simulator/device.py) runs this firmware as a real MicroPython process and
listens on a loopback control port. This HAL connects to it and speaks JSON lines:

    simulator -> device   {"op": "panel", "event": "armed", "slot": 2, "mode": "away"}
                          {"op": "frame", "path": "/host/frame.jpg", "len": 41234}  (reply)
                          {"op": "stop"}
    device -> simulator   {"op": "hello", "device": "dev-1"}
                          {"op": "frame?", "trigger": "intrusion", "index": 0}
                          {"op": "trace", "what": "...", ...}

Everything else (sealing, the vault, the uplink) is the same code that runs on a board.
"""

import asyncio
import json
import os
import sys
import time
import vfs

FLASH_ROOT = "/flash"


class FlashChip:
    """A NOR flash chip of erase blocks of `size` bytes, kept in a host file.

    Erase sets a block to 0xFF. Programming can only clear bits, as on NOR flash: what lands
    is the old bytes AND the new ones (littlefs programs only erased blocks, so for it this
    is a plain write; the key slots rely on it, see keyslots.py). Every program and erase of
    every partition counts in `ops`, so `tear` can cut the power at any one of them.
    """

    def __init__(self, path, size=4096):
        self.size = size
        self.ops = 0  # program and erase operations since boot
        self._tear = None  # (op number, what to call there): see tear()
        try:
            self.f = open(path, "r+b")
        except OSError:
            self.f = open(path, "w+b")
        self.blocks = self.f.seek(0, 2) // size

    def ensure(self, count):
        """Grow the chip to at least `count` blocks, the new ones erased."""
        if self.blocks >= count:
            return
        self.f.seek(self.blocks * self.size)
        blank = b"\xff" * self.size
        for _ in range(count - self.blocks):
            self.f.write(blank)
        self.f.flush()
        self.blocks = count

    def read(self, block, buf, offset):
        self.f.seek(block * self.size + offset)
        self.f.readinto(buf)

    def program(self, block, buf, offset):
        at = block * self.size + offset
        old = bytearray(len(buf))
        self.f.seek(at)
        self.f.readinto(old)
        for i in range(len(buf)):
            old[i] &= buf[i]
        self.f.seek(at)
        self._op("prog", block, old)
        self.f.write(old)
        self.f.flush()

    def write(self, block, buf, offset):
        """Program bytes that are known to be erased (littlefs): no read-back needed."""
        self.f.seek(block * self.size + offset)
        self._op("prog", block, buf)
        self.f.write(buf)
        self.f.flush()

    def erase(self, block):
        self.f.seek(block * self.size)
        blank = b"\xff" * self.size
        self._op("erase", block, blank)
        self.f.write(blank)
        self.f.flush()

    def tear(self, n, then):
        """Test knob (tests/test_power_loss.py): the nth program or erase from now reaches the
        flash only half done, and then `then(kind, block)` is called, which never returns."""
        self._tear = (self.ops + n, then)

    def _op(self, kind, block, data):
        self.ops += 1
        tear = self._tear
        if tear is not None and self.ops == tear[0]:
            self.f.write(data[:len(data) // 2])  # a torn program (or a half-finished erase)
            self.f.flush()
            tear[1](kind, block)


class FileBlockDevice:
    """`count` erase blocks of a FlashChip, from block `first`: a partition of the chip.

    Implements MicroPython's extended block protocol, so littlefs (vfs.VfsLfs2) runs on it
    as on an ESP32's SPI flash, and the key slots (keyslots.py) as on an `esp32.Partition`.
    `nor` makes a program AND into what is there (the key slots program over live bytes
    when they zero a key); without it a program writes (littlefs programs erased blocks).
    As on `esp32.Partition`, `writeblocks` without an offset erases the block first.
    """

    def __init__(self, chip, first, count, nor=False):
        chip.ensure(first + count)
        self.chip = chip
        self.first = first
        self.size = chip.size
        self.count = count
        self._nor = nor

    def readblocks(self, block, buf, offset=0):
        self.chip.read(self.first + block, buf, offset)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            self.chip.erase(self.first + block)
            offset = 0
        if self._nor:
            self.chip.program(self.first + block, buf, offset)
        else:
            self.chip.write(self.first + block, buf, offset)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return self.size
        if op == 6:  # erase
            self.chip.erase(self.first + arg)
            return 0
        if op == 3:  # sync
            self.chip.f.flush()
            return 0
        return 0


def mount_flash(path, size=4096, count=512):
    """Mount the flash image's first `count` blocks, littlefs, at /flash, formatting it on first boot."""
    bdev = FileBlockDevice(FlashChip(path, size), 0, count)
    try:
        fs = vfs.VfsLfs2(bdev)
    except OSError:
        vfs.VfsLfs2.mkfs(bdev)
        fs = vfs.VfsLfs2(bdev)
    vfs.mount(fs, FLASH_ROOT)
    return bdev


def _parse_args(argv):
    args = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and i + 1 < len(argv):
            args[a[2:]] = argv[i + 1]
            i += 2
        else:
            i += 1
    return args


class SimHal:
    """Hardware as played by the simulator.

    argv: --control HOST:PORT --flash IMAGE [--flash-blocks N] [--provision JSON]
          [--pause-at WHEN --pause-file PATH]
                                (tests only: stop the device dead at a chosen flash write, so a
                                 test can SIGKILL it there; see _pause_point)
          [--mem-probe-ms N]    (benchmarks only: trace gc.mem_alloc() after a collect
                                 every N ms, as "mem" traces)
          [--no-clock 1]        (boot without time, as a board without RTC before the
                                 gateway's time message; default: the host clock is NTP)
          [--time-scale N]      (scaled time: the world clock runs N x faster than the host's,
          [--time-epoch-ms MS]   from the host time MS (default: boot); see "clock" below)

    Scaled time. The simulator can play a scenario N times faster than real time, so that a
    5-minute hold window passes in 5 s at N = 60, without touching the device's config. Only
    the *world* clock scales: `now_ms()`, `unix_time()` and `sleep_ms()`, which the agent uses
    for what happens in the world (hold windows, frame intervals, heartbeats, timestamps).
    Transport timers (MQTT keepalive and PUBACK retransmit, socket deadlines, the receipt
    timeout, this control channel) stay on the real `time.ticks_ms()`/`asyncio.sleep_ms()`,
    because the network, the broker and the CPU do not get N x faster. Every simulated
    process of a run (device, gateway, simulator) computes the same world time from the host
    clock: world = epoch + (host - epoch) * N.
    """

    name = "sim"

    def __init__(self, argv):
        args = _parse_args(argv)
        if "control" not in args or "flash" not in args:
            raise ValueError("hal_sim needs --control HOST:PORT and --flash IMAGE")
        host, port = args["control"].rsplit(":", 1)
        self.control = (host, int(port))
        self.flash_path = args["flash"]
        self.flash_blocks = int(args.get("flash-blocks", "512"))
        self._pause = None  # (event, n, file) of --pause-at, until it is taken
        if "pause-at" in args:
            event, _, n = args["pause-at"].partition(":")
            if not n.isdigit() or "pause-file" not in args:
                raise ValueError("--pause-at takes EVENT:N and needs --pause-file PATH")
            self._pause = (event, int(n), args["pause-file"])
        self._bdev = None
        self.mem_probe_ms = int(args.get("mem-probe-ms", "0"))
        self.provision_path = args.get("provision")
        self.time_scale = int(args.get("time-scale", "1"))
        if self.time_scale < 1:
            raise ValueError("--time-scale must be a whole number >= 1, not %d" % self.time_scale)
        self._epoch_ms = int(args.get("time-epoch-ms", "0")) or _host_ms()
        self.flash_root = FLASH_ROOT
        self._reader = None
        self._writer = None
        self._panel = []
        self._panel_ready = asyncio.Event()
        self._frame_reply = None
        self._frame_ready = asyncio.Event()
        self._clock_offset_ms = 0
        # The host clock stands in for NTP in the simulator, unless the device boots
        # without time; then unix_time() is 0 until the gateway's time message.
        self.clock_set = args.get("no-clock", "0") in ("0", "")

    # -- boot ---------------------------------------------------------------------------------

    def mount(self):
        self._bdev = mount_flash(self.flash_path, 4096, self.flash_blocks)
        cfg = self.flash_root + "/config.json"
        try:
            os.stat(cfg)
        except OSError:
            if not self.provision_path:
                raise ValueError("flash has no config.json and no --provision file was given")
            # First boot: copy the provisioning file onto the device's flash.
            with open(self.provision_path) as src:
                data = src.read()
            with open(cfg + ".tmp", "w") as dst:
                dst.write(data)
            os.rename(cfg + ".tmp", cfg)

    def key_slot_area(self, count):
        """The key-slot area (keyslots.py): `count` erase blocks of the flash image after the
        littlefs blocks, outside the file system, as the "vckeys" partition is on a board."""
        return FileBlockDevice(self._bdev.chip, self.flash_blocks, count, nor=True)

    async def start(self, device_id):
        self._reader, self._writer = await asyncio.open_connection(self.control[0], self.control[1])
        self.send({"op": "hello", "device": device_id, "pid": os.getpid() if hasattr(os, "getpid") else 0})
        asyncio.create_task(self._read_control())
        if self.mem_probe_ms:
            asyncio.create_task(self._mem_probe())

    async def _mem_probe(self):
        import gc
        while True:
            gc.collect()
            self.trace("mem", alloc=gc.mem_alloc(), free=gc.mem_free())
            await asyncio.sleep_ms(self.mem_probe_ms)

    # -- control channel ----------------------------------------------------------------------

    def send(self, msg):
        if self._writer is None:
            return
        self._writer.write(json.dumps(msg).encode() + b"\n")

    async def _read_control(self):
        while True:
            line = await self._reader.readline()
            if not line:
                # The simulator went away: a device without its hardware stops.
                sys.exit(3)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            op = msg.get("op")
            if op == "panel":
                self._panel.append(msg)
                self._panel_ready.set()
            elif op == "frame":
                self._frame_reply = msg
                self._frame_ready.set()
            elif op == "stop":
                sys.exit(0)

    def trace(self, what, **fields):
        fields["op"] = "trace"
        fields["what"] = what
        fields["ms"] = self.now_ms()
        self.send(fields)
        if self._pause is not None:
            self._pause_point(what)

    # -- power-loss test knob -----------------------------------------------------------------

    def _pause_point(self, event):
        """Arm or take the pause of `--pause-at EVENT:N` (tests/test_power_loss.py).

        EVENT is a trace (`sealed`, ...) or `frameK`, the moment frame K of a series has
        arrived from the camera, before any of it is written. N = 0 stops there; N > 0 stops
        inside the Nth flash program/erase after it, with half of that write done. Stopping
        means: write PATH (JSON: where it stopped), then sleep, stuck, until the test
        SIGKILLs the process. Writes after a frame arrives or after `sealed` is traced are
        synchronous, so the Nth one is the same write in every run.
        """
        pause, bdev = self._pause, self._bdev
        if pause is None or bdev is None or event != pause[0]:
            return
        self._pause = None  # one pause a boot
        _, n, path = pause
        if n == 0:
            self._stop_dead(path, event, n, None, None)
        else:
            # `block` is the chip's: key slots are the blocks from --flash-blocks on.
            bdev.chip.tear(n, lambda kind, block: self._stop_dead(path, event, n, kind, block))

    def _stop_dead(self, path, event, n, kind, block):
        with open(path + ".tmp", "w") as f:
            f.write(json.dumps({"event": event, "n": n, "write": kind, "block": block}))
        os.rename(path + ".tmp", path)
        for _ in range(6000):  # a test that forgot us: give up after a minute
            time.sleep_ms(10)
        sys.exit(4)

    # -- panel --------------------------------------------------------------------------------

    async def next_panel_event(self):
        while not self._panel:
            self._panel_ready.clear()
            await self._panel_ready.wait()
        return self._panel.pop(0)

    # -- camera -------------------------------------------------------------------------------

    async def open_frame(self, trigger, index):
        """Ask the simulator's camera for a frame; returns (stream, length)."""
        self._frame_ready.clear()
        self.send({"op": "frame?", "trigger": trigger, "index": index})
        await asyncio.wait_for_ms(self._frame_ready.wait(), 10000)
        reply = self._frame_reply
        if self._pause is not None:
            self._pause_point("frame%d" % index)
        return open(reply["path"], "rb"), int(reply["len"])

    # -- clock --------------------------------------------------------------------------------

    def now_ms(self):
        # World time in ms: the host clock, run time_scale x faster from the epoch. The
        # policy's deadlines run on this: it never jumps when the clock is set.
        if self.time_scale == 1:
            return _host_ms()
        return self._epoch_ms + (_host_ms() - self._epoch_ms) * self.time_scale

    def unix_time(self):
        if not self.clock_set:
            return 0
        return (self.now_ms() + self._clock_offset_ms) // 1000

    def set_clock_ms(self, ms):
        self._clock_offset_ms = ms - self.now_ms()
        self.clock_set = True

    async def sleep_ms(self, ms):
        """Sleep `ms` of world time: ms / time_scale of real time, rounded up."""
        await asyncio.sleep_ms((ms + self.time_scale - 1) // self.time_scale)


def _host_ms():
    return time.time_ns() // 1000000
