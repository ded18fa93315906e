"""The envelope of protocol v1 (PROTOCOL.md §3): parse, verify in the spec's order, and build.

Verification is split so that the caller owns storage: `parse` checks only the bytes (reason
`malformed`), `check_topic` the topic (`topic_mismatch`), `verify_mac` the MAC (`bad_mac`),
`ReplayWindow.check` the counter (`replay`), `check_jump` how far it leaps (`counter_jump`) and
`check_time` the clock (`stale`). `open_envelope` runs all of them in the order the spec gives,
with a key lookup, a replay window and a counter ceiling supplied by the caller.
"""

from __future__ import annotations

import hmac as _hmac
import re
import struct
from dataclasses import dataclass
from typing import Callable

from gateway.protocol.errors import (BadMac, CounterBehind, CounterJump, Malformed, Replay, Stale, TopicMismatch,
                                     UnknownDevice)
from gateway.protocol.keys import DeviceKeys, hmac_sha256

MAGIC = b"VC"
VERSION = 1
MAC_LEN = 32
MAX_DEVICE_ID = 32
# Large enough for the reordering of several gateway workers sharing one `$share` group: each
# holds up to ReceiveMaximum (256) messages in its queue, so two workers can be 512 apart.
REPLAY_WINDOW = 1024
MAX_SKEW_S = 300
# §3 "Counters": a counter may lie at most COUNTER_JUMP_BASE + COUNTER_JUMP_PER_S x (seconds
# since the device was last heard) above the highest counter seen from it. The base covers a
# week of counters a device can burn unheard while its messages queue at the broker (reboots
# at 256 each, refused connects at 2 each); the rate covers a reboot every second for as long
# as it stays silent. A holder of the key then needs 2^43 accepted messages to reach 2^63.
COUNTER_JUMP_BASE = 1 << 20
COUNTER_JUMP_PER_S = 256

T_CAPTURE = 0x01
T_EVENT = 0x02
T_STATUS = 0x03
T_HEARTBEAT = 0x04
T_RECEIPT = 0x81
T_TIME = 0x82

# Which envelope type belongs on which topic leaf (§2).
TOPIC_OF_TYPE = {
    T_CAPTURE: "up/capture",
    T_EVENT: "up/event",
    T_STATUS: "up/status",
    T_HEARTBEAT: "up/heartbeat",
    T_RECEIPT: "down/receipt",
    T_TIME: "down/time",
}
TYPE_NAMES = {T_CAPTURE: "capture", T_EVENT: "event", T_STATUS: "status", T_HEARTBEAT: "heartbeat",
              T_RECEIPT: "receipt", T_TIME: "time"}

_DEVICE_ID = re.compile(rb"[a-z0-9-]{1,32}\Z")
_HEAD = struct.Struct(">2sBBB")  # magic, version, type, n


def valid_device_id(device_id: str) -> bool:
    return isinstance(device_id, str) and _DEVICE_ID.match(device_id.encode("ascii", "replace")) is not None


def topic_for(device_id: str, etype: int) -> str:
    return f"vc/v1/{device_id}/{TOPIC_OF_TYPE[etype]}"


@dataclass(frozen=True)
class Envelope:
    etype: int
    device_id: str
    counter: int
    time: int
    body: bytes
    mac: bytes
    signed: bytes  # envelope[0 : 21+n+m], the bytes the MAC covers after the topic

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.etype, f"0x{self.etype:02x}")


# §3: counters stay below 2^63 so they fit a signed 64-bit database column (SQLite INTEGER,
# PostgreSQL BIGINT). A counter above it once reached the store and ended as internal_error.
MAX_COUNTER = 2**63 - 1


