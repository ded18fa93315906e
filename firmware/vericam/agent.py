"""The device agent: wires panel, camera, policy, delivery, vault and uplink together on asyncio.

The decisions live elsewhere: what to capture and whether to send or shred is the policy
(policy.py), when a sealed capture is published and which receipt lets it be destroyed is
the delivery (delivery.py), how a capture is sealed is seal.py, how it sits on flash is
vault.py, and the wire format is envelope.py. This module feeds them events and time,
carries out the actions they return with the HAL, the vault and the MQTT client, and owns
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
import struct
import time
from binascii import hexlify, unhexlify

from vericam import FW_VERSION
# The biggest modules first: compiling a module from source needs contiguous room, which
# every import before it breaks up (on the unix port a 156 KiB heap fits them this way).
from vericam.mqtt.client import MQTTClient, MQTTExpired
from vericam.seal import (BUCKET, FRAME_INNER, FRAME_PREFIX, HEADER_FIXED, META_SIZE, RECORD_FRAME,
                          RELEASE_CAPTURE, RELEASE_COVER, CaptureSealer, padded_size, release_record)
from vericam.hmac256 import DIGEST_SIZE
from vericam.counter import MessageCounter
from vericam.envelope import (
    TYPE_CAPTURE as T_CAPTURE, TYPE_EVENT as T_EVENT, TYPE_STATUS as T_STATUS,
    TYPE_RECEIPT as T_RECEIPT, TYPE_TIME as T_TIME, TYPE_HEARTBEAT as T_HEARTBEAT,
    CLOCK_TOLERANCE, seal_envelope, open_envelope, chunk_header, encrypt_event, pad_event, status_body,
    parse_receipt, parse_time, EnvelopeError,
)
from vericam.delivery import Delivery, DEFAULT_RECEIPT_TIMEOUT_MS, RECORD_CAPTURING
from vericam.keys import DeviceKeys
from vericam.policy import CapturePolicy, COVER, DEFAULT_HOLD_WINDOW_MS, TRIGGER_CODES, HELD, SENDING
from vericam.vault import Vault, FlashFull
from vericam.keyslots import KeySlots, SlotsExhausted

READ_PIECE = 1024          # bytes read from camera or flash at a time
FRAME_BUDGET = 64 * 1024   # flash reserved per frame before a series starts

# Heartbeat (docs/PROTOCOL.md section 11): T_HEARTBEAT on up/heartbeat, QoS 0. The default
# interval puts three heartbeats in the 180 s supervision window of EN 50136-1 category
# SP4, so one lost heartbeat never raises a supervision fault at the ARC.
HEARTBEAT_S = 60

SEND_BYTES = 16384  # capture bytes in flight (unacknowledged) by default, see run()

# Key slots (keyslots.py): one per capture on the device. 32 x 4 KiB erase blocks is the
# 128 KiB "vckeys" partition; each capture costs one erase of one of them.
DEFAULT_KEY_SLOTS = 32
_ZERO_PIECE = bytes(256)  # padding of a delivery (PROTOCOL section 4.5) is copied from here


class KeySlotLost(Exception):
    """A capture's key slot no longer holds its key: nobody can open the capture any more."""


class _Noise:
    """The camera of a cover: random bytes, read like a frame stream."""

    def readinto(self, view):
        n = len(view)
        view[:n] = os.urandom(n)
        return n

    def close(self):
        pass

# Activity events of these kinds go before the photos; the others (arming, configuration)
# go after them. Every disarm is urgent: a duress alarm is reported as a disarm (policy.py,
# Cover), and a disarm that went first only when it was a duress alarm would give it away.
URGENT_KINDS = ("alarm", "technical", "disarmed")

