"""Delivery: a capture leaves the flash only on the ARC's receipt for exactly what was sent.

Theory of operation
-------------------
Rule 1: everything that decides what becomes of a sealed capture once the policy has said
"hold it" or "send it" lives in this file: which capture is published next, when it is
published again, which receipt lets the device destroy it, and what its state record on
flash means after a reboot. This module does no I/O and reads no clock. The agent feeds it
events and the time, and carries out the actions it hands back:

    ("record", capture_id, state, trigger, alarm_id)  write the capture's state record
    ("restore", capture_id, trigger, alarm_id)        boot: hand the capture back to the
                                                      policy (alarm_id None: held, for
                                                      the policy to decide at once)
    ("queued", capture_id, why, times)                it waits to be published (wake the
                                                      uplink); why: claimed, boot,
                                                      receipt_timeout, resend
    ("delivered", capture_id, frames)                 the ARC stored exactly these bytes:
                                                      shred it on flash
    ("refused", capture_id)                           the ARC refuses exactly these bytes
                                                      for good: shred it on flash
    ("shred", capture_id)                             its hold window ended with no alarm
    ("ignored", capture_id)                           a receipt that proves nothing
    ("dropped", capture_id)                           its key slot was found erased or
                                                      corrupt while publishing: nothing
                                                      can open it any more (key_slot_lost)
    ("discard", capture_id)                           boot: a cover twin a power cut left
                                                      on the flash; it holds no photo

A capture the delivery knows of is in exactly one phase:

    SEALED      whole on flash, the policy has not decided yet (record: capturing)
    HELD        no alarm: kept until the policy ends its hold window (record: held)
    QUEUED      an alarm claimed it; it waits its turn for the uplink (record: sending)
    PUBLISHING  its chunks are on their way to the broker
    AWAITING    every chunk was acknowledged; the ARC's receipt is due by a deadline

The moves between them are the table TRANSITIONS; nothing else changes a phase. A capture
leaves in one of three ways, and only these destroy it on the device:

    delivered   a "stored" receipt whose SHA-256 is that of the bytes it published
    refused     a "rejected" receipt whose SHA-256 is that of the bytes it published
    shred       the end of the hold window (or the boot that ended it, by the policy's
                power_loss rule), and only while no alarm has claimed it

Every other receipt proves nothing about the bytes on flash: one for an unknown capture,
for other bytes, or one that arrives while the capture is not awaiting a receipt is
ignored. A "resend" receipt, or a "rejected" one for other bytes, queues the capture again.
A receipt that overtakes the last acknowledgements of its own capture (the gateway stored
it before the PUBACKs came back) is kept and applied when the publication completes.

A capture awaiting a receipt past its deadline is queued again: after 1, 2, 4, 8, then
every 16 receipt timeouts, never more often, because resending a whole capture every 30 s
to a gateway that stays silent would pile copies up at the broker and eat a slow link. The
ARC deduplicates by capture id, and a capture is always published again as the same bytes
under the same capture id and alarm id, so a resend is stored once.

Time is the transport clock (milliseconds that never run faster than the network), not
the world clock of the hold window: the agent passes it in.

Reboot rules (BOOT_RULES). After a reboot the records on flash are all that is left. A
capture recorded as claimed by an alarm ("sending", or "capturing" with an alarm id: the
series was claimed while it was being taken) is queued again. Every other whole capture
comes back HELD only for the moment it takes the policy to decide it, in the same boot and
before anything is published (policy.POWER_LOSS, the `power_loss` trigger): an alarm claims
it ("claim": it goes to the ARC) or it is shredded ("hold_ended": the boot ended its hold
window). It never gets a new hold window: its deadline ran on the uptime clock, which did
not survive the reboot, and a window restarted at every boot would let reboots keep
household photos for ever. So no capture is held across two boots. What was awaiting a
receipt is published again; the ARC stores it once and receipts it again.

Covers (policy.py, "Duress that cannot be seen, and cover") go through this lifecycle like
any capture an alarm claimed: recorded with the alarm id they are sent under from their
first byte, queued when sealed, destroyed only on their receipt, sent again after a reboot.
A twin (a cover sealed only for its timing, recorded with no alarm id) never enters it: the
agent shreds it with its series, after the series' receipt, and a boot that finds one discards it
(COVER_BOOT_RULE) instead of handing it to the policy, where it would count as held photos
and raise a power_loss alarm for nothing.
"""

from binascii import unhexlify

from vericam.envelope import RECEIPT_REJECTED, RECEIPT_RESEND, RECEIPT_STORED
from vericam.policy import COVER

# Phases of a capture in RAM.
SEALED = "sealed"
HELD = "held"
QUEUED = "queued"
PUBLISHING = "publishing"
AWAITING = "awaiting"