def parse(payload: bytes) -> Envelope:
    """Check the structure of an envelope (§3 rule 1). Raises `Malformed`."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise Malformed("an envelope must be bytes")
    payload = bytes(payload)
    if len(payload) < 5 + 1 + 16 + MAC_LEN:
        raise Malformed(f"envelope of {len(payload)} bytes is too short to be one")
    magic, version, etype, n = _HEAD.unpack_from(payload, 0)
    if magic != MAGIC:
        raise Malformed("envelope does not start with the magic b'VC'")
    if version != VERSION:
        raise Malformed(f"envelope version {version} is not supported (this gateway speaks 1): "
                        "upgrade the gateway or the device")
    if not 1 <= n <= MAX_DEVICE_ID:
        raise Malformed(f"device id length {n} is outside 1..32")
    if len(payload) < 21 + n + MAC_LEN:
        raise Malformed(f"envelope of {len(payload)} bytes is too short for its device id")
    raw_id = payload[5:5 + n]
    if not _DEVICE_ID.match(raw_id):
        raise Malformed("device id is outside the alphabet [a-z0-9-]")
    counter, time_s, m = struct.unpack_from(">QII", payload, 5 + n)
    if 21 + n + m + MAC_LEN != len(payload):
        raise Malformed(f"body length field says {m} bytes, but the payload holds "
                        f"{len(payload) - 21 - n - MAC_LEN}")
    if counter > MAX_COUNTER:
        raise Malformed(f"counter {counter} is above 2^63 - 1: no sender ever reaches it")
    end = 21 + n + m
    return Envelope(etype=etype, device_id=raw_id.decode("ascii"), counter=counter, time=time_s,
                    body=payload[21 + n:end], mac=payload[end:], signed=payload[:end])


def split_topic(topic: str) -> tuple[str, str]:
    """('<device>', 'up/capture') from 'vc/v1/<device>/up/capture'. Raises `TopicMismatch`."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "vc" or parts[1] != "v1":
        raise TopicMismatch(f"topic {topic[:120]!r} is not a vc/v1/<device>/<direction>/<kind> topic")
    return parts[2], parts[3] + "/" + parts[4]


def check_topic(env: Envelope, topic: str) -> None:
    """§3 rule 2: the device and type must belong on the topic."""
    device, leaf = split_topic(topic)
    if device != env.device_id:
        raise TopicMismatch(f"envelope of device {env.device_id} arrived on the topic of device "
                            f"{device[:40]!r}")
    expected = TOPIC_OF_TYPE.get(env.etype)
    if expected != leaf:
        raise TopicMismatch(f"envelope type 0x{env.etype:02x} does not belong on {leaf[:40]!r}")


def mac_input(topic: str, signed: bytes) -> bytes:
    t = topic.encode("utf-8")
    if len(t) > 0xFFFF:
        raise Malformed("topic longer than 65535 bytes")
    return struct.pack(">H", len(t)) + t + signed


def mac_key(keys: DeviceKeys, etype: int) -> bytes:
    return keys.down if etype >= 0x80 else keys.up


def verify_mac(env: Envelope, topic: str, keys: DeviceKeys) -> None:
    """§3 rule 4, in constant time."""
    expected = hmac_sha256(mac_key(keys, env.etype), mac_input(topic, env.signed))
    if not _hmac.compare_digest(expected, env.mac):
        raise BadMac(f"MAC of the {env.type_name} envelope from {env.device_id} does not verify: "
                     "wrong device key, or the message was altered or moved to another topic")


def counter_ceiling(highest: int, silent_s: float) -> int:
    """The highest counter a device may use now (§3 rule 5), given the highest counter seen
    from it (its replay window's or its last status's) and how long it has been silent.

    A device no counter was seen from yet (-1: new, or its key just rotated) counts from 0,
    silent since it was provisioned."""
    return max(highest, 0) + COUNTER_JUMP_BASE + COUNTER_JUMP_PER_S * max(0, int(silent_s))


