"""The device agent: wires panel, camera, policy, vault and uplink together on asyncio.

The decisions live elsewhere: what to capture and whether to send or shred is the policy
(policy.py), how a capture is sealed is seal.py, how it sits on flash is vault.py, and the
wire format is envelope.py. This module only carries out the actions they return, and owns
the order in which things leave the device: alarm events first, then photos, then routine
events (see Uplink).

Two clocks. World time is what the HAL gives: `hal.now_ms()`, `hal.unix_time()` and
`hal.sleep_ms()`. Everything the rules and the ARC measure runs on it: the hold window,
the interval between frames, the heartbeat interval, and every timestamp. Transport time
is the real `time.ticks_ms()`/`asyncio.sleep_ms()`: the receipt timeout, retry pauses, and
all of the MQTT client's deadlines (keepalive, PUBACK retransmit, connect). On a board the
two are the same clock. The simulator can run world time N x faster (hal_sim
`--time-scale`) so that hours of hold windows pass in seconds; transport timers must not
speed up with it, because the network and the broker do not.
"""

import asyncio
import hashlib
import json
import os
import time

from vericam import FW_VERSION
from vericam.counter import MessageCounter
from vericam.envelope import (
    TYPE_CAPTURE as T_CAPTURE, TYPE_EVENT as T_EVENT, TYPE_STATUS as T_STATUS,
    TYPE_RECEIPT as T_RECEIPT, TYPE_TIME as T_TIME,
    seal_envelope, open_envelope, chunk_header, encrypt_event,
    parse_receipt, parse_time, EnvelopeError, TOPIC_LEAF,
)
from vericam.keys import DeviceKeys
from vericam.mqtt.client import MQTTClient, MQTTExpired
from vericam.policy import CapturePolicy, TRIGGER_CODES, HELD, SENDING
from vericam.seal import CaptureSealer
from vericam.vault import Vault, FlashFull

READ_PIECE = 1024          # bytes read from camera or flash at a time
FRAME_BUDGET = 64 * 1024   # flash reserved per frame before a series starts

# Heartbeat (docs/PROTOCOL.md section 11): type 0x04 on up/heartbeat, QoS 0. The default
# interval puts three heartbeats in the 180 s supervision window of EN 50136-1 category
# SP4, so one lost heartbeat never raises a supervision fault at the ARC.
TYPE_HEARTBEAT = 0x04
HEARTBEAT_S = 60

SEND_BYTES = 16384  # capture bytes in flight (unacknowledged) by default, see run()

PRIO_ALARM = 0
PRIO_PHOTO = 1
PRIO_ROUTINE = 2

# An event's envelope is stamped when it is sealed, and the gateway refuses one stamped more
# than 300 s from its clock (docs/PROTOCOL.md section 3, rule 6 `stale`). An event that has
# waited out a dead link is therefore never let out older than this: the MQTT client asks
# before every (re)send, and an envelope this old is withdrawn and the event sealed again,
# with a fresh counter and time. 60 s of margin for transit and for the two clocks.
EVENT_FRESH_S = 240


def _event_prio(ev):
    return PRIO_ALARM if ev.get("kind") in ("alarm", "technical") else PRIO_ROUTINE


def _hex(b):
    return "".join("%02x" % x for x in b)


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


def load_config(path):
    with open(path) as f:
        cfg = json.loads(f.read())
    if not isinstance(cfg, dict) or not isinstance(cfg.get("broker"), dict):
        raise ValueError("config %s is not a JSON object with a broker object: provision the device again" % path)
    for key in ("device_id", "device_key", "arc_n", "arc_e", "arc_key_id", "broker"):
        if key not in cfg:
            raise ValueError("config %s lacks %r: provision the device again" % (path, key))
    return cfg


