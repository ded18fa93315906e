"""Ingest: turns a batch of MQTT messages into durable rows and blobs, and says what to send back.

This module does no network I/O, like a sans-IO core: `Ingest.process_batch(messages)` verifies
every message (PROTOCOL.md §3), handles it in one database transaction with one savepoint per
message (group commit), commits, and returns the downlink messages (receipts §8, time §9) that
the caller must publish only after it has acknowledged the batch. `gateway.ingest.service` owns the
MQTT client and the worker thread that feeds it.

What becomes of each message:
- capture chunk: spooled; when the last chunk of a capture is in, the sealed capture is opened
  (§4), each frame is stored as an encrypted image, and a receipt (status 0) is returned. A
  capture already stored is never stored twice: when the device sends it again (fresh
  counters), its receipt goes out again. A cover (release kind 1, §4.4) is answered the same
  way and stores nothing but a capture row of status `cover`, for a resend's receipt: no
  image, no alarm, nothing an operator or a subject's export could take for photos. The
  receipts of covers and of disarm or duress photos are marked `disarm_shaped`, for the
  service to send them at one floor after their last chunk, however long storing took.
- event: decrypted (§6) and stored; an alarm event links its alarm id to its captures. A
  disarm is stored as the device's disarm, without the fields that make every disarm look
  alike on the wire; a duress disarm is stored and raised as the duress alarm it is.
- status: online/offline and last seen; `online` gets a time message (§9).
- alarms and technical events, with `forward` set (`vericam gateway run --dc09`): a DC-09
  report for the ARC's own alarm receivers is queued in the same transaction as the event
  (`gateway.forward`), and a follow-up with the console link once the alarm's photos are
  stored. Queuing touches no network; the transmitters are woken after the commit.
- anything rejected: counted by reason, logged with device, topic and reason (never payload
  bytes or keys), and still acknowledged so the broker does not deliver it forever. It causes
  nothing else: no receipt, not even for a replayed last chunk of a stored capture (§8). A
  refusal an operator must hear of (a counter that leaps, a device locked out behind its own
  counter, a device over its quota) also raises a technical event for the device, at most
  once a minute (`gateway.ingest.notices`).
- with `limits`, each device's authentic messages are held to its quotas (messages and bytes
  per second, bytes in reassembly; `gateway.ingest.quotas`): past them, `rate_limited`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import re
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from gateway.protocol import capture as cap
from gateway.protocol import envelope as env_mod
from gateway.protocol.envelope import (RECEIPT_REJECTED, RECEIPT_RESEND, RECEIPT_STORED, T_CAPTURE, T_EVENT,
                                T_HEARTBEAT,
                                T_RECEIPT, T_STATUS, T_TIME, Envelope)
from gateway.protocol.errors import CaptureTooLarge, Malformed, ProtocolError, TooManyCaptures
from gateway.protocol.event import as_recorded, decrypt_event, parse_status
from gateway.governance.retention import RetentionPolicy, deletion_day, image_clock_ms
from gateway.ingest.notices import Notices
from gateway.ingest.quotas import DeviceLimits, Quotas
from gateway.storage.blobstore import BlobStoreError
from gateway.storage.captures import CaptureRecord
from gateway.storage.store import Store

if TYPE_CHECKING:
    from gateway.forward.forwarder import Forwarder

MAX_CAPTURES_IN_FLIGHT = 4
SPOOL_EXPIRY_MS = 10 * 60 * 1000
_PRINTABLE = re.compile(r"[^A-Za-z0-9_./+#$-]")


@dataclass(frozen=True)
class Message:
    """One received MQTT message. `token` is whatever the caller needs to acknowledge it."""

    topic: str
    payload: bytes
    token: object = None


@dataclass
class Outbound:
    topic: str
    payload: bytes
    # A receipt for what a disarm may send (a cover, or disarm or duress photos): the caller
    # holds it to the disarm receipts' floor, so that how long storing took does not tell a
    # cover, whose bytes are dropped, from photos, which are opened and stored (§4.7).
    disarm_shaped: bool = False


@dataclass
class StoredCapture:
    device: str
    capture_id: str
    alarm_id: str
    trigger: str
    frames: int
    size: int
    rowid: int
    first_chunk_ms: int


@dataclass
class BatchResult:
    outbound: list[Outbound] = field(default_factory=list)
    stored: list[StoredCapture] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)


def safe_label(text: str, limit: int = 80) -> str:
    """A topic or device id made safe to log: printable ASCII, truncated."""
    return _PRINTABLE.sub("?", text[:limit])


# The triggers of the photos a disarm may send: a duress disarm's own series, and a disarm
# series an alarm claimed (rule 3, or a duress disarm with duress photos off). Their receipts
# and a cover's leave at the same floor (Outbound.disarm_shaped).
DISARM_SHAPED_TRIGGERS = ("disarm", "duress")

# EN 50136-1 category SP4: a fault is reported within 180 s (docs/PROTOCOL.md section 11).
SUPERVISION_WINDOW_MS = 180_000


class Ingest:
    """Verifies and stores messages for one gateway. Used by one thread at a time."""

    supervision_window_ms = SUPERVISION_WINDOW_MS

    def __init__(self, store: Store, log: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.time,
                 max_in_flight: int = MAX_CAPTURES_IN_FLIGHT, spool_expiry_ms: int = SPOOL_EXPIRY_MS,
                 image_days: int = RetentionPolicy.image_days, forward: "Forwarder | None" = None,
                 limits: DeviceLimits | None = None):
        self.store = store
        self.forward = forward  # DC-09 forwarding (gateway.forward.forwarder), or None
        self._forwarded = 0     # reports queued since the transmitters were last woken
        self.image_days = image_days  # an image's deletion day: its alarm's day + image_days
        self.log = log
        self.clock = clock
        self.max_in_flight = max_in_flight
        self.spool_expiry_ms = spool_expiry_ms
        self._arc = store.keys.arc_private_key()
        self._arc_key_id = store.keys.arc_key_id()
        self._last_down_counter = 0
        self.notices = Notices(store, log)
        # None: no quotas (the sans-IO core in tests and benches); the service passes its limits.
        self.quotas = Quotas(limits) if limits is not None else None

    # Batches -------------------------------------------------------------------------------
    def process_batch(self, messages: list[Message]) -> BatchResult:
        """Handle every message in one transaction and commit it (files and rows durable).

        Raises only if the transaction itself fails (disk full, database error): then nothing
        of the batch is stored and nothing may be acknowledged; the caller retries."""
        result = BatchResult()
        with self._quotas_batch(), self.notices.batch(), self.store.batch(_devices_named(messages)):
            for msg in messages:
                self._one(msg, result)
        self._wake_forwarder()
        return result

    def _one(self, msg: Message, result: BatchResult) -> None:
        now = self.clock()
        try:
            with self.store.savepoint():
                self._handle(msg, now, result)
        except ProtocolError as exc:
            # Refused: nothing stored, nothing sent back (PROTOCOL.md §8), also for a replayed
            # last chunk of a stored capture. The device gets its receipt again by sending the
            # capture again, under fresh counters.
            self._reject(exc.reason, msg.topic, str(exc), result, quiet=exc.quiet)
            if exc.notice and exc.device:
                self.notices.refused(exc.device, exc.notice, str(exc), int(now * 1000))
        except (self.store.db.OperationalError, BlobStoreError):
            # Storage itself failed, not this message: the database (locked, full, connection
            # lost, deadlock with another gateway) or the blob store (disk full, object store
            # unreachable). The whole batch fails, is not acknowledged, and the service retries it.
            raise
        except Exception as exc:  # a bug must cost one message, never the worker
            self._reject("internal_error", msg.topic,
                         f"{type(exc).__name__} at {_where(exc)}: report this as a gateway bug", result)

    def _reject(self, reason: str, topic: str, why: str, result: BatchResult, quiet: bool = False) -> None:
        self.store.rejections.count(reason)
        result.rejected[reason] = result.rejected.get(reason, 0) + 1
        if quiet:
            return  # counted; its technical event (once a minute) says how many
        device = safe_label(topic.split("/")[2]) if topic.count("/") >= 2 else "?"
        self.log(f"rejected {reason}: device={device} topic={safe_label(topic)}: {why}")

    def _quotas_batch(self):
        return self.quotas.batch() if self.quotas is not None else contextlib.nullcontext()

    # One message ---------------------------------------------------------------------------
    def _handle(self, msg: Message, now: float, result: BatchResult) -> None:
        windows = {}

        def window_for(device: str):
            windows[device] = self.store.devices.replay_window(device)
            return windows[device]

        at_ms = int(now * 1000)
        env = env_mod.open_envelope(msg.topic, msg.payload, self.store.devices.keys_for, window_for, now,
                                    self.store.devices.last_status_counter,
                                    lambda device: self.store.devices.counter_ceiling(device, at_ms))
        if self.quotas is not None:  # authentic and new: only now may it spend the device's quota
            self.quotas.spend(env.device_id, len(msg.payload))
        for device, window in windows.items():
            self.store.devices.save_replay_window(device, window)
        if env.etype != T_STATUS:  # a status (the will, say) may be old: it proves nothing about now
            self.store.devices.touch(env.device_id, at_ms, clock_unset=env.time == 0)
        if env.etype == T_CAPTURE:
            self._chunk(env, cap.parse_chunk(env.body), at_ms, result)
        elif env.etype == T_EVENT:
            self._event(env, at_ms, env_mod.late_by_s(env, now))
        elif env.etype == T_STATUS:
            self._status(env, at_ms, result)
        elif env.etype == T_HEARTBEAT:
            pass  # heard: devices.touch above is all a heartbeat is for (§11)
        else:  # a downlink type on an uplink topic cannot pass check_topic; keep the guard anyway
            raise Malformed(f"envelope type 0x{env.etype:02x} is not an uplink type")

    def _chunk(self, env: Envelope, chunk: cap.Chunk, at_ms: int, result: BatchResult) -> None:
        device, cid, aid = env.device_id, chunk.capture_id.hex(), chunk.alarm_id.hex()
        # One round trip on PostgreSQL: is the capture decided, spool the chunk, spool state after.
        # A check below that fails rolls the spooled chunk back with the message's savepoint.
        done, new, state = self.store.spool.add_unless_decided(device, cid, chunk.index, chunk.count,
                                                                chunk.total, aid, chunk.data, at_ms)
        if done is None and state is None:  # another gateway decided it between our statements
            done = self.store.captures.get(device, cid)
        if done is not None:
            # Already stored (or rejected): store nothing, answer the capture's last chunk again.
            if chunk.index == chunk.count - 1:
                self._receipt_for(done, result)
            return
        if chunk.index < chunk.count - 1:
            size = len(chunk.data)
            if not size * (chunk.count - 1) < chunk.total <= size * chunk.count:
                raise Malformed(f"chunk {chunk.index} of {size} bytes does not fit {chunk.count} chunks "
                                f"totalling {chunk.total} bytes")
        if new and state["have"] == 1:  # the capture's first chunk
            reserved = self.store.spool.reserved(device)
            if len(reserved) > self.max_in_flight:
                raise TooManyCaptures(f"device {device} already has {self.max_in_flight} captures in "
                                      "reassembly: send one capture at a time, or wait for receipts")
            if self.quotas is not None:
                self.quotas.check_reassembly(device, sum(reserved.values()))
        elif ((state["count"], state["count_max"], state["total"], state["total_max"], state["alarm_id"],
               state["alarm_id_max"]) != (chunk.count, chunk.count, chunk.total, chunk.total, aid, aid)):
            raise Malformed(f"chunk {chunk.index} of capture {cid[:8]} disagrees with earlier chunks "
                            "on count, total size or alarm id")
        if state["bytes"] > chunk.total:
            raise CaptureTooLarge(f"chunks of capture {cid[:8]} hold more than its stated {chunk.total} bytes")
        if new and chunk.index == 0 and not self._starts_cover(chunk):
            # The alarm is heard of with its photos' first chunk, unless they are cover: a cover
            # names an alarm id that means nothing, and no alarm may appear for it.
            self.store.alarms.note(device, aid, at_ms)
        if state["have"] == chunk.count:
            self._complete(device, cid, aid, chunk.total, state["first_ms"], at_ms, result)

    def _complete(self, device: str, cid: str, aid: str, total: int, first_ms: int, at_ms: int,
                  result: BatchResult) -> None:
        sealed = self.store.spool.assemble(device, cid)
        self.store.spool.drop(device, cid)
        sha = hashlib.sha256(sealed).hexdigest()
        try:
            if len(sealed) != total:
                raise Malformed(f"chunks of capture {cid[:8]} add up to {len(sealed)} bytes, not the "
                                f"stated {total}")
            opened = cap.open_delivery(sealed, self._arc, self._arc_key_id)  # release, sealed, padding (§4)
            if opened.capture_id.hex() != cid:
                raise Malformed("capture id in the chunks differs from the one in the sealed header")
            if opened.cover:
                return self._cover(device, cid, opened, sha, len(sealed), first_ms, result)
        except ProtocolError as exc:
            # The capture itself is bad: remember that, so a resend gets the same answer.
            if self.store.captures.claim(CaptureRecord(device, cid, aid, "rejected", sha, len(sealed), 0, first_ms,
                                                       reason=exc.reason)) is None:
                return self._claimed_elsewhere(device, cid, result)
            self._reject(exc.reason, env_mod.topic_for(device, T_CAPTURE), str(exc), result)
            self._receipt(device, bytes.fromhex(cid), RECEIPT_REJECTED, 0, bytes.fromhex(sha), result)
            return
        alarm = self.store.alarms.note(device, aid, at_ms)
        kek_day = deletion_day(image_clock_ms(alarm, opened.captured_at), self.image_days)  # the alarm's own time
        if kek_day <= _dt.datetime.fromtimestamp(at_ms / 1000, _dt.timezone.utc).date().isoformat():
            # The alarm's photos are already past retention (the device was cut off for longer
            # than the retention period): storing them would break the promise, and the day's
            # key may be destroyed. Refuse them for good, so the device deletes its copy.
            if self.store.captures.claim(CaptureRecord(device, cid, aid, "rejected", sha, len(sealed), 0, first_ms,
                                                       opened.trigger_name, opened.captured_at, "expired")) is None:
                return self._claimed_elsewhere(device, cid, result)
            self._reject("expired", env_mod.topic_for(device, T_CAPTURE),
                         f"capture {cid[:8]} of alarm {aid[:8]} arrived after its deletion day {kek_day}", result)
            self._receipt(device, opened.capture_id, RECEIPT_REJECTED, 0, bytes.fromhex(sha), result)
            return
        # Claim the capture before writing any image: its unique key is what dedups it when
        # another gateway of the `$share` group completes the same capture at the same time.
        rowid = self.store.captures.claim(CaptureRecord(device, cid, aid, "stored", sha, len(sealed), len(opened.frames),
                                                        first_ms, opened.trigger_name, opened.captured_at))
        if rowid is None:
            return self._claimed_elsewhere(device, cid, result)
        for frame in opened.frames:
            self.store.images.put(frame.jpeg, device=device, capture_id=cid, alarm_id=aid, frame_index=frame.index,
                                  frame_t=frame.t, kek_day=kek_day, at_ms=at_ms)
        self.store.alarms.link_capture(device, aid, cid)
        if alarm["code"]:  # else the alarm event is still to come, and queues the follow-up with its report
            self._forward(device, alarm["code"], aid, follow_up=True)
        result.stored.append(StoredCapture(device, cid, aid, opened.trigger_name, len(opened.frames),
                                           len(sealed), rowid, first_ms))
        self._receipt(device, opened.capture_id, RECEIPT_STORED, len(opened.frames), bytes.fromhex(sha), result,
                      disarm_shaped=opened.trigger_name in DISARM_SHAPED_TRIGGERS)

    def _starts_cover(self, chunk: cap.Chunk) -> bool:
        """True if this first chunk of a delivery opens with a cover's release record (§4.4).

        One RSA decryption per delivery, the one _complete does again; a chunk too short to hold
        the record, or one that does not open, says nothing here: _complete decides."""
        try:
            return cap.open_release(chunk.data, self._arc, self._arc_key_id).kind == cap.KIND_COVER
        except ProtocolError:
            return False

    def _cover(self, device: str, cid: str, opened: cap.OpenedCapture, sha: str, size: int, first_ms: int,
               result: BatchResult) -> None:
        """A cover (§4.4): its bytes are dropped, and it is answered like a stored capture.

        The receipt is the one a stored capture would get, its `frames` those of the release
        record, so the broker, which sees receipts in the clear, cannot tell the two apart. The
        capture row (status `cover`, no alarm id) is there so that a resend gets the same answer;
        no image, no alarm and no activity event is written for it."""
        if self.store.captures.claim(CaptureRecord(device, cid, "", "cover", sha, size, opened.frames_claimed,
                                                   first_ms, "cover")) is None:
            return self._claimed_elsewhere(device, cid, result)
        self._receipt(device, opened.capture_id, RECEIPT_STORED, opened.frames_claimed, bytes.fromhex(sha), result,
                      disarm_shaped=True)

    def _claimed_elsewhere(self, device: str, cid: str, result: BatchResult) -> None:
        """Another writer committed this capture while we assembled it: answer with its outcome."""
        done = self.store.captures.get(device, cid)
        if done is not None:
            self._receipt_for(done, result)

    def _event(self, env: Envelope, at_ms: int, late_s: int = 0) -> None:
        keys = self.store.devices.keys_for(env.device_id)
        event = as_recorded(decrypt_event(keys.event, env.body))
        if late_s:
            # Sent in time but held up on the way (every gateway down, §3 "Late events"): an
            # alarm is logged late rather than lost, and the log says how late.
            event = dict(event, delivered_late_s=late_s)
            kind = safe_label(str(event.get("kind")))
            self.log(f"late event: device={env.device_id} kind={kind} counter={env.counter} "
                     f"sent {late_s} s ago; stored with delivered_late_s")
        if self.store.events.add(env.device_id, event, at_ms, clock_unset=env.time == 0) is None:
            return  # the same event sealed again (PROTOCOL section 6): its first copy counted
        if event["kind"] == "alarm" and isinstance(event.get("alarm_id"), str):
            aid = event["alarm_id"][:64]
            t = event.get("t") if isinstance(event.get("t"), int) else None
            code = event.get("code") if isinstance(event.get("code"), str) else None
            self.store.alarms.note(env.device_id, aid, at_ms, code=code, t=t)
            captures = event.get("captures")
            for cid in captures if isinstance(captures, list) else []:
                if isinstance(cid, str) and len(cid) <= 64:
                    self.store.alarms.link_capture(env.device_id, aid, cid)
        self._forward_event(env.device_id, event)

    def _status(self, env: Envelope, at_ms: int, result: BatchResult) -> None:
        status = parse_status(env.body)
        online = status["state"] == "online"
        fw = status.get("fw") if isinstance(status.get("fw"), str) else None
        self.store.devices.set_status(env.device_id, online, fw and fw[:40], at_ms, env.counter)
        if online:
            body = env_mod.build_time_body(int(self.clock() * 1000))
            result.outbound.append(self._downlink(env.device_id, T_TIME, body))

    # Expiry --------------------------------------------------------------------------------
    def expire(self) -> BatchResult:
        """Drop partial captures older than the limit and ask their devices to resend (§5)."""
        result = BatchResult()
        cutoff = int(self.clock() * 1000) - self.spool_expiry_ms
        with self.store.transaction():
            for device, cid in self.store.spool.expired(cutoff):
                self.store.spool.drop(device, cid)
                self._reject("expired", env_mod.topic_for(device, T_CAPTURE),
                             f"capture {cid[:8]} incomplete after {self.spool_expiry_ms // 1000} s: "
                             "asked the device to resend it", result)
                self._receipt(device, bytes.fromhex(cid), RECEIPT_RESEND, 0, bytes(32), result)
        self.supervise()
        return result

    # Supervision ---------------------------------------------------------------------------
    def supervise(self, window_ms: int | None = None) -> list[tuple[str, str]]:
        """Raise `supervision_lost` for devices silent longer than the window, and
        `supervision_restored` for those heard again (§11). Returns (device, code) pairs.

        A device never heard from is not supervised yet (it is not installed); a revoked one
        is not supervised at all.
        """
        window_ms = self.supervision_window_ms if window_ms is None else window_ms
        now = int(self.clock() * 1000)
        changes = []
        with self.store.transaction():
            for row in self.store.devices.supervised():
                silent = now - row["last_seen_ms"] > window_ms
                if silent and row["supervision_lost_ms"] is None:
                    code = "supervision_lost"
                    self.store.devices.set_supervision_lost(row["id"], now)
                elif not silent and row["supervision_lost_ms"] is not None:
                    code = "supervision_restored"
                    self.store.devices.set_supervision_lost(row["id"], None)
                else:
                    continue
                self.store.events.add(row["id"], {"kind": "technical", "code": code, "source": "gateway",
                                                 "last_seen_ms": row["last_seen_ms"]}, now, clock_unset=False)
                self.log(f"technical alarm {code}: device={safe_label(row['id'])} last heard "
                         f"{(now - row['last_seen_ms']) // 1000} s ago")
                changes.append((row["id"], code))
                self._forward(row["id"], code)
        self._wake_forwarder()
        return changes

    # Forwarding to the ARC's alarm receivers (DC-09, issue 16) ----------------------------
    def _forward_event(self, device: str, event: dict) -> None:
        """Queue the report of a stored alarm, cancellation or technical event, if it has a code."""
        if self.forward is None:
            return
        kind, code = event.get("kind"), event.get("code")
        if kind == "alarm" and isinstance(code, str) and isinstance(event.get("alarm_id"), str):
            aid = event["alarm_id"][:64]
            self._forward(device, code, aid)
            if self.store.captures.stored_of_alarm(device, aid):  # its photos came first
                self._forward(device, code, aid, follow_up=True)
        elif kind == "alarm_cancelled":
            self._forward(device, "alarm_cancelled")
        elif kind == "technical" and isinstance(code, str):
            self._forward(device, code)

    def _forward(self, device: str, event: str, alarm_id: str | None = None, follow_up: bool = False) -> None:
        """Queue one DC-09 report in this transaction (`Forwarder.alarm` or `.verification`).

        A database failure fails the batch, as any other; anything else costs the report, never
        the event: it is undone to its own savepoint, logged, and the event is kept."""
        if self.forward is None:
            return
        try:
            with self.store.savepoint():
                put = self.forward.verification if follow_up else self.forward.alarm
                if put(device, event, alarm_id) is not None:
                    self._forwarded += 1
        except self.store.db.OperationalError:
            raise
        except Exception as exc:
            self.log(f"dc09: could not queue {safe_label(event)} of device {safe_label(device)} for the ARC's "
                     f"receiver ({type(exc).__name__} at {_where(exc)}); the event itself is stored: "
                     "report this as a gateway bug")

    def _wake_forwarder(self) -> None:
        """After the commit: the transmitters can see the reports queued in it now."""
        if self._forwarded and self.forward is not None:
            self._forwarded = 0
            self.forward.wake()

    # Downlink ------------------------------------------------------------------------------
    def _receipt_for(self, row: dict, result: BatchResult) -> None:
        status = RECEIPT_STORED if row["status"] in ("stored", "cover") else RECEIPT_REJECTED
        self._receipt(row["device"], bytes.fromhex(row["capture_id"]), status, row["frames"],
                      bytes.fromhex(row["sha256"]), result)

    def _receipt(self, device: str, capture_id: bytes, status: int, frames: int, sha: bytes,
                 result: BatchResult, disarm_shaped: bool = False) -> None:
        body = env_mod.build_receipt_body(capture_id, status, min(frames, 255), sha)
        out = self._downlink(device, T_RECEIPT, body)
        out.disarm_shaped = disarm_shaped
        result.outbound.append(out)

    def _downlink(self, device: str, etype: int, body: bytes) -> Outbound:
        keys = self.store.devices.keys_for(device)
        now = self.clock()
        # §3: the downlink counter is the gateway's clock in ms, kept strictly increasing.
        counter = max(int(now * 1000), self._last_down_counter + 1)
        self._last_down_counter = counter
        topic = env_mod.topic_for(device, etype)
        return Outbound(topic, env_mod.build(etype, device, counter, int(now), body, keys.down, topic))


def _devices_named(messages: list[Message]) -> list[str]:
    """The devices whose topics the batch's messages came on: their rows are locked up front."""
    devices = []
    for msg in messages:
        try:
            device, _leaf = env_mod.split_topic(msg.topic)
        except ProtocolError:
            continue  # refused later, with its reason
        if env_mod.valid_device_id(device):
            devices.append(device)
    return devices


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "?"
    last = tb[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
