"""A world for the delivery lifecycle: the device's flash, the link, the broker and a deduplicating ARC.

`World.play(history)` drives firmware/vericam/delivery.py through one history of steps the
way the agent does, carries out its actions on a model flash, plays the ARC, and raises
`Broken` the moment one of the device's promises breaks:

  - a capture leaves the flash only on the ARC's receipt for exactly the bytes it sent
    ("stored" or "rejected" with their SHA-256), or at the end of its hold window when no
    alarm has claimed it;
  - a receipt for an unknown capture, or for other bytes, destroys nothing;
  - only a capture an alarm claimed is published, always as the same bytes under the same
    capture id and alarm id, so an ARC that deduplicates by capture id stores it once;
  - a claimed capture is never recorded on flash as held (a reboot would shred it);
  - after a reboot at any step, the records on flash give all of this back;
  - a boot never extends a hold window: every capture held when the power went is decided
    in that boot by the policy's power_loss rule (firmware/vericam/policy.py, the real
    one): claimed by a `power_loss` alarm, or shredded, as the device's configuration of
    the trigger says, and the ARC is told in a technical event. No capture is held across
    two boots;
  - a cover is delivered like any claimed capture, under the alarm id it was sealed for;
    a twin (a cover sealed only for its time) is never published, and a boot that finds
    one discards it without handing it to the policy (it is no held photo, and must not
    raise a power_loss alarm).

It then lets the link heal (every receipt arrives, every hold window ends) and checks that
every capture ended sent-and-receipted (or refused by the ARC) or shredded.

The same file runs on CPython (tests/test_delivery_properties.py, under hypothesis) and on
the MicroPython unix port (tests/firmware/delivery_replay.py), so the promises are checked
on the runtime the device has. A history is a list of steps, each a list (JSON-friendly):

  ["seal", claim, crash]       a series is sealed; claim: taken for an alarm; crash: the
                               power goes before the policy's decision is recorded
  ["cover", crash]             a cover is sealed and queued under the alarm id its disarm
                               named; crash: the power goes before it is whole
  ["twin", crash]              a twin is sealed, and later shredded by the agent with its
                               series; crash: the power goes before that
  ["alarm"]                    an alarm claims every held capture
  ["hold_end", k]              the hold window of the k-th capture ends (the policy's
                               tick; also tried on captures an alarm has claimed)
  ["take"]                     the uplink is free and asks for the next capture
  ["arc_gets", r]              every chunk of the capture being published reaches the
                               ARC; r == 0: the ARC finds it bad and refuses it
  ["acked", ok]                the publication ends: every PUBACK (ok) or a broken link
  ["receipt", j, dup]          the j-th receipt waiting at the broker reaches the device
                               (dup: the broker delivers it again later)
  ["lose", j]                  the j-th receipt waiting at the broker is lost
  ["forged", k, status, unknown]  a receipt for other bytes of the k-th capture (or for a
                               capture the device never had) reaches the device
  ["arc_resend", k]            the ARC asks for the k-th capture again
  ["tick", ms]                 transport time passes
  ["reboot"]                   the power goes and comes back

A world is played with one configuration of the power_loss trigger (POWER_LOSS_CONFIGS).
"""

import hashlib

from vericam.delivery import (Delivery, RECORD_CAPTURING, RECORD_HELD, RECORD_SENDING)
from vericam.policy import COVER, HELD, SENDING, TECHNICAL_POWER_LOSS, CapturePolicy
from vericam.envelope import RECEIPT_REJECTED, RECEIPT_RESEND, RECEIPT_STORED

RECEIPT_TIMEOUT_MS = 1000
# Enough healing rounds for the longest backoff (16 timeouts) and every queued capture.
SETTLE_ROUNDS = 200
SETTLE_TICK_MS = 16 * RECEIPT_TIMEOUT_MS + 1
# The device configurations of the power_loss trigger a world is played with: the default
# (a power_loss alarm sends what was held), an alarm without photos, and off.
POWER_LOSS_CONFIGS = (None, {"sends": False}, {"enabled": False})