class Uplink:
    """What waits to leave the device, in priority order: alarms, then photos, then routine."""

    def __init__(self):
        self.queues = ([], [], [])
        self.ready = asyncio.Event()

    def put(self, prio, item):
        self.queues[prio].append(item)
        self.ready.set()

    def has(self, capture_id):
        for q in self.queues:
            for item in q:
                if item[0] == "capture" and item[1] == capture_id:
                    return True
        return False

    async def take(self):
        while True:
            for q in self.queues:
                if q:
                    return q.pop(0)
            self.ready.clear()
            await self.ready.wait()


class Agent:
    def __init__(self, hal):
        self.hal = hal
        hal.mount()
        root = hal.flash_root
        self.cfg = load_config(root + "/config.json")
        self.device_id = self.cfg["device_id"]
        self.keys = DeviceKeys(_unhex(self.cfg["device_key"]))
        self.arc_n = int(self.cfg["arc_n"], 16)
        self.arc_e = int(self.cfg["arc_e"])
        self.arc_key_id = _unhex(self.cfg["arc_key_id"])
        self.counter = MessageCounter(root + "/counter")
        self.vault = Vault(root + "/vault")
        self.policy = CapturePolicy(self.cfg.get("triggers"), self.cfg.get("hold_window_ms", 5 * 60 * 1000))
        # 2 KiB chunks: on a fragmented MicroPython heap a 2 KiB envelope still finds a hole
        # where a 4 KiB one does not (measured: `vericam bench device`).
        self.chunk_size = int(self.cfg.get("chunk_size", 2048))
        self.window = int(self.cfg.get("send_window", 4))
        self.receipt_timeout_ms = int(self.cfg.get("receipt_timeout_ms", 30000))
        self._timeouts = {}  # capture_id -> receipt timeouts so far: each doubles the next wait
        self.uplink = Uplink()
        self.awaiting = {}  # capture_id -> (sha256 of what was sent, deadline in ticks_ms, alarm id)
        self.sending = None  # the capture being published right now
        # Allocated once at boot, while the heap is still in one piece.
        self._chunk_buf = bytearray(self.chunk_size)
        # Technical alarm "flash_low" when free flash drops below this (default: an eighth
        # of the flash, 256 KiB of 2 MiB, about one alarm series); raised once per descent.
        self.flash_low_bytes = int(self.cfg.get("flash_low_bytes", self.vault.total_bytes() // 8))
        self._flash_low = False
        self.early = {}      # receipts that overtook the last PUBACKs of their capture
        self.topic_base = "vc/v1/%s/" % self.device_id
        self.mqtt = None

    # -- envelopes ----------------------------------------------------------------------------

    def _envelope(self, kind, msg_type, body, counter=None):
        topic = self.topic_base + "up/" + kind
        c = self.counter.next() if counter is None else counter
        return topic, seal_envelope(self.keys.up, topic, msg_type, self.device_id, c, self.hal.unix_time(), body)

    def _status(self, state, counter):
        body = json.dumps({"state": state, "fw": FW_VERSION}).encode()
        return self._envelope("status", T_STATUS, body, counter)

    # -- boot ---------------------------------------------------------------------------------

    def _recover(self):
        captures, removed = self.vault.recover()
        now = self.hal.now_ms()
        for cid, rec in captures:
            state, trigger = rec.get("s"), rec.get("t")
            alarm = rec.get("a")
            if alarm is not None and state in ("sending", "capturing"):
                self.policy.restore(cid, SENDING, trigger, _unhex(alarm))
                self.vault.set_state(cid, "sending", trigger, _unhex(alarm))
                self.uplink.put(PRIO_PHOTO, ("capture", cid, _unhex(alarm)))
            else:
                # Held photos get a fresh hold window: their old deadline was on a clock
                # that did not survive the reboot, and a reboot may itself be sabotage.
                until = now + self.policy.hold_window_ms
                self.policy.restore(cid, HELD, trigger, until)
                self.vault.set_state(cid, "held", trigger)
        self.hal.trace("boot", captures=len(captures), debris_removed=removed, fw=FW_VERSION)

    # -- activity log: technical alarms and configuration ------------------------------------

    def _technical(self, code, **fields):
        fields["kind"] = "technical"
        fields["code"] = code
        fields["t"] = self.hal.unix_time()
        self.hal.trace("technical", code=code)
        self.uplink.put(PRIO_ALARM, ("event", fields))

    def _check_flash(self):
        free = self.vault.free_bytes()
        if free < self.flash_low_bytes and not self._flash_low:
            self._flash_low = True
            self._technical("flash_low", free=free)
        elif free >= self.flash_low_bytes and self._flash_low:
            self._flash_low = False
            self._technical("flash_ok", free=free)

    def _activity_at_boot(self):
        if not self.hal.clock_set:
            # Photos and events carry time 0 until the gateway's time message (section 9).
            self._technical("clock_not_set")
        self._check_flash()
        # A configuration change is logged with what now applies (never a key or a PIN:
        # the device has no PINs, and keys are left out). It is noticed by the hash of the
        # trigger table and hold window, kept on flash beside the config.
        summary = {"triggers": {}, "hold_window_ms": self.policy.hold_window_ms}
        for name, row in self.policy.triggers.items():
            summary["triggers"][name] = list(row)
        text = json.dumps(summary)
        digest = _hex(hashlib.sha256(text.encode()).digest())
        path = self.hal.flash_root + "/config.seen"
        try:
            with open(path) as f:
                seen = f.read().strip()
        except OSError:
            seen = None
        if seen != digest:
            ev = {"kind": "config", "code": "provisioned" if seen is None else "changed",
                  "t": self.hal.unix_time()}
            ev.update(summary)
            self.uplink.put(PRIO_ROUTINE, ("event", ev))
            with open(path + ".tmp", "w") as f:
                f.write(digest)
            os.rename(path + ".tmp", path)

    # -- actions ------------------------------------------------------------------------------

    def _apply(self, actions):
        for action in actions:
            kind = action[0]
            if kind == "capture":
                _, ref, trigger, frames, interval = action
                asyncio.create_task(self._capture_series(ref, trigger, frames, interval))
            elif kind == "alarm":
                self.hal.trace("alarm", alarm=_hex(action[1]), trigger=action[2])
            elif kind == "report":
                ev = action[1]
                ev["t"] = self.hal.unix_time()
                if "alarm_id" in ev:
                    ev["alarm_id"] = _hex(ev["alarm_id"])
                self.uplink.put(_event_prio(ev), ("event", ev))
            elif kind == "send":
                _, cid, alarm_id = action
                state = self.vault.state(cid)
                trigger = state["t"] if state else "disarm"
                self.vault.set_state(cid, "sending", trigger, alarm_id)
                self.hal.trace("send", capture=_hex(cid), alarm=_hex(alarm_id))
                self.uplink.put(PRIO_PHOTO, ("capture", cid, alarm_id))
            elif kind == "keep":
                _, cid, until = action
                state = self.vault.state(cid)
                self.vault.set_state(cid, "held", state["t"] if state else "disarm")
                self.hal.trace("held", capture=_hex(cid), until_ms=until)
            elif kind == "shred":
                self.vault.shred(action[1])
                self.hal.trace("shredded", capture=_hex(action[1]))

    async def _capture_series(self, ref, trigger, frames, interval_ms):
        """Take `frames` photos, sealing each piece before it reaches the flash."""
        cid = os.urandom(16)
        entry = self.policy.capturing.get(ref)
        alarm_id = entry[1] if entry else None
        try:
            writer = self.vault.begin(cid, trigger, frames * FRAME_BUDGET)
        except FlashFull as exc:
            self.policy.on_capture_failed(ref)
            self.hal.trace("flash_full", trigger=trigger)
            self.uplink.put(PRIO_ALARM, ("event", {"kind": "technical", "code": "flash_full", "t": self.hal.unix_time()}))
            return
        if alarm_id is not None:
            self.vault.set_state(cid, "capturing", trigger, alarm_id)
        sealer = CaptureSealer(self.arc_n, self.arc_e, self.arc_key_id, cid, TRIGGER_CODES[trigger], self.hal.unix_time())
        try:
            writer.write(sealer.header())
            buf = bytearray(READ_PIECE)
            for i in range(frames):
                if i:
                    await self.hal.sleep_ms(interval_ms)  # world time: the frame interval
                stream, length = await self.hal.open_frame(trigger, i)
                try:
                    writer.write_frame(sealer, i, self.hal.unix_time(), stream, length, buf)
                finally:
                    stream.close()
            writer.write(sealer.end())
            size = writer.commit()
        except Exception as exc:
            writer.abort()
            self.policy.on_capture_failed(ref)
            self.hal.trace("capture_failed", trigger=trigger, error=repr(exc))
            return
        finally:
            sealer.close()
        self.hal.trace("sealed", capture=_hex(cid), trigger=trigger, frames=frames, bytes=size)
        self._check_flash()
        self._apply(self.policy.on_captured(ref, cid, self.hal.now_ms()))

    # -- tasks --------------------------------------------------------------------------------

    async def _panel_task(self):
        while True:
            msg = await self.hal.next_panel_event()
            event = msg.get("event")
            self.hal.trace("panel", event=event, slot=msg.get("slot"))
            try:
                actions = self.policy.on_panel(event, self.hal.now_ms(), slot=msg.get("slot"), mode=msg.get("mode"))
            except Exception as exc:
                self.hal.trace("panel_rejected", event=event, error=repr(exc))
                continue
            self._apply(actions)

    async def _tick_task(self):
        # Wakes at the next hold-window end (world time) and at least once a real second,
        # for the receipt timeouts (transport time). It never sleeps longer than a hold
        # window either: a capture held while it sleeps has its deadline a window later, so
        # it is not overslept even when scaled time makes a window shorter than a second.
        cap = min(1000 * self.hal.time_scale, max(10, self.policy.hold_window_ms))
        while True:
            now = self.hal.now_ms()
            self._apply(self.policy.on_tick(now))
            self._check_receipts(time.ticks_ms())
            deadline = self.policy.next_deadline()
            wait = cap if deadline is None else max(10, min(cap, deadline - now))
            await self.hal.sleep_ms(wait)

    def _check_receipts(self, ticks):
        for cid in list(self.awaiting):
            digest, deadline, alarm_id = self.awaiting[cid]
            if time.ticks_diff(ticks, deadline) >= 0:
                del self.awaiting[cid]
                self._timeouts[cid] = self._timeouts.get(cid, 0) + 1
                self.hal.trace("receipt_timeout", capture=_hex(cid), times=self._timeouts[cid])
                self.uplink.put(PRIO_PHOTO, ("capture", cid, alarm_id))

    async def _uplink_task(self):
        while True:
            item = await self.uplink.take()
            try:
                if item[0] == "event":
                    await self._send_event(item[1])
                elif item[0] == "capture":
                    await self._send_capture(item[1], item[2])
            except Exception as exc:
                # Nothing is lost: the item goes back to the front of its own queue, so a
                # routine event does not overtake an alarm, nor an alarm its own order.
                self.hal.trace("uplink_retry", error=repr(exc))
                prio = PRIO_PHOTO if item[0] == "capture" else _event_prio(item[1])
                self.uplink.queues[prio].insert(0, item)
                if not isinstance(exc, MQTTExpired):
                    await asyncio.sleep_ms(500)  # an expired event goes again at once, re-sealed

    def _alarms_first(self):
        # An alarm raised while a capture is on its way goes out between two chunks, not
        # after the last one: on a slow link a capture takes seconds.
        q = self.uplink.queues[PRIO_ALARM]
        while q:
            asyncio.create_task(self._send_alarm_event(q.pop(0)))

    async def _send_alarm_event(self, item):
        try:
            await self._send_event(item[1])
        except Exception as exc:
            self.hal.trace("uplink_retry", error=repr(exc))
            self.uplink.queues[PRIO_ALARM].insert(0, item)
            self.uplink.ready.set()

    async def _send_event(self, ev):
        """Publish one activity event; MQTTExpired if it waited too long and must be sealed again.

        The event keeps its own time `t` and its `event_id` however often it is sealed: the
        envelope says when it was sent, the body when it happened, and the gateway counts an
        event id once (docs/PROTOCOL.md section 6) when an earlier copy did arrive after all.
        """
        if "event_id" not in ev:
            ev["event_id"] = _hex(os.urandom(8))
        body = encrypt_event(self.keys.event, os.urandom(16), json.dumps(ev).encode())
        topic, payload = self._envelope("event", T_EVENT, body)
        sealed_at = self.hal.unix_time()
        hal = self.hal

        def expired():
            return sealed_at != 0 and abs(hal.unix_time() - sealed_at) > EVENT_FRESH_S

        try:
            await self.mqtt.publish(topic, payload, 1, False, None, expired)
            if expired():
                # The PUBACK came back only after the envelope went stale, so the broker may
                # have had it only now: bytes written before a cut can wait in a TCP
                # connection that outlives it and arrive minutes late, and the gateway
                # refuses them. Send it again, fresh; the event id makes a copy that did
                # arrive in time count once.
                raise MQTTExpired("PUBACK after the envelope went stale")
        except MQTTExpired as exc:
            self.hal.trace("event_resealed", kind=ev.get("kind"), code=ev.get("code"), why=str(exc))
            raise
        self.hal.trace("event_sent", kind=ev.get("kind"), code=ev.get("code"))

    async def _send_capture(self, cid, alarm_id):
        if self.vault.state(cid) is None:
            return  # already receipted and deleted
        total = self.vault.sealed_size(cid)
        count = (total + self.chunk_size - 1) // self.chunk_size
        digest = hashlib.sha256()
        inflight = []
        self.sending = cid
        # One chunk buffer for the device's life: each chunk is read into it and copied
        # once, into its envelope, so no 4 KB bytes object per chunk is left to the GC.
        if self._chunk_buf is None or len(self._chunk_buf) != self.chunk_size:
            self._chunk_buf = bytearray(self.chunk_size)
        view = memoryview(self._chunk_buf)
        with self.vault.open_sealed(cid) as f:
            for index in range(count):
                self._alarms_first()
                want = min(self.chunk_size, total - index * self.chunk_size)
                got = 0
                while got < want:
                    n = f.readinto(view[got:want])
                    if not n:
                        raise OSError("sealed capture shorter than its size on flash")
                    got += n
                data = view[:want]
                digest.update(data)
                body = (chunk_header(cid, alarm_id, total, index, count), data)
                topic, payload = self._envelope("capture", T_CAPTURE, body)
                inflight.append(asyncio.create_task(self.mqtt.publish(topic, payload, 1)))
                if len(inflight) >= self.window:
                    await inflight.pop(0)
        try:
            for t in inflight:
                await t
        finally:
            self.sending = None
        # A gateway that stays silent (down, or its receipts lost) gets the capture again
        # after 1, 2, 4, 8, then every 16 receipt timeouts, not every one: resending a
        # whole capture each 30 s would pile copies up at the broker and eat a slow link.
        wait = self.receipt_timeout_ms << min(self._timeouts.get(cid, 0), 4)
        self.awaiting[cid] = (digest.digest(), time.ticks_add(time.ticks_ms(), wait), alarm_id)
        self.hal.trace("capture_sent", capture=_hex(cid), chunks=count, bytes=total)
        early = self.early.pop(cid, None)
        if early is not None:
            # The gateway stored the capture before our last PUBACKs came back.
            self._on_receipt(cid, early[0], early[1], early[2])

    # -- downlink -----------------------------------------------------------------------------

    def _on_message(self, topic, payload):
        try:
            msg_type, device_id, counter, t, body = open_envelope(self.keys.down, topic, payload)
            if device_id != self.device_id:
                raise EnvelopeError("topic_mismatch")
        except EnvelopeError as exc:
            self.hal.trace("downlink_rejected", topic=topic, reason=str(exc))
            return
        try:
            if msg_type == T_RECEIPT:
                cid, status, frames, sha = parse_receipt(body)
                self._on_receipt(bytes(cid), status, frames, bytes(sha))
            elif msg_type == T_TIME:
                self._on_time(parse_time(body))
        except EnvelopeError as exc:
            self.hal.trace("downlink_rejected", topic=topic, reason=str(exc))

    def _on_time(self, ms):
        # PROTOCOL section 9: never set the clock back by more than the tolerance, so a
        # replayed old time message cannot put wrong times on evidence.
        now = self.hal.now_ms()
        if self.hal.clock_set and ms < now - 300000:
            self.hal.trace("time_refused", behind_ms=now - ms)
            return
        was_set = self.hal.clock_set
        self.hal.set_clock_ms(ms)
        self.hal.trace("clock_set")
        if not was_set:
            self._technical("clock_set")

    def _finished(self, cid):
        """The ARC has answered for good about this capture: destroy it and forget it."""
        del self.awaiting[cid]
        self._timeouts.pop(cid, None)
        self.vault.shred(cid)
        self.policy.on_delivered(cid)

    def _on_receipt(self, cid, status, frames, sha):
        pending = self.awaiting.get(cid)
        if pending is None and cid == self.sending:
            self.early[cid] = (status, frames, sha)
            return
        if status == 0:
            if pending is None or pending[0] != sha:
                # Not for the bytes we sent (or not sent by us this boot): keep the capture.
                self.hal.trace("receipt_ignored", capture=_hex(cid))
                if pending is None and self.vault.state(cid) is not None and not self.uplink.has(cid):
                    st = self.vault.state(cid)
                    if st.get("s") == "sending" and "a" in st:
                        self.uplink.put(PRIO_PHOTO, ("capture", cid, _unhex(st["a"])))
                return
            self._finished(cid)
            self._check_flash()
            self.hal.trace("receipt", capture=_hex(cid), frames=frames, left=self.vault.count())
        elif status == 2 and pending is not None and pending[0] == sha:
            # The ARC refuses these exact bytes for good (a bad capture, or one past its
            # retention): keeping them would only fill the flash. They are sealed; shred them.
            self._finished(cid)
            self.hal.trace("refused_by_arc", capture=_hex(cid), left=self.vault.count())
        elif pending is not None:
            del self.awaiting[cid]
            self.hal.trace("resend", capture=_hex(cid))
            self.uplink.put(PRIO_PHOTO, ("capture", cid, pending[2]))

    # -- main ---------------------------------------------------------------------------------

    async def run(self):
        await self.hal.start(self.device_id)
        self._recover()
        self._activity_at_boot()
        broker = self.cfg["broker"]
        if "send_window" not in self.cfg:
            # Keep SEND_BYTES in flight whatever the chunk size: a window counted in chunks
            # shrinks with the chunks, and below the link's bandwidth x RTT (12.5 KB at
            # 1 Mbit/s and 100 ms) the upload waits on PUBACKs instead of filling the link.
            self.window = max(4, SEND_BYTES // self.chunk_size)
        self.mqtt = MQTTClient({
            "host": broker["host"], "port": int(broker["port"]),
            "client_id": self.device_id, "user": self.device_id, "password": broker.get("password"),
            "keepalive_s": int(self.cfg.get("keepalive_s", 60)),
            # A persistent session: receipts published while the link is down wait at the
            # broker instead of being lost (and the capture sent again on the receipt timer).
            "clean_session": False,
            # An alarm device must be back within seconds of the link; jitter still spreads
            # a fleet's reconnects after a broker restart.
            "backoff_max_ms": int(self.cfg.get("backoff_max_ms", 5000)),
            # A PUBACK may wait behind the whole window on the link: ack_timeout_ms must
            # exceed 16 KiB / bandwidth + RTT (5 s covers links down to about 32 kbit/s),
            # or a slow link is taken for a dead one. Slower links: raise it in the config.
            "ack_timeout_ms": int(self.cfg.get("ack_timeout_ms", 5000)),
            "connect_timeout_ms": int(self.cfg.get("connect_timeout_ms", 5000)),
            "will": self._will,
            # Room for the capture window plus alarm events and the status beside it.
            "max_inflight": self.window + 4,
        }, on_message=self._on_message, log=self._log)
        self.mqtt.subscribe(self.topic_base + "down/#", 1)
        asyncio.create_task(self.mqtt.run())
        asyncio.create_task(self._panel_task())
        asyncio.create_task(self._tick_task())
        asyncio.create_task(self._uplink_task())
        asyncio.create_task(self._heartbeat_task())
        await self._status_task()

    async def _heartbeat_task(self):
        """Tell the ARC every `heartbeat_s` that the device and its link are alive (0: never)."""
        interval = int(self.cfg.get("heartbeat_s", HEARTBEAT_S))
        if interval <= 0 or TYPE_HEARTBEAT not in TOPIC_LEAF:
            # TOPIC_LEAF lacking the type: envelope.py (and the gateway) do not speak
            # section 11 yet, and a heartbeat they would refuse is only noise.
            return
        while True:
            await self.hal.sleep_ms(interval * 1000)  # world time: supervision is the ARC's clock
            if not self.mqtt.up.is_set():
                continue  # a stale heartbeat proves nothing; the next one goes when the link is back
            body = json.dumps({"interval_s": interval, "pending": self.vault.count()}).encode()
            topic, payload = self._envelope("heartbeat", TYPE_HEARTBEAT, body)
            try:
                await self.mqtt.publish(topic, payload, 0, False, 1000)
                self.hal.trace("heartbeat", pending=self.vault.count())
            except Exception as exc:
                self.hal.trace("heartbeat_failed", error=repr(exc))

    def _will(self):
        # PROTOCOL section 7: on every connect, counter c for the online status and c + 1
        # for the will, so the gateway keeps online -> offline -> online in order even when
        # the broker publishes an old connection's will after the new connection's status.
        self._c_online = self.counter.next()
        topic, payload = self._status("offline", self.counter.next())
        return (topic, payload, True, 1)

    async def _status_task(self):
        """After every (re)connect, publish the online status that goes with its will."""
        while True:
            await self.mqtt.up.wait()
            connects = self.mqtt.connects
            topic, payload = self._status("online", self._c_online)
            try:
                await self.mqtt.publish(topic, payload, 1, True)
            except Exception as exc:
                self.hal.trace("uplink_retry", error=repr(exc))
                await asyncio.sleep_ms(500)
                continue
            if connects == self.mqtt.connects:
                self.hal.trace("online", captures=self.vault.count(), connects=connects)
            while connects == self.mqtt.connects:
                await asyncio.sleep_ms(200)  # until the next connection is up

    def _log(self, level, msg):
        self.hal.trace("mqtt", level=level, msg=msg)


def main(hal):
    import gc
    agent = Agent(hal)
    # Collect the garbage of start-up (config parsing, recovery) before the tasks begin, so
    # the long-lived objects they make find room low in the heap and leave it less broken up.
    gc.collect()
    asyncio.run(agent.run())
