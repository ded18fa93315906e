"""The ESP32 HAL: camera, panel, smoke detector, WiFi, clock and littlefs flash of an ESP32-CAM-class board.

It offers the agent what hal_sim offers (mount, flash_root, start, send/trace,
next_panel_event, open_frame, now_ms, unix_time, set_clock_ms, clock_set, sleep_ms,
time_scale), so everything above it, sealing, vault and uplink, is the code the simulator
runs.

Hardware it expects, all pins overridable in the "board" object of /config.json:

| part | how | default (AI-Thinker ESP32-CAM) |
|---|---|---|
| camera | cnadler86 `camera` module (github.com/cnadler86/micropython-camera-API): `Camera(**kw)`, `capture()`, `free_buffer()` where present; JPEG | `Camera()` with the board's built-in pins; "camera" adds keyword arguments |
| panel | UART, one JSON line per event, as the simulator sends them: `{"event": "disarmed", "slot": 2}` | UART1, TX 14, RX 15, 9600 baud |
| smoke detector | a dry contact on a GPIO, debounced | GPIO 13, pulled up, alarm when low |
| network | WiFi station, reconnecting with backoff; TLS to the broker, verified against /ca.der | "wifi" of /config.json |
| clock | NTP (micropython-lib `ntptime`) at start and every 6 h; the gateway's time message otherwise | pool.ntp.org |
| flash | littlefs at /, the filesystem MicroPython's ESP32 build mounts itself | |
| key slots | a raw data partition labelled `vckeys`, outside littlefs (keyslots.py): one slot key per 4 KiB erase block | 128 KiB: 32 slots |

The key-slot partition is one line of the board's partition table (partitions.csv of the
MicroPython build; the app and `vfs` lines stay as they are), not encrypted, so that a slot
can be programmed to zero in place:

    # Name,  Type, SubType, Offset, Size
    vckeys,  data, 0x40,    ,       128K

Without it the agent refuses to start: a capture it could not crypto-shred must not be taken.

Camera firmware: the cnadler86 `camera` module is a C user module, so the board runs one of
that project's prebuilt MicroPython images (or a build with USER_C_MODULES); the agent itself
goes on as files or frozen with firmware/manifest.py.

Time: `now_ms` counts from boot until the clock is first set, then is Unix milliseconds.
`start` waits (up to "ntp_wait_s") for NTP before the agent sets any deadline, so the jump
normally happens before the first capture.
"""

import asyncio
import json
import os
import time

import machine
import network

FLASH_ROOT = ""  # littlefs is mounted at / by MicroPython's own boot on ESP32
CA_PATH = "/ca.der"  # DER: MicroPython's tls takes no PEM
# Seconds between 1970 and the port's epoch (2000 on older ESP32 builds).
EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
PANEL_LINE_MAX = 256
NTP_EVERY_MS = 6 * 3600 * 1000
KEY_SLOT_LABEL = "vckeys"

BOARD_DEFAULTS = {
    "panel_uart": 1,
    "panel_tx": 14,
    "panel_rx": 15,
    "panel_baud": 9600,
    "smoke_pin": 13,
    "smoke_active": 0,  # the level that means smoke (a contact pulling the pin low)
    "smoke_debounce_ms": 150,
    "camera": {},  # extra keyword arguments for camera.Camera (pins of a generic build)
    "frame_size": "VGA",
    "jpeg_quality": 85,
    "ntp_host": "pool.ntp.org",
    "ntp_wait_s": 20,
    "wifi_backoff_max_s": 60,
    "trace": False,  # print traces to the REPL console
}


class _Slots:
    """The first `count` blocks of a partition, when the config asks for fewer key slots."""

    def __init__(self, part, count):
        self._part = part
        self._count = count

    def readblocks(self, block, buf, offset=0):
        self._part.readblocks(block, buf, offset)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            self._part.writeblocks(block, buf)  # erases the block first, as the partition does
        else:
            self._part.writeblocks(block, buf, offset)

    def ioctl(self, op, arg):
        if op == 4:
            return self._count
        return self._part.ioctl(op, arg)