# The "s" of a capture's state record on flash (vault.py).
RECORD_CAPTURING = "capturing"
RECORD_HELD = "held"
RECORD_SENDING = "sending"

# (phase, event) -> the phase after it; None: the capture is gone from the device.
TRANSITIONS = {
    (SEALED, "hold"): HELD,
    (SEALED, "claim"): QUEUED,
    (HELD, "claim"): QUEUED,
    (HELD, "hold_ended"): None,
    (QUEUED, "publish"): PUBLISHING,
    (PUBLISHING, "published"): AWAITING,
    (PUBLISHING, "publish_failed"): QUEUED,
    (AWAITING, "stored"): None,
    (AWAITING, "rejected"): None,
    (AWAITING, "resend"): QUEUED,
    (AWAITING, "receipt_timeout"): QUEUED,
    # Its key slot went bad while it was being published: no key in existence opens it, for
    # the ARC neither, so there is nothing left to deliver (the agent reports key_slot_lost).
    (PUBLISHING, "key_lost"): None,
}

# (record state on flash, has an alarm id) -> phase after a reboot; anything else is HELD,
# and the policy claims or shreds it in the same boot (see "Reboot rules" above).
BOOT_RULES = {
    (RECORD_SENDING, True): QUEUED,
    (RECORD_CAPTURING, True): QUEUED,
}

# (trigger, has an alarm id) -> what a boot does with it, before BOOT_RULES: a cover without
# an alarm id is a twin, and holds nothing anyone needs.
COVER_BOOT_RULE = {(COVER, False): "discard"}

DEFAULT_RECEIPT_TIMEOUT_MS = 30000
# A silent gateway gets the capture again after 1, 2, 4, 8, then every 16 receipt timeouts.
MAX_BACKOFF_SHIFT = 4

# Fields of a capture's entry (a list, so that a move updates it in place).
_PHASE = 0
_TRIGGER = 1
_ALARM = 2
_DIGEST = 3     # SHA-256 of the bytes last published, None before the first publication
_DEADLINE = 4   # when the receipt is due (transport ms), while AWAITING
_TIMEOUTS = 5   # receipt timeouts so far: each doubles the next wait, up to 16 times
_EARLY = 6      # a receipt that came while PUBLISHING: (status, frames, sha256)