def check_jump(env: Envelope, ceiling: int | None) -> None:
    """§3 rule 5, second half: refuse a counter above the ceiling (`counter_ceiling`)."""
    if ceiling is not None and env.counter > ceiling:
        raise CounterJump(f"{env.type_name} envelope from {env.device_id} leaps {env.counter - ceiling} past the "
                          f"highest counter it may use now (limit {COUNTER_JUMP_BASE} above the highest seen, "
                          f"plus {COUNTER_JUMP_PER_S} per second of silence): a holder of the device key trying "
                          "to push the genuine device's counter out of reach; rotate the device's key",
                          device=env.device_id)


def is_current(env: Envelope, now_s: float, max_skew: int = MAX_SKEW_S) -> bool:
    """Stamped with a set clock, within the tolerance of now: not an old message held back."""
    return bool(env.time) and abs(env.time - now_s) <= max_skew


def check_time(env: Envelope, now_s: float, max_skew: int = MAX_SKEW_S, late_ok: bool = False) -> None:
    """§3 rule 6. Time 0 (the device clock is not set) is accepted.

    `late_ok`: an envelope stamped too far in the past passes (an event that waited at the
    broker while every gateway was down, §3 "Late events"); one from the future never does."""
    if late_ok and env.time and env.time < now_s - max_skew:
        return
    if env.time and abs(env.time - now_s) > max_skew:
        raise Stale(f"{env.type_name} envelope from {env.device_id} is stamped {int(env.time - now_s)} s "
                    f"from this gateway's clock (limit {max_skew} s): check the device's and "
                    "gateway's clocks")


class ReplayWindow:
    """The counters seen from one device: a high-water mark and a bitmap of the REPLAY_WINDOW below it.

    Bit i of `bitmap` set means counter `high - i` was seen. A counter more than REPLAY_WINDOW below the
    high-water mark is a replay, as is any counter whose bit is set.
    """

    __slots__ = ("high", "bitmap")

    def __init__(self, high: int = -1, bitmap: int = 0):
        self.high = high
        self.bitmap = bitmap

    def below(self, counter: int) -> bool:
        """`counter` lies below the window: older than anything it can still tell apart."""
        return self.high >= 0 and self.high - counter > REPLAY_WINDOW

    def check(self, counter: int) -> None:
        """Raise `Replay` if `counter` may not be accepted; does not record it."""
        if self.high < 0 or counter > self.high:
            return
        behind = self.high - counter
        if behind > REPLAY_WINDOW:
            raise Replay(f"counter is {behind} below the highest seen (window {REPLAY_WINDOW}): "
                         "an old message replayed, or the device reused counters")
        if self.bitmap >> behind & 1:
            raise Replay("counter was already seen: a duplicate or replayed message")

    def accept(self, counter: int) -> None:
        """Check and record `counter`."""
        self.check(counter)
        mask = (1 << (REPLAY_WINDOW + 1)) - 1
        if counter > self.high:
            shift = counter - self.high if self.high >= 0 else REPLAY_WINDOW + 1
            self.bitmap = ((self.bitmap << shift) | 1) & mask if shift <= REPLAY_WINDOW else 1
            self.high = counter
        else:
            self.bitmap |= 1 << (self.high - counter)