class FrameStream:
    """The JPEG in the camera's frame buffer, read in small pieces: never copied whole to the heap."""

    def __init__(self, cam, buf):
        self._cam = cam
        self._view = memoryview(buf)
        self._pos = 0

    def readinto(self, into):
        n = min(len(into), len(self._view) - self._pos)
        into[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def read(self, n=-1):
        end = len(self._view) if n < 0 else min(len(self._view), self._pos + n)
        out = bytes(self._view[self._pos:end])
        self._pos = end
        return out

    def close(self):
        self._view = memoryview(b"")
        free = getattr(self._cam, "free_buffer", None)
        if free is not None:
            free()  # hand the frame buffer back to the driver


class Esp32Hal:
    name = "esp32"

    def __init__(self):
        self.flash_root = FLASH_ROOT
        self.board = dict(BOARD_DEFAULTS)
        self.cfg = {}
        self.clock_set = False
        self._unix_base_ms = 0
        self._ticks_base = time.ticks_ms()
        # A board lives in real time: its world clock is the clock (hal_sim can scale it).
        self.time_scale = 1
        self._panel = []
        self._panel_ready = asyncio.Event()
        self._wlan = None
        self._cam = None
        self._uart = None
        self._smoke = None
        self.device_id = None

    # -- boot ---------------------------------------------------------------------------------

    def mount(self):
        """Flash is already littlefs at /; read the board's settings from /config.json."""
        try:
            os.stat("/config.json")
        except OSError:
            raise ValueError("/config.json is missing: provision the device (vericam provision) and copy "
                             "its config onto the board (tools/flash)")
        with open("/config.json") as f:
            self.cfg = json.loads(f.read())
        for k, v in (self.cfg.get("board") or {}).items():
            self.board[k] = v
        self._configure_tls()

    def key_slot_area(self, count):
        """The raw "vckeys" partition as a block device of at most `count` 4 KiB slots."""
        import esp32

        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=KEY_SLOT_LABEL)
        if not found:
            raise ValueError("no '%s' data partition: add it to the partition table (see hal_esp32) and "
                             "flash the firmware again; captures cannot be crypto-shredded without it"
                             % KEY_SLOT_LABEL)
        part = found[0]
        blocks = part.ioctl(4, 0)
        if blocks > count:
            return _Slots(part, count)
        return part

    def _configure_tls(self):
        broker = self.cfg.get("broker") or {}
        if not broker.get("tls"):
            return
        import tls
        from vericam.mqtt import client as mqtt_client

        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        # The stubs miss this attribute (a property in C); MicroPython's docs have it.
        ctx.verify_mode = tls.CERT_REQUIRED  # pyright: ignore[reportAttributeAccessIssue]
        with open(broker.get("ca", CA_PATH), "rb") as f:
            ctx.load_verify_locations(f.read())  # DER, positionally: 1.29 takes no keywords here
        # The agent builds its MQTT client from these defaults and the broker entry of the
        # config, so the broker connection verifies the broker against the provisioned CA.
        mqtt_client.DEFAULTS["ssl"] = ctx
        mqtt_client.DEFAULTS["server_hostname"] = broker.get("host")

    async def start(self, device_id):
        self.device_id = device_id
        self._start_camera()
        self._start_panel()
        self._start_smoke()
        asyncio.create_task(self._wifi_task())
        deadline = time.ticks_add(time.ticks_ms(), int(self.board["ntp_wait_s"]) * 1000)
        while not self.clock_set and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            if self._wlan is not None and self._wlan.isconnected():
                self._ntp()
            if not self.clock_set:
                await asyncio.sleep_ms(500)
        asyncio.create_task(self._ntp_task())

    # -- tracing ------------------------------------------------------------------------------

    def send(self, msg):
        if self.board.get("trace"):
            print(json.dumps(msg))

    def trace(self, what, **fields):
        fields["what"] = what
        fields["ms"] = self.now_ms()
        self.send(fields)

    # -- network ------------------------------------------------------------------------------

    async def _wifi_task(self):
        wifi = self.cfg.get("wifi") or {}
        ssid = wifi.get("ssid")
        if not ssid:
            self.trace("wifi_unconfigured")  # e.g. a wired (LAN) board: nothing to do
            return
        self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        backoff = 1
        while True:
            if self._wlan.isconnected():
                backoff = 1
                await asyncio.sleep(2)
                continue
            self.trace("wifi_connecting", ssid=ssid)
            try:
                self._wlan.disconnect()
            except OSError:
                pass
            try:
                self._wlan.connect(ssid, wifi.get("password", ""))
            except OSError as exc:
                self.trace("wifi_error", error=repr(exc))
            for _ in range(20):  # up to 10 s for the association and DHCP
                if self._wlan.isconnected():
                    break
                await asyncio.sleep_ms(500)
            if self._wlan.isconnected():
                self.trace("wifi_up", ip=self._wlan.ifconfig()[0])
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, int(self.board["wifi_backoff_max_s"]))

    def _ntp(self):
        try:
            import ntptime
            ntptime.host = self.board["ntp_host"]
            seconds = ntptime.time() + EPOCH_OFFSET  # blocks for at most ntptime.timeout (1 s)
        except Exception as exc:  # no network yet, a lost datagram, a missing module
            self.trace("ntp_failed", error=repr(exc))
            return False
        self.set_clock_ms(seconds * 1000)
        self.trace("ntp", t=seconds)
        return True

    async def _ntp_task(self):
        while True:
            await asyncio.sleep_ms(NTP_EVERY_MS if self.clock_set else 60000)
            if self._wlan is not None and self._wlan.isconnected():
                self._ntp()

    # -- panel --------------------------------------------------------------------------------

    def _start_panel(self):
        b = self.board
        self._uart = machine.UART(int(b["panel_uart"]), baudrate=int(b["panel_baud"]),
                                  tx=int(b["panel_tx"]), rx=int(b["panel_rx"]))
        asyncio.create_task(self._panel_task())

    async def _panel_task(self):
        reader = asyncio.StreamReader(self._uart)
        line = bytearray()
        while True:
            data = await reader.read(64)
            for byte in data:
                if byte == 10:  # newline ends an event
                    self._panel_line(bytes(line))
                    line = bytearray()
                elif len(line) < PANEL_LINE_MAX:
                    line.append(byte)
                # a longer line is cut, fails to parse and is dropped: noise on the bus

    def _panel_line(self, line):
        try:
            msg = json.loads(line.strip() or b"null")
        except ValueError:
            self.trace("panel_garbled", bytes=len(line))
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
            return
        self._push({"event": msg["event"], "slot": msg.get("slot"), "mode": msg.get("mode")})

    def _push(self, msg):
        self._panel.append(msg)
        self._panel_ready.set()

    async def next_panel_event(self):
        while not self._panel:
            self._panel_ready.clear()
            await self._panel_ready.wait()
        return self._panel.pop(0)

    # -- smoke detector -----------------------------------------------------------------------

    def _start_smoke(self):
        pin = self.board.get("smoke_pin")
        if pin is None or int(pin) < 0:
            return
        self._smoke = machine.Pin(int(pin), machine.Pin.IN, machine.Pin.PULL_UP)
        asyncio.create_task(self._smoke_task())

    async def _smoke_task(self):
        active = int(self.board["smoke_active"])
        debounce = int(self.board["smoke_debounce_ms"])
        pin = self._smoke
        if pin is None:
            return
        alarmed = False
        since = None
        while True:
            level = pin.value() == active
            if level != alarmed:
                now = time.ticks_ms()
                if since is None:
                    since = now
                elif time.ticks_diff(now, since) >= debounce:
                    alarmed = level
                    since = None
                    if alarmed:
                        self._push({"event": "smoke", "slot": None, "mode": None})
                    self.trace("smoke", active=alarmed)
            else:
                since = None
            await asyncio.sleep_ms(25)

    # -- camera -------------------------------------------------------------------------------

    def _start_camera(self):
        try:
            from camera import Camera, FrameSize, PixelFormat  # type: ignore
        except ImportError:
            self.trace("camera_missing", hint="flash a MicroPython build with the cnadler86 camera module")
            return
        kw = dict(self.board.get("camera") or {})
        kw["pixel_format"] = PixelFormat.JPEG
        kw["frame_size"] = getattr(FrameSize, self.board["frame_size"])
        kw["jpeg_quality"] = int(self.board["jpeg_quality"])
        try:
            self._cam = Camera(**kw)
        except Exception as exc:
            self.trace("camera_failed", error=repr(exc))

    async def open_frame(self, trigger, index):
        """One JPEG from the camera; returns (stream, length). The stream reads the frame buffer."""
        if self._cam is None:
            raise OSError("no camera")
        buf = self._cam.capture()
        if buf is None or not len(buf):
            raise OSError("the camera returned no frame")
        await asyncio.sleep_ms(0)
        return FrameStream(self._cam, buf), len(buf)

    # -- clock --------------------------------------------------------------------------------

    def now_ms(self):
        # ticks_ms wraps (every 2**30 ms on ESP32) and ticks_diff is only good for half of
        # that, so the base moves forward every hour; the agent asks many times a minute.
        now = time.ticks_ms()
        elapsed = time.ticks_diff(now, self._ticks_base)
        if elapsed > 3600000:
            self._unix_base_ms += elapsed
            self._ticks_base = now
            elapsed = 0
        return self._unix_base_ms + elapsed

    def unix_time(self):
        return self.now_ms() // 1000 if self.clock_set else 0

    def sleep_ms(self, ms):
        """Sleep `ms` of world time, which on a board is real time."""
        return asyncio.sleep_ms(ms)

    def set_clock_ms(self, ms):
        self._ticks_base = time.ticks_ms()
        self._unix_base_ms = ms
        self.clock_set = True
        try:
            secs = ms // 1000 - EPOCH_OFFSET
            tm = time.gmtime(secs)
            machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
        except Exception:
            pass  # the RTC is a convenience for the REPL; the agent uses now_ms