class Delivery:
    """The sans-IO delivery lifecycle of the sealed captures on one device."""

    def __init__(self, receipt_timeout_ms=DEFAULT_RECEIPT_TIMEOUT_MS):
        if receipt_timeout_ms <= 0:
            raise ValueError("receipt_timeout_ms must be positive")
        self.receipt_timeout_ms = receipt_timeout_ms
        # capture_id -> [phase, trigger, alarm_id, digest, deadline, timeouts, early]
        self.captures = {}
        self._queue = []  # capture ids in QUEUED phase, in the order they are published

    # -- inputs: boot and the policy's decisions --------------------------------------------

    def on_boot(self, found):
        """The whole captures the vault found on flash, [(capture_id, record)], after a reboot."""
        actions = []
        for cid, record in found:
            trigger = record.get("t")
            alarm_hex = record.get("a")
            alarm_id = unhexlify(alarm_hex) if alarm_hex is not None else None
            if COVER_BOOT_RULE.get((trigger, alarm_id is not None)) == "discard":
                actions.append(("discard", cid))
                continue
            phase = BOOT_RULES.get((record.get("s"), alarm_id is not None), HELD)
            if phase == QUEUED:
                self.captures[cid] = [QUEUED, trigger, alarm_id, None, 0, 0, None]
                self._queue.append(cid)
                actions.append(("record", cid, RECORD_SENDING, trigger, alarm_id))
                actions.append(("restore", cid, trigger, alarm_id))
                actions.append(("queued", cid, "boot", 0))
            else:
                self.captures[cid] = [HELD, trigger, None, None, 0, 0, None]
                actions.append(("record", cid, RECORD_HELD, trigger, None))
                actions.append(("restore", cid, trigger, None))
        return actions

    def on_capturing(self, cid, trigger, alarm_id):
        """A series is being taken for an alarm: record the claim, so a reboot still sends it."""
        if alarm_id is None:
            return []
        return [("record", cid, RECORD_CAPTURING, trigger, alarm_id)]

    def on_sealed(self, cid, trigger):
        """The capture is whole on flash; the policy's decision (hold or claim) follows."""
        if cid not in self.captures:
            self.captures[cid] = [SEALED, trigger, None, None, 0, 0, None]
        return []

    def on_held(self, cid):
        """The policy keeps it for the hold window: no alarm yet."""
        entry = self._move(cid, "hold")
        if entry is None:
            return []
        return [("record", cid, RECORD_HELD, entry[_TRIGGER], None)]

    def on_claimed(self, cid, alarm_id):
        """An alarm claimed the capture: it goes to the ARC with that alarm."""
        entry = self._move(cid, "claim")
        if entry is None:
            return []
        entry[_ALARM] = alarm_id
        self._queue.append(cid)
        return [("record", cid, RECORD_SENDING, entry[_TRIGGER], alarm_id),
                ("queued", cid, "claimed", 0)]

    def on_hold_ended(self, cid):
        """The policy's hold window ended. Only a capture no alarm has claimed is shredded."""
        if self._move(cid, "hold_ended") is None:
            return []
        return [("shred", cid)]

    # -- inputs: the uplink -----------------------------------------------------------------

    def next_capture(self):
        """The next capture to publish, (capture_id, alarm_id), or None: it is now PUBLISHING."""
        while self._queue:
            cid = self._queue.pop(0)
            entry = self._move(cid, "publish")
            if entry is not None:
                return cid, entry[_ALARM]
        return None

    def on_published(self, cid, sha256, now_ms):
        """Every chunk of the capture was acknowledged; `sha256` is of the bytes published."""
        entry = self._move(cid, "published")
        if entry is None:
            return []
        entry[_DIGEST] = sha256
        entry[_DEADLINE] = now_ms + (self.receipt_timeout_ms << min(entry[_TIMEOUTS], MAX_BACKOFF_SHIFT))
        early = entry[_EARLY]
        if early is None:
            return []
        entry[_EARLY] = None
        return self.on_receipt(cid, early[0], early[1], early[2])

    def on_publish_failed(self, cid):
        """The publication broke off (link down, broker gone): it goes first again."""
        if self._move(cid, "publish_failed") is None:
            return []
        self._queue.insert(0, cid)
        return []

    def on_key_lost(self, cid):
        """Publishing found the capture's key slot erased or corrupt: it can never be opened."""
        return [("dropped", cid)] if self._move(cid, "key_lost") is not None else []

    def on_receipt(self, cid, status, frames, sha256):
        """A receipt from the ARC (PROTOCOL section 8)."""
        entry = self.captures.get(cid)
        if entry is not None and entry[_PHASE] == PUBLISHING:
            entry[_EARLY] = (status, frames, sha256)
            return []
        if entry is None or entry[_PHASE] != AWAITING:
            return [("ignored", cid)] if status == RECEIPT_STORED else []
        exact = entry[_DIGEST] == sha256
        if status == RECEIPT_STORED:
            if not exact:
                return [("ignored", cid)]  # not for the bytes sent: its deadline still runs
            self._move(cid, "stored")
            return [("delivered", cid, frames)]
        if status == RECEIPT_REJECTED and exact:
            # The ARC refuses these exact bytes for good (a bad capture, or one past its
            # retention): keeping them would only fill the flash. They are sealed.
            self._move(cid, "rejected")
            return [("refused", cid)]
        if status != RECEIPT_RESEND and status != RECEIPT_REJECTED:
            return []
        self._move(cid, "resend")
        self._queue.append(cid)
        return [("queued", cid, "resend", entry[_TIMEOUTS])]

    def on_tick(self, now_ms):
        """Time passed: a capture whose receipt is overdue is queued to be published again."""
        actions = []
        for cid, entry in self.captures.items():
            if entry[_PHASE] == AWAITING and now_ms >= entry[_DEADLINE]:
                entry[_TIMEOUTS] += 1
                self._move(cid, "receipt_timeout")
                self._queue.append(cid)
                actions.append(("queued", cid, "receipt_timeout", entry[_TIMEOUTS]))
        return actions

    # -- queries ----------------------------------------------------------------------------

    def next_deadline(self):
        """The earliest receipt deadline (transport ms), or None when no receipt is due."""
        best = None
        for entry in self.captures.values():
            if entry[_PHASE] == AWAITING and (best is None or entry[_DEADLINE] < best):
                best = entry[_DEADLINE]
        return best

    # -- internals --------------------------------------------------------------------------

    def _move(self, cid, event):
        """Apply `event` to the capture per TRANSITIONS: its entry, or None if not allowed.

        A move the table lacks changes nothing: a late or repeated event (the policy's hold
        window ending for a capture an alarm has claimed, say) never destroys a capture.
        """
        entry = self.captures.get(cid)
        if entry is None:
            return None
        key = (entry[_PHASE], event)
        if key not in TRANSITIONS:
            return None
        after = TRANSITIONS[key]
        if after is None:
            del self.captures[cid]
        else:
            entry[_PHASE] = after
        return entry