def open_envelope(topic: str, payload: bytes, keys_for: Callable[[str], DeviceKeys | None],
                  window_for: Callable[[str], ReplayWindow], now_s: float,
                  last_status_for: Callable[[str], int] | None = None,
                  ceiling_for: Callable[[str], int | None] | None = None) -> Envelope:
    """Run every §3 check in order and record the counter. Raises a `ProtocolError`.

    `keys_for(device)` returns the device's keys or None (unknown or revoked);
    `window_for(device)` returns its replay window, which this function updates on success.
    Status envelopes follow §7 instead of the window and the clock: their counter must be
    above `last_status_for(device)` (the counter of the last status accepted, -1 if none);
    the caller records the new one. `ceiling_for(device)` is the highest counter the device
    may use now (`counter_ceiling`), None for no bound; every type is held to it.

    A replay whose counter is far below what was seen although the message is current is
    raised as `CounterBehind` (still a `replay`): the sign of a second holder of the key.
    """
    env = parse(payload)
    check_topic(env, topic)
    keys = keys_for(env.device_id)
    if keys is None:
        raise UnknownDevice(f"no key for device {env.device_id} (not provisioned, or revoked): "
                            "provision it with `vericam gateway add-device`")
    verify_mac(env, topic, keys)
    if env.etype == T_STATUS:
        # §7: the last will is built at connect and published much later, so statuses are
        # ordered among themselves only, and their (possibly old) time is not judged.
        last = last_status_for(env.device_id) if last_status_for else -1
        if env.counter <= last:
            if last - env.counter > REPLAY_WINDOW and is_current(env, now_s):
                raise _behind(env, "status", last)
            raise Replay("status counter is not above that of the last status accepted: "
                         "a replayed or out-of-order status")
        check_jump(env, ceiling_for(env.device_id) if ceiling_for else None)
        return env
    window = window_for(env.device_id)
    if window.below(env.counter) and is_current(env, now_s):
        raise _behind(env, "window", window.high)
    window.check(env.counter)
    check_jump(env, ceiling_for(env.device_id) if ceiling_for else None)
    check_time(env, now_s, late_ok=env.etype == T_EVENT)
    window.accept(env.counter)
    return env


def _behind(env: Envelope, what: str, high: int) -> CounterBehind:
    return CounterBehind(f"{env.type_name} envelope from {env.device_id} is current and validly signed, but its "
                         f"counter is {high - env.counter} below the highest seen ({what}): a replay of a recent "
                         "message, or another holder of the device key has pushed the counter ahead, or the "
                         "device lost its counter; if it persists, rotate the device's key",
                         device=env.device_id)


def late_by_s(env: Envelope, now_s: float) -> int:
    """How many seconds past the §3 tolerance an accepted envelope arrived; 0 if in time."""
    if not env.time:
        return 0
    return int(now_s - env.time) if now_s - env.time > MAX_SKEW_S else 0


def build(etype: int, device_id: str, counter: int, time_s: int, body: bytes, key: bytes,
          topic: str | None = None) -> bytes:
    """Build one envelope, MAC'd with `key` (K_up for types < 0x80, K_down otherwise)."""
    if not valid_device_id(device_id):
        raise Malformed(f"device id {device_id!r} is outside [a-z0-9-]{{1,32}}")
    if not 0 <= counter < 1 << 64 or not 0 <= time_s < 1 << 32 or len(body) >= 1 << 32:
        raise Malformed("counter, time or body length out of range")
    topic = topic or topic_for(device_id, etype)
    raw_id = device_id.encode("ascii")
    signed = (MAGIC + bytes([VERSION, etype, len(raw_id)]) + raw_id
              + struct.pack(">QII", counter, time_s, len(body)) + bytes(body))
    return signed + hmac_sha256(key, mac_input(topic, signed))


def build_receipt_body(capture_id: bytes, status: int, frames: int, sha256: bytes) -> bytes:
    """§8 body: capture_id(16) status(1) frames(1) sha256(32)."""
    if len(capture_id) != 16 or len(sha256) != 32 or not 0 <= status <= 255 or not 0 <= frames <= 255:
        raise Malformed("receipt fields out of range")
    return capture_id + bytes([status, frames]) + sha256


def parse_receipt_body(body: bytes) -> tuple[bytes, int, int, bytes]:
    if len(body) != 50:
        raise Malformed(f"a receipt body is 50 bytes, got {len(body)}")
    return body[:16], body[16], body[17], body[18:]


def build_time_body(now_ms: int) -> bytes:
    return struct.pack(">Q", now_ms)


def parse_time_body(body: bytes) -> int:
    if len(body) != 8:
        raise Malformed(f"a time body is 8 bytes, got {len(body)}")
    return struct.unpack(">Q", body)[0]


RECEIPT_STORED, RECEIPT_RESEND, RECEIPT_REJECTED = 0, 1, 2