class Broken(Exception):
    """One of the device's promises broke."""


def _hex(b):
    return "".join("%02x" % x for x in b)


def _sha(data):
    return hashlib.sha256(data).digest()


class World:
    def __init__(self, power_loss=None):
        self.power_loss = power_loss  # the device's configuration of the power_loss trigger
        self.now = 0
        self.flash = {}        # capture id -> [record state, trigger, alarm id]: its .st
        self.sealed = {}       # capture id -> the sealed bytes of its .cap
        self.order = []        # capture ids in the order they were sealed
        self.claimed = {}      # capture id -> the alarm that claimed it (the truth)
        self.policy_held = []  # what the policy holds (it shreds these at the hold end)
        self.arc_stored = {}   # capture id -> [bytes, alarm id, times stored]
        self.arc_refused = {}  # capture id -> bytes the ARC found bad
        self.arrivals = {}     # capture id -> [(sha256, alarm id)] of each whole arrival
        self.downlink = []     # receipts waiting at the broker: (capture id, status, frames, sha256)
        self.proof = {}        # capture id -> [(status, sha256)] receipts the device got
        self.gone = {}         # capture id -> how it left the flash
        self.publishing = None
        self.arrived = False   # the capture being published has reached the ARC
        self.resends = 0
        self.reboots = 0
        self.boot_claimed = 0  # held captures a boot's power_loss alarm claimed
        self.boot_shredded = 0  # held captures a boot shredded
        self.covers = set()    # capture ids of covers
        self.twins = set()     # capture ids of twins
        self._ids = 0
        self.delivery = None
        self._boot()

    # -- the agent's part: carrying out the delivery's actions ------------------------------

    def _do(self, actions, forged=False):
        for action in actions:
            kind, cid = action[0], action[1]
            if kind in ("delivered", "refused", "shred") and forged:
                raise Broken("a receipt for other bytes destroyed capture %s" % _hex(cid))
            if cid in self.gone and kind != "ignored":
                raise Broken("%s for capture %s, which already left the flash (%s)"
                             % (kind, _hex(cid), self.gone[cid]))
            if kind == "record":
                state, trigger, alarm = action[2], action[3], action[4]
                if cid in self.claimed and state == RECORD_HELD:
                    raise Broken("claimed capture %s recorded as held: a reboot would shred it" % _hex(cid))
                if state == RECORD_SENDING and self.claimed.get(cid) != alarm:
                    raise Broken("capture %s recorded as sending for the wrong alarm" % _hex(cid))
                self.flash[cid] = [state, trigger, alarm]
            elif kind == "discard":
                if cid not in self.twins or self.flash.get(cid, [None, None, 1])[2] is not None:
                    raise Broken("boot discarded capture %s, which is no twin" % _hex(cid))
                self._destroy(cid, kind)
            elif kind == "restore":
                alarm = action[3]
                if cid in self.twins:
                    raise Broken("twin %s handed to the policy at boot: it would count as held photos" % _hex(cid))
                if alarm is None:
                    if cid in self.claimed:
                        raise Broken("claimed capture %s came back from a reboot as held" % _hex(cid))
                    self.policy_held.append(cid)
                elif self.claimed.get(cid) != alarm:
                    raise Broken("capture %s came back from a reboot with the wrong alarm" % _hex(cid))
            elif kind == "queued":
                if cid not in self.claimed:
                    raise Broken("capture %s queued for the ARC without an alarm" % _hex(cid))
                if action[2] in ("receipt_timeout", "resend"):
                    self.resends += 1
            elif kind == "delivered":
                if (RECEIPT_STORED, _sha(self.sealed[cid])) not in self.proof.get(cid, ()):
                    raise Broken("capture %s deleted without a stored receipt for its bytes" % _hex(cid))
                if self.arc_stored.get(cid, [None])[0] != self.sealed[cid]:
                    raise Broken("capture %s deleted but the ARC does not hold its bytes" % _hex(cid))
                self._destroy(cid, kind)
            elif kind == "refused":
                if (RECEIPT_REJECTED, _sha(self.sealed[cid])) not in self.proof.get(cid, ()):
                    raise Broken("capture %s deleted without a rejected receipt for its bytes" % _hex(cid))
                self._destroy(cid, kind)
            elif kind == "shred":
                if cid in self.claimed:
                    raise Broken("capture %s shredded although an alarm claimed it" % _hex(cid))
                self._destroy(cid, kind)
            elif kind != "ignored":
                raise Broken("unknown action %r" % (kind,))

    def _destroy(self, cid, how):
        if cid not in self.flash:
            raise Broken("capture %s destroyed twice" % _hex(cid))
        del self.flash[cid]
        self.gone[cid] = how
        if cid in self.policy_held:
            self.policy_held.remove(cid)

    def _boot(self):
        self.delivery = Delivery(RECEIPT_TIMEOUT_MS)
        self.now = 0  # the transport clock starts again with the device
        self.publishing = None
        self.policy_held = []
        found = []
        for cid in sorted(self.flash):
            state, trigger, alarm = self.flash[cid]
            record = {"s": state, "t": trigger, "ts": 0}
            if alarm is not None:
                record["a"] = _hex(alarm)
            found.append((cid, record))
        actions = self.delivery.on_boot(found)
        self._do(actions)
        # The agent hands every capture back to the policy, which decides the held ones now.
        triggers = None if self.power_loss is None else {"power_loss": self.power_loss}
        policy = CapturePolicy(triggers, 60000, new_id=self._new_id)
        for action in actions:
            if action[0] == "restore":
                policy.restore(action[1], HELD if action[3] is None else SENDING, action[2], action[3])
        held = list(self.policy_held)
        self._decide_at_boot(policy.on_boot(), held)
        if self.policy_held:
            raise Broken("%d captures held across a boot: a reboot extended their hold window"
                         % len(self.policy_held))
        for cid, record in self.flash.items():
            if record[0] != RECORD_SENDING or cid not in self.claimed:
                raise Broken("capture %s is on flash after a boot without an alarm's claim (%s)"
                             % (_hex(cid), record[0]))

    def _decide_at_boot(self, actions, held):
        """Carry out the policy's power_loss decision, as the agent does, and check it."""
        alarm = None
        reports = []
        for action in actions:
            kind = action[0]
            if kind == "alarm":
                if action[2] != "power_loss" or alarm is not None:
                    raise Broken("a boot raised %r" % (action[2],))
                alarm = action[1]
            elif kind == "report":
                reports.append(action[1])
            elif kind == "send":
                cid = action[1]
                if cid not in held or action[2] != alarm:
                    raise Broken("a boot sent capture %s, which it did not find held" % _hex(cid))
                self.claimed[cid] = alarm
                self.policy_held.remove(cid)
                self.boot_claimed += 1
                self._do(self.delivery.on_claimed(cid, alarm))
            elif kind == "shred":
                cid = action[1]
                if cid not in held:
                    raise Broken("a boot shredded capture %s, which it did not find held" % _hex(cid))
                self.boot_shredded += 1
                self._do(self.delivery.on_hold_ended(cid))
            else:
                raise Broken("a boot asked for %r" % (kind,))
        technical = [r for r in reports if r.get("kind") == "technical" and r.get("code") == TECHNICAL_POWER_LOSS]
        if held and (len(technical) != 1 or technical[0]["captures"] != len(held)):
            raise Broken("%d held captures decided at boot without telling the ARC" % len(held))
        if not held and (actions or alarm is not None):
            raise Broken("a boot with nothing held raised %r" % (actions,))

    def _new_id(self, n):
        self._ids += 1
        out = bytearray(n)
        v = self._ids
        for i in range(n):
            out[n - 1 - i] = v & 0xFF
            v >>= 8
        return bytes(out)

    def _pick(self, k):
        return self.order[k % len(self.order)] if self.order else None

    # -- the ARC's part ---------------------------------------------------------------------

    def _arc_receives(self, cid, alarm, data, refuse):
        digest = _sha(data)
        seen = self.arrivals.setdefault(cid, [])
        for earlier in seen:
            if earlier != (digest, alarm):
                raise Broken("capture %s reached the ARC as other bytes or for another alarm"
                             % _hex(cid))
        seen.append((digest, alarm))
        if cid in self.arc_stored:
            self.downlink.append((cid, RECEIPT_STORED, 2, digest))  # deduplicated: stored once
        elif refuse or cid in self.arc_refused:
            self.arc_refused[cid] = data
            self.downlink.append((cid, RECEIPT_REJECTED, 0, digest))
        else:
            self.arc_stored[cid] = [data, alarm, 1]
            self.downlink.append((cid, RECEIPT_STORED, 2, digest))

    def _receipt(self, receipt, forged=False):
        cid, status, frames, sha = receipt
        self.proof.setdefault(cid, []).append((status, sha))
        self._do(self.delivery.on_receipt(cid, status, frames, sha), forged)

    # -- steps ------------------------------------------------------------------------------

    def step(self, s):
        what = s[0]
        d = self.delivery
        if what == "seal":
            claim, crash = s[1], s[2]
            cid = self._new_id(16)
            trigger = "smoke" if claim else "disarm"
            alarm = self._new_id(8) if claim else None
            self.order.append(cid)
            self.flash[cid] = [RECORD_CAPTURING, trigger, None]  # Vault.begin
            if alarm is not None:
                self.claimed[cid] = alarm
            self._do(d.on_capturing(cid, trigger, alarm))
            self.sealed[cid] = b"sealed capture %d " % self._ids * 40
            self._do(d.on_sealed(cid, trigger))
            if crash:
                self.reboot()
            elif alarm is not None:
                self._do(d.on_claimed(cid, alarm))
            else:
                self._do(d.on_held(cid))
                self.policy_held.append(cid)
        elif what == "cover":
            # As the agent's _seal_cover: the slot and the record first (with the alarm id the
            # disarmed event named), the sealed bytes, then it is claimed and queued.
            cid = self._new_id(16)
            alarm = self._new_id(8)
            self.order.append(cid)
            self.covers.add(cid)
            self.claimed[cid] = alarm
            self.flash[cid] = [RECORD_CAPTURING, COVER, None]  # Vault.begin
            self._do(d.on_capturing(cid, COVER, alarm))
            if s[1]:
                del self.flash[cid]  # cut while sealing: vault.recover removes the .tmp
                self.gone[cid] = "never_whole"
                self.reboot()
            else:
                self.sealed[cid] = b"cover %d " % self._ids * 40
                self._do(d.on_sealed(cid, COVER))
                self._do(d.on_claimed(cid, alarm))
        elif what == "twin":
            cid = self._new_id(16)
            self.order.append(cid)
            self.twins.add(cid)
            self.flash[cid] = [RECORD_CAPTURING, COVER, None]  # Vault.begin, with no alarm id
            self.sealed[cid] = b"twin %d " % self._ids * 40
            if s[1]:
                self.reboot()  # whole on flash when the power went: the boot must discard it
            else:
                self._destroy(cid, "twin")  # the agent shreds it with its series
        elif what == "alarm":
            alarm = self._new_id(8)
            for cid in list(self.policy_held):
                self.claimed[cid] = alarm
                self.policy_held.remove(cid)
                self._do(d.on_claimed(cid, alarm))
        elif what == "hold_end":
            cid = self._pick(s[1])
            if cid is not None and cid not in self.gone:
                self._do(d.on_hold_ended(cid))
        elif what == "take":
            if self.publishing is None:
                nxt = d.next_capture()
                if nxt is not None:
                    cid, alarm = nxt
                    if cid in self.gone or cid not in self.claimed:
                        raise Broken("capture %s published without an alarm or after it left" % _hex(cid))
                    if alarm != self.claimed[cid]:
                        raise Broken("capture %s published for another alarm" % _hex(cid))
                    self.publishing = cid
                    self.arrived = False
        elif what == "arc_gets":
            if self.publishing is not None and not self.arrived:
                cid = self.publishing
                self.arrived = True
                self._arc_receives(cid, self.claimed[cid], self.sealed[cid], s[1] == 0)
        elif what == "acked":
            cid = self.publishing
            if cid is not None:
                self.publishing = None
                if s[1]:
                    self._do(d.on_published(cid, _sha(self.sealed[cid]), self.now))
                else:
                    self._do(d.on_publish_failed(cid))
        elif what == "receipt":
            if self.downlink:
                j = s[1] % len(self.downlink)
                receipt = self.downlink[j] if s[2] else self.downlink.pop(j)
                self._receipt(receipt)
        elif what == "lose":
            if self.downlink:
                self.downlink.pop(s[1] % len(self.downlink))
        elif what == "forged":
            cid = self._pick(s[1])
            if cid is None or s[3]:
                cid = b"\xee" * 16
            other = _sha(b"other bytes " + cid)
            self._receipt((cid, s[2], 2, other), forged=True)
        elif what == "arc_resend":
            cid = self._pick(s[1])
            if cid is not None:
                self.downlink.append((cid, RECEIPT_RESEND, 0, bytes(32)))
        elif what == "tick":
            self.now += s[1]
            self._do(d.on_tick(self.now))
        elif what == "reboot":
            self.reboot()
        else:
            raise ValueError("unknown step %r" % (what,))

    def reboot(self):
        self.reboots += 1
        self._boot()

    # -- the whole history ------------------------------------------------------------------

    def settle(self):
        """The link heals: every receipt arrives, every hold window ends, time passes."""
        for _ in range(SETTLE_ROUNDS):
            if len(self.gone) == len(self.order):
                break
            while self.downlink:
                self._receipt(self.downlink.pop(0))
            self.step(["take"])
            self.step(["arc_gets", 1])
            self.step(["acked", True])
            while self.downlink:
                self._receipt(self.downlink.pop(0))
            for cid in list(self.policy_held):
                self._do(self.delivery.on_hold_ended(cid))
            self.step(["tick", SETTLE_TICK_MS])

    def check_the_end(self):
        for cid in self.order:
            how = self.gone.get(cid)
            if how is None:
                raise Broken("capture %s never left the device" % _hex(cid))
            if cid in self.twins:
                if how not in ("twin", "discard") or cid in self.arrivals:
                    raise Broken("twin %s ended %s" % (_hex(cid), how))
                continue
            if how == "never_whole":
                if cid not in self.covers or cid in self.arrivals:
                    raise Broken("capture %s lost before it was whole" % _hex(cid))
                continue
            if cid in self.claimed:
                if how == "delivered":
                    stored = self.arc_stored.get(cid)
                    if stored is None or stored[0] != self.sealed[cid] or stored[1] != self.claimed[cid]:
                        raise Broken("capture %s receipted but not stored as sent" % _hex(cid))
                    if stored[2] != 1:
                        raise Broken("capture %s stored %d times" % (_hex(cid), stored[2]))
                elif how != "refused":
                    raise Broken("claimed capture %s ended %s, not at the ARC" % (_hex(cid), how))
            elif how != "shred" or cid in self.arrivals:
                raise Broken("capture %s left the device without an alarm" % _hex(cid))
        if self.flash:
            raise Broken("records left on flash: %d" % len(self.flash))

    def summary(self):
        """What happened, in numbers that do not depend on the runtime's dict order."""
        return {"sealed": len(self.order), "claimed": len(self.claimed), "gone": len(self.gone),
                "covers": len(self.covers), "twins": len(self.twins),
                "reboots": self.reboots, "boot_claimed": self.boot_claimed, "boot_shredded": self.boot_shredded}


def play(history, power_loss=None):
    """Play one history, heal the link and check the end: the summary, or Broken.

    `power_loss` is the device's configuration of that trigger (POWER_LOSS_CONFIGS)."""
    world = World(power_loss)
    for s in history:
        world.step(s)
    world.settle()
    world.check_the_end()
    return world.summary()