# An event's envelope is stamped when it is sealed, and the gateway refuses one stamped more
# than CLOCK_TOLERANCE (300 s) from its clock (docs/PROTOCOL.md section 3, rule 6 `stale`).
# An event that has waited out a dead link is therefore never let out older than this: the
# MQTT client asks before every (re)send, and an envelope this old is withdrawn and the
# event sealed again, with a fresh counter and time. 60 s of margin for transit and for the
# two clocks.
EVENT_FRESH_S = CLOCK_TOLERANCE - 60


def _urgent(ev):
    return ev.get("kind") in URGENT_KINDS


def _hex(b):
    return hexlify(b).decode()


_unhex = unhexlify


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
    """What waits to leave the device, in priority order: alarm events, photos, routine events.

    The events wait here; the photos wait in the delivery, which says which capture goes
    next. The queues change only through these methods.
    """

    def __init__(self, delivery):
        self._delivery = delivery
        self._alarms = []
        self._routine = []
        self.ready = asyncio.Event()

    def put(self, ev):
        """Queue an activity event behind those of its own priority."""
        (self._alarms if _urgent(ev) else self._routine).append(ev)
        self.ready.set()

    def put_back(self, ev):
        """An event that could not be sent goes first again, ahead of its own priority."""
        (self._alarms if _urgent(ev) else self._routine).insert(0, ev)
        self.ready.set()

    def wake(self):
        """A capture waits in the delivery."""
        self.ready.set()

    def take_alarm(self):
        """The first alarm event waiting, or None."""
        return self._alarms.pop(0) if self._alarms else None

    async def take(self):
        """("event", ev) or ("capture", capture_id, alarm_id): the next thing to send."""
        while True:
            if self._alarms:
                return ("event", self._alarms.pop(0))
            nxt = self._delivery.next_capture()
            if nxt is not None:
                return ("capture", nxt[0], nxt[1])
            if self._routine:
                return ("event", self._routine.pop(0))
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
        # The key slots: raw flash outside littlefs, the slot key of each capture on the device.
        self.keyslots = KeySlots(hal.key_slot_area(int(self.cfg.get("key_slots", DEFAULT_KEY_SLOTS))))
        self.vault = Vault(root + "/vault", self.keyslots)
        # Deliveries are padded with zeros to a multiple of this (PROTOCOL section 4.5).
        self.bucket = int(self.cfg.get("send_bucket", BUCKET))
        # duress_cover: absent or null is the policy's default (on when a duress disarm sends photos)
        self.policy = CapturePolicy(self.cfg.get("triggers"), self.cfg.get("hold_window_ms", DEFAULT_HOLD_WINDOW_MS),
                                    cover=self.cfg.get("duress_cover"))
        self.delivery = Delivery(int(self.cfg.get("receipt_timeout_ms", DEFAULT_RECEIPT_TIMEOUT_MS)))
        # 2 KiB chunks: on a fragmented MicroPython heap a 2 KiB envelope still finds a hole
        # where a 4 KiB one does not (measured: `vericam bench device`).
        self.chunk_size = int(self.cfg.get("chunk_size", 2048))
        self.window = int(self.cfg.get("send_window", 4))
        self.uplink = Uplink(self.delivery)
        # The delivery's clock: transport milliseconds (see the module docstring), summed
        # from ticks_ms differences so that it never wraps.
        self._transport_ms = 0
        self._last_ticks = time.ticks_ms()
        # Allocated once at boot, while the heap is still in one piece.
        self._chunk_buf = bytearray(self.chunk_size)
        # Technical alarm "flash_low" when free flash drops below this (default: an eighth
        # of the flash, 256 KiB of 2 MiB, about one alarm series); raised once per descent.
        self.flash_low_bytes = int(self.cfg.get("flash_low_bytes", self.vault.total_bytes() // 8))
        self._flash_low = False
        self.topic_base = "vc/v1/%s/" % self.device_id
        self.mqtt = None
        self._covers = set()  # capture ids of the covers on the flash (policy.py, Cover)
        self._twins = {}      # capture id of a claimed series -> its twin, shredded with it

    # -- envelopes ----------------------------------------------------------------------------

    def _envelope(self, kind, msg_type, body, counter=None):
        topic = self.topic_base + "up/" + kind
        c = self.counter.next() if counter is None else counter
        return topic, seal_envelope(self.keys.up, topic, msg_type, self.device_id, c, self.hal.unix_time(), body)

    def _status(self, state, counter):
        return self._envelope("status", T_STATUS, status_body(state, FW_VERSION), counter)

    def _transport_now(self):
        ticks = time.ticks_ms()
        self._transport_ms += time.ticks_diff(ticks, self._last_ticks)
        self._last_ticks = ticks
        return self._transport_ms

    # -- boot ---------------------------------------------------------------------------------

    def _recover(self):
        captures, removed, lost = self.vault.recover()
        for cid, record in lost:
            self._key_slot_lost(cid, record.get("a"))
        self._deliver(self.delivery.on_boot(captures))
        # A boot never extends a hold window: what was held is sent or shredded now.
        self._apply(self.policy.on_boot())
        self.hal.trace("boot", captures=len(captures), debris_removed=removed, keys_lost=len(lost),
                       key_slots_free=self.keyslots.free_count(), fw=FW_VERSION)

    # -- activity log: technical alarms and configuration ------------------------------------

    def _technical(self, code, **fields):
        fields["kind"] = "technical"
        fields["code"] = code
        fields["t"] = self.hal.unix_time()
        self.hal.trace("technical", code=code)
        self.uplink.put(fields)

    def _key_slot_lost(self, cid, alarm_hex=None):
        """A capture whose key slot is gone or corrupt: it can never be opened, by anyone."""
        fields = {"capture": _hex(cid)}
        if alarm_hex:
            fields["alarm_id"] = alarm_hex
        self._technical("key_slot_lost", **fields)

    def _drop(self, cid, why):
        """Destroy a capture outside its lifecycle (a lost key, no free key slot), and forget it.

        Its entry leaves the delivery the way a held capture does at the end of its window
        (a capture the delivery has queued or is publishing has no such way out: it is
        simply never published again, see _send_capture)."""
        self.vault.shred(cid)
        self._shred_twin(cid)
        self.delivery.on_hold_ended(cid)  # its ("shred",) action: done just now
        self.policy.on_delivered(cid)
        self.hal.trace("dropped", capture=_hex(cid), why=why)

    def _shred_twin(self, cid):
        twin = self._twins.pop(cid, None)
        if twin is not None:
            self.vault.shred(twin)

    def _shred(self, cid, why):
        """Destroy a capture on the device: its key slot zeroed, its files removed, the slot erased."""
        self.hal.trace("shredding", capture=_hex(cid), why=why)
        self.vault.shred(cid)

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
        summary = {"triggers": {}, "hold_window_ms": self.policy.hold_window_ms,
                   "duress_cover": self.policy.cover}
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
            self.uplink.put(ev)
            with open(path + ".tmp", "w") as f:
                f.write(digest)
            os.rename(path + ".tmp", path)

    # -- actions ------------------------------------------------------------------------------

    def _apply(self, actions):
        """Carry out the policy's actions."""
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
                self.uplink.put(ev)
            elif kind == "send":
                _, cid, alarm_id = action
                key = self.vault.slot_key(cid)
                if key is None:
                    self._key_slot_lost(cid, _hex(alarm_id))
                    self._drop(cid, "key_slot_lost")
                    continue
                for i in range(len(key)):
                    key[i] = 0
                self._deliver(self.delivery.on_claimed(cid, alarm_id))
                self.hal.trace("send", capture=_hex(cid), alarm=_hex(alarm_id))
            elif kind == "keep":
                _, cid, until = action
                self._deliver(self.delivery.on_held(cid))
                self.hal.trace("held", capture=_hex(cid), until_ms=until)
            elif kind == "shred":
                self._deliver(self.delivery.on_hold_ended(action[1]))

    def _deliver(self, actions):
        """Carry out the delivery's actions."""
        for action in actions:
            kind, cid = action[0], action[1]
            if kind == "record":
                self.vault.set_state(cid, action[2], action[3], action[4])
            elif kind == "restore":
                _, cid, trigger, alarm = action
                # Held photos get no new hold window: policy.on_boot decides them (POWER_LOSS).
                self.policy.restore(cid, HELD if alarm is None else SENDING, trigger, alarm)
                if trigger == COVER:
                    self._covers.add(cid)
            elif kind == "queued":
                why = action[2]
                if why == "receipt_timeout":
                    self.hal.trace("receipt_timeout", capture=_hex(cid), times=action[3])
                elif why == "resend":
                    self.hal.trace("resend", capture=_hex(cid))
                self.uplink.wake()
            elif kind == "delivered":
                cover = cid in self._covers
                self._covers.discard(cid)
                self._shred(cid, "delivered")
                self._shred_twin(cid)
                self.policy.on_delivered(cid)
                self._check_flash()
                # A cover's receipt is not a photo at the ARC: it has a trace of its own.
                if cover:
                    self.hal.trace("cover_receipt", capture=_hex(cid), frames=action[2], left=self.vault.count())
                else:
                    self.hal.trace("receipt", capture=_hex(cid), frames=action[2], left=self.vault.count())
            elif kind == "discard":
                # A cover twin a power cut left behind: random bytes, nobody's photo.
                self.vault.shred(cid)
                self.hal.trace("cover_discarded", capture=_hex(cid))
            elif kind == "refused":
                self._covers.discard(cid)
                self._shred(cid, "refused")
                self._shred_twin(cid)
                self.policy.on_delivered(cid)
                self.hal.trace("refused_by_arc", capture=_hex(cid), left=self.vault.count())
            elif kind == "shred":
                self._shred(cid, "hold_ended")
                self.hal.trace("shredded", capture=_hex(cid))
            elif kind == "ignored":
                # Not for the bytes sent (or not sent by us this boot): the capture stays.
                self.hal.trace("receipt_ignored", capture=_hex(cid))

    async def _capture_series(self, ref, trigger, frames, interval_ms):
        """Take `frames` photos, sealing each piece before it reaches the flash."""
        cid = os.urandom(16)
        entry = self.policy.capturing.get(ref)
        alarm_id = entry[1] if entry else None
        self.hal.trace("capturing", capture=_hex(cid), trigger=trigger)
        try:
            writer = self._begin(cid, trigger, frames * FRAME_BUDGET)
        except FlashFull as exc:
            self.policy.on_capture_failed(ref)
            self.hal.trace("flash_full", trigger=trigger)
            self.uplink.put({"kind": "technical", "code": "flash_full", "t": self.hal.unix_time()})
            return
        except SlotsExhausted:
            # Every slot holds the key of a capture an alarm claimed: those go first.
            self.policy.on_capture_failed(ref)
            self._technical("key_slots_exhausted", trigger=trigger, slots=self.keyslots.count, skipped=True)
            return
        self._deliver(self.delivery.on_capturing(cid, trigger, alarm_id))
        sealer = CaptureSealer(self.arc_n, self.arc_e, self.arc_key_id, cid, TRIGGER_CODES[trigger],
                               self.hal.unix_time(), writer.slot_key)
        try:
            writer.write(sealer.header())
            writer.forget_key()
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
        self._deliver(self.delivery.on_sealed(cid, trigger))
        await self._decided(self.policy.on_captured(ref, cid, self.hal.now_ms()))

    async def _decided(self, actions):
        """Carry out the policy's decision on a sealed series: a cover (or a twin) is sealed
        before what follows it, so a claimed series leaves when a cover would have."""
        for action in actions:
            if action[0] != "cover":
                self._apply([action])
                continue
            cid = await self._seal_cover(action[1], action[2])
            if action[2] is None and cid is not None:
                # Sealed only for its time; shredded with its series, after the receipt, as a
                # cover is after its own: no extra flash work while the series is on its way.
                self._twins[action[1]] = cid

    async def _seal_cover(self, shape, alarm_id):
        """Seal a cover shaped like capture `shape` (policy.py, Cover): a capture of random frames
        with its frame sizes, sealed like any other under a key slot of its own.

        With an alarm id it is claimed and queued at once, like a series an alarm claimed; without,
        it is a twin, sealed only for the time that takes. Returns its capture id, or None if there
        was no room for it (nothing else waits on a cover)."""
        try:
            sizes = self._frame_sizes(shape)
        except (OSError, ValueError) as exc:
            self.hal.trace("cover_skipped", of=_hex(shape), why=repr(exc))
            return None
        cid = os.urandom(16)
        expected = 0
        for c in sizes:
            expected += FRAME_PREFIX + c + DIGEST_SIZE
        try:
            # Claimed from its first byte under the alarm id it goes with (a reboot sends it).
            writer = self.vault.begin(cid, COVER, expected, alarm_id)
        except (FlashFull, SlotsExhausted) as exc:
            # Never at a held capture's expense, as a new series would be: a cover is not evidence.
            self.hal.trace("cover_skipped", of=_hex(shape), why=repr(exc))
            return None
        t = self.hal.unix_time()
        sealer = CaptureSealer(self.arc_n, self.arc_e, self.arc_key_id, cid, TRIGGER_CODES[COVER], t,
                               writer.slot_key)
        try:
            writer.write(sealer.header())
            writer.forget_key()
            buf = bytearray(READ_PIECE)
            noise = _Noise()
            for i, c in enumerate(sizes):
                await asyncio.sleep_ms(0)  # a frame at a time, as a series is sealed
                # the longest plaintext that seals to c bytes of ciphertext (PROTOCOL section 4.3)
                writer.write_frame(sealer, i, t, noise, max(0, c - FRAME_INNER - 1), buf)
            writer.write(sealer.end())
            size = writer.commit()
        except Exception as exc:
            writer.abort()
            self.hal.trace("cover_skipped", of=_hex(shape), why=repr(exc))
            return None
        finally:
            sealer.close()
        self.hal.trace("cover", capture=_hex(cid), of=_hex(shape), sent=alarm_id is not None, bytes=size)
        if alarm_id is not None:
            self._covers.add(cid)
            self._deliver(self.delivery.on_sealed(cid, COVER))
            self._deliver(self.delivery.on_claimed(cid, alarm_id))
        else:
            # The twin writes its record once more, as the claim of a cover does: the same flash
            # work on both ways, so the series leaves at the moment a cover would.
            self.vault.set_state(cid, RECORD_CAPTURING, COVER)
        return cid

    def _frame_sizes(self, cid):
        """The ciphertext size of each frame record of a sealed capture (PROTOCOL 4.2, 4.3)."""
        sizes = []
        with self.vault.open_sealed(cid) as f:
            head = f.read(HEADER_FIXED)
            if len(head) != HEADER_FIXED:
                raise ValueError("sealed capture shorter than its header")
            w = struct.unpack_from(">H", head, HEADER_FIXED - 2)[0]
            f.seek(HEADER_FIXED + w + META_SIZE + DIGEST_SIZE)
            prefix = bytearray(FRAME_PREFIX)
            while f.readinto(prefix) == FRAME_PREFIX and prefix[0] == RECORD_FRAME:
                c = struct.unpack_from(">I", prefix, 2)[0]
                sizes.append(c)
                f.seek(c + DIGEST_SIZE, 1)
        return sizes

    def _begin(self, cid, trigger, expected_bytes):
        """The vault's writer for a new capture; with no key slot free, the oldest held capture
        (which its hold window would shred anyway) makes room. SlotsExhausted if none is held."""
        try:
            return self.vault.begin(cid, trigger, expected_bytes)
        except SlotsExhausted:
            oldest = None
            for held, entry in self.policy.captures.items():
                if entry[0] == HELD and (oldest is None or (entry[2] or 0) < oldest[1]):
                    oldest = (held, entry[2] or 0)
            if oldest is None:
                raise
            self._technical("key_slots_exhausted", trigger=trigger, slots=self.keyslots.count,
                            held_shredded=_hex(oldest[0]))
            self._drop(oldest[0], "key_slots_exhausted")
        return self.vault.begin(cid, trigger, expected_bytes)

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
            self._deliver(self.delivery.on_tick(self._transport_now()))
            deadline = self.policy.next_deadline()
            wait = cap if deadline is None else max(10, min(cap, deadline - now))
            await self.hal.sleep_ms(wait)

    async def _uplink_task(self):
        while True:
            item = await self.uplink.take()
            if item[0] == "capture":
                await self._send_capture(item[1], item[2])
                continue
            try:
                await self._send_event(item[1])
            except Exception as exc:
                # Nothing is lost: the event goes back to the front of its own queue, so a
                # routine event does not overtake an alarm, nor an alarm its own order.
                self.hal.trace("uplink_retry", error=repr(exc))
                self.uplink.put_back(item[1])
                if not isinstance(exc, MQTTExpired):
                    await asyncio.sleep_ms(500)  # an expired event goes again at once, re-sealed

    def _alarms_first(self):
        # An alarm raised while a capture is on its way goes out between two chunks, not
        # after the last one: on a slow link a capture takes seconds.
        ev = self.uplink.take_alarm()
        while ev is not None:
            asyncio.create_task(self._send_alarm_event(ev))
            ev = self.uplink.take_alarm()

    async def _send_alarm_event(self, ev):
        try:
            await self._send_event(ev)
        except Exception as exc:
            self.hal.trace("uplink_retry", error=repr(exc))
            self.uplink.put_back(ev)

    async def _send_event(self, ev):
        """Publish one activity event; MQTTExpired if it waited too long and must be sealed again.

        The event keeps its own time `t` and its `event_id` however often it is sealed: the
        envelope says when it was sent, the body when it happened, and the gateway counts an
        event id once (docs/PROTOCOL.md section 6) when an earlier copy did arrive after all.
        """
        if "event_id" not in ev:
            ev["event_id"] = _hex(os.urandom(8))
        # Padded to the event bucket: every event envelope has the same size (PROTOCOL section 6).
        body = encrypt_event(self.keys.event, os.urandom(16), pad_event(json.dumps(ev).encode()))
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
        """Publish the capture the delivery handed out, and tell it how that went."""
        try:
            digest, count, total = await self._publish_capture(cid, alarm_id)
        except KeySlotLost:
            # Its key slot went bad while it waited: no key opens it, for the ARC neither.
            # Say so, destroy it, and go on with the others (a cover's alarm id names nothing).
            self._key_slot_lost(cid, None if cid in self._covers else _hex(alarm_id))
            self._covers.discard(cid)
            self._shred_twin(cid)
            self.delivery.on_key_lost(cid)
            self.vault.shred(cid)
            self.policy.on_delivered(cid)
            self.hal.trace("dropped", capture=_hex(cid), why="key_slot_lost")
            return
        except Exception as exc:
            # Nothing is lost: the capture goes first again once the link is back.
            self.hal.trace("uplink_retry", error=repr(exc))
            self._deliver(self.delivery.on_publish_failed(cid))
            await asyncio.sleep_ms(500)
            return
        if cid in self._covers:
            self.hal.trace("cover_sent", capture=_hex(cid), chunks=count, bytes=total)
        else:
            self.hal.trace("capture_sent", capture=_hex(cid), chunks=count, bytes=total)
        self._deliver(self.delivery.on_published(cid, digest, self._transport_now()))

    async def _publish_capture(self, cid, alarm_id):
        """Every chunk published and acknowledged -> (sha256 of the bytes, chunks, bytes).

        What is sent (PROTOCOL sections 4.4, 4.5): the capture's release record (its slot key
        wrapped to the ARC, the same bytes on every resend), the sealed capture as it lies on
        flash, and zeros up to a multiple of the bucket, so the size tells nothing of the
        frames. The receipt's SHA-256 is over all of it."""
        key = self.vault.slot_key(cid)
        if key is None:
            raise KeySlotLost()
        try:
            kind = RELEASE_COVER if cid in self._covers else RELEASE_CAPTURE
            release = release_record(self.arc_n, self.arc_e, self.arc_key_id, kind, self.vault.frames_in(cid), cid, key)
        finally:
            for i in range(len(key)):
                key[i] = 0
        sealed = self.vault.sealed_size(cid)
        head = len(release)
        total = padded_size(head + sealed, self.bucket)
        count = (total + self.chunk_size - 1) // self.chunk_size
        digest = hashlib.sha256()
        inflight = []
        # One chunk buffer for the device's life: each chunk is read into it and copied
        # once, into its envelope, so no 4 KB bytes object per chunk is left to the GC.
        if self._chunk_buf is None or len(self._chunk_buf) != self.chunk_size:
            self._chunk_buf = bytearray(self.chunk_size)
        view = memoryview(self._chunk_buf)
        pos = 0  # of the bytes sent
        with self.vault.open_sealed(cid) as f:
            for index in range(count):
                self._alarms_first()
                want = min(self.chunk_size, total - pos)
                got = 0
                if pos < head:  # the release record
                    got = min(want, head - pos)
                    view[0:got] = release[pos:pos + got]
                while got < want and pos + got < head + sealed:  # the sealed capture
                    n = f.readinto(view[got:min(want, head + sealed - pos)])
                    if not n:
                        raise OSError("sealed capture shorter than its size on flash")
                    got += n
                while got < want:  # the padding
                    n = min(want - got, len(_ZERO_PIECE))
                    view[got:got + n] = _ZERO_PIECE[:n]
                    got += n
                data = view[:want]
                digest.update(data)
                pos += want
                body = (chunk_header(cid, alarm_id, total, index, count), data)
                topic, payload = self._envelope("capture", T_CAPTURE, body)
                inflight.append(asyncio.create_task(self.mqtt.publish(topic, payload, 1)))
                if len(inflight) >= self.window:
                    await inflight.pop(0)
        for t in inflight:
            await t
        return digest.digest(), count, total

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
                self._deliver(self.delivery.on_receipt(cid, status, frames, sha))
            elif msg_type == T_TIME:
                self._on_time(parse_time(body))
        except EnvelopeError as exc:
            self.hal.trace("downlink_rejected", topic=topic, reason=str(exc))

    def _on_time(self, ms):
        # PROTOCOL section 9: never set the clock back by more than the tolerance, so a
        # replayed old time message cannot put wrong times on evidence.
        now = self.hal.now_ms()
        if self.hal.clock_set and ms < now - CLOCK_TOLERANCE * 1000:
            self.hal.trace("time_refused", behind_ms=now - ms)
            return
        was_set = self.hal.clock_set
        self.hal.set_clock_ms(ms)
        self.hal.trace("clock_set")
        if not was_set:
            self._technical("clock_set")

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
        if interval <= 0:
            return
        while True:
            await self.hal.sleep_ms(interval * 1000)  # world time: supervision is the ARC's clock
            if not self.mqtt.up.is_set():
                continue  # a stale heartbeat proves nothing; the next one goes when the link is back
            # Nothing but the interval, in the clear: how many captures wait on the flash would
            # tell a watcher that someone came home (held disarm photos), PROTOCOL section 11.
            body = json.dumps({"interval_s": interval}).encode()
            topic, payload = self._envelope("heartbeat", T_HEARTBEAT, body)
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
