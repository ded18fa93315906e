"""The capture policy: which panel events take photos, and whether each series is held, sent or shredded.

Theory of operation
-------------------
This module does no I/O and reads no clock. The agent feeds it panel events and the time
(`on_panel`, `on_tick`), the captures a boot found on flash (`restore`, then `on_boot`) and
the results of the work it asked for (`on_captured`), and it hands back actions as tuples
for the agent to carry out:

    ("capture", ref, trigger, frames, interval_ms)   take a series of photos
    ("keep", capture_id, until_ms)                   keep it sealed on flash until then
    ("send", capture_id, alarm_id)                   deliver it to the ARC for that alarm
    ("shred", capture_id)                            destroy it on the device
    ("report", event_dict)                           an activity-log event for the ARC
    ("alarm", alarm_id, trigger)                     an alarm has fired
    ("cover", capture_id, alarm_id)                  seal a cover shaped like capture_id and send
                                                     it under alarm_id; alarm_id None: seal it
                                                     only, then shred it (a twin, see Cover)

Every capture is in exactly one of three states while the policy knows of it:

    CAPTURING  photos are being taken and sealed; the decision may still change
    HELD       sealed on flash, no alarm yet; shredded at its deadline
    SENDING    an alarm claimed it; it leaves the device only after the ARC's receipt

A capture leaves the policy as either "send" or "shred", never anything else, so no
series is left half-decided. HELD captures are shredded at the end of the hold window;
`next_deadline()` tells the agent when to call `on_tick` so that happens on time.

A boot never extends a hold window. The hold window runs on the uptime clock, which a boot
restarts, so a held capture cannot be given "the rest of its window" after one; giving it a
fresh window would let a reboot every few minutes keep household photos for ever. Instead
every capture still HELD when the power went is decided at once, in the boot that finds
it, by the trigger `power_loss` ("the power went, or the device was reset, inside a hold
window"): a power cut minutes after a disarm is what someone who disarms and then
sabotages the equipment does, and the seed policies send disarm photos on sabotage. The
rule is the table POWER_LOSS. With the default (enabled, sends) a `power_loss` alarm
claims the held photos and they go to the ARC; configured off, they are shredded at boot.
Either way the technical event `power_loss_in_hold_window` tells the ARC what was decided:
never a silent loss, never a silent keep. So a HELD capture spends at most one hold window
of uptime on the device, plus the one boot that ends it.

Which panel event does what is the table PANEL_EVENTS; what each trigger captures is the
per-device trigger configuration (DEFAULT_TRIGGERS, overridden by the device config).

Duress that cannot be seen, and cover
-------------------------------------
A duress disarm is reported exactly as a normal one: a `disarmed` event with `"duress"` and
an `"alarm_id"` (the duress alarm's, or a random one that names nothing), encrypted and
padded, so the event says nothing to anyone but the ARC, which raises the duress alarm from
it. Its photos would still show: a normal disarm's photos stay on the device, a duress
disarm's go to the ARC at once. So with cover on (device config `duress_cover`), every
disarm uploads one delivery of the same shape at the same moment, whatever happened:

    the disarm series is held (a normal disarm)   ("keep", ...) then ("cover", cid, alarm_id):
                                                  a cover of its shape goes under the id the
                                                  disarmed event named
    the series is claimed (duress, or an alarm    ("cover", cid, None) then ("send", cid, ...):
    while it was being taken)                     a twin of its shape is sealed first and
                                                  shredded, so the series leaves when a cover
                                                  would have

A cover is a real sealed capture of random frames with the frame sizes of the series it
stands for; its release record says it is cover, and the ARC discards it. The duress series
is taken with the disarm series' frame count and interval, or its size and timing would
tell it apart. Cover is on by default whenever a duress disarm sends photos (the duress
trigger on and sending, or off with disarm photos on, which then go with the alarm), and
needs disarm photos to copy: with the disarm trigger off there is no cover.
"""

CAPTURING = "capturing"
HELD = "held"
SENDING = "sending"

# Trigger codes on the wire (docs/PROTOCOL.md section 4).
TRIGGER_CODES = {
    "disarm": 1, "intrusion": 2, "smoke": 3, "duress": 4,
    "tamper": 5, "sos": 6, "panic": 7, "silent": 8,
    "cover": 9,  # a cover capture's (see Cover): random frames, never opened at the ARC
}
COVER = "cover"


# trigger: (enabled, frames, interval between frames in ms, sends to the ARC when it fires)
# The design's defaults (rule 1 and the reference privacy policy): photos on disarm and on
# smoke, and on every alarm a camera detector raises itself, intrusion, tamper and duress:
# "when the alarm is triggered, the camera detector's images are always sent to the ARC".
# SOS, panic and the removed wall unit (silent) are the panel's, and configuration adds
# them. Disarm photos are never sent on their own: only an alarm in the hold window sends
# them.
#
# `power_loss` takes no photos of its own (frames 0): it decides the photos a boot finds
# held (POWER_LOSS). Its photos are the disarm photos that were held when the power went,
# the ones that show who disarmed before the sabotage.
DEFAULT_TRIGGERS = {
    "disarm": (True, 3, 1000, False),
    "smoke": (True, 3, 2000, True),
    "intrusion": (True, 3, 1000, True),
    "duress": (True, 3, 1000, True),
    "tamper": (True, 2, 500, True),
    "sos": (False, 3, 1000, True),
    "panic": (False, 3, 1000, True),
    "silent": (False, 3, 1000, True),
    "power_loss": (True, 0, 0, True),
}

# Triggers that decide photos already taken and take none: only "enabled" and "sends" apply.
DECIDING_TRIGGERS = ("power_loss",)

# What a boot does with the captures it finds HELD, by the power_loss trigger's
# (enabled, sends): (whether the `power_loss` alarm fires, what becomes of those captures).
# An alarm without photos (sends = false) still tells the ARC of the sabotage; with the
# trigger off the photos are shredded. A capture is never held into a second boot.
POWER_LOSS = {
    (True, True): (True, "send"),
    (True, False): (True, "shred"),
    (False, True): (False, "shred"),
    (False, False): (False, "shred"),
}
TECHNICAL_POWER_LOSS = "power_loss_in_hold_window"

# Disarm photos are kept this long before they are shredded. Five minutes covers the case
# the design names, someone who disarms and then sabotages the camera or the panel (a
# tamper, a removed wall unit or an intrusion follows within minutes), while household
# photos of a normal homecoming are gone before anyone would think to look for them.
DEFAULT_HOLD_WINDOW_MS = 5 * 60 * 1000

# panel event: (trigger it captures for, whether it is an alarm, activity-log kind,
#               trigger it captures for instead when its own trigger is off)
#
# The fallback is for the duress disarm. It is a disarm at the panel, and rule 1 photographs
# whoever disarms there; it is also a silent duress alarm, reported as a disarm (see Cover). With the duress trigger on, its
# series is taken and sent with the alarm. With it off, the disarm series is taken instead,
# and because the duress alarm has fired, that series is sent with it, like every photo of
# the hold window (rule 3). Switching duress photos off must not also switch off the disarm
# photo of the one disarm that most needs it.
PANEL_EVENTS = {
    "armed": (None, False, "armed", None),
    "disarmed": ("disarm", False, "disarmed", None),
    "entry_delay": (None, False, None, None),
    "intrusion_alarm": ("intrusion", True, "alarm", None),
    "duress_disarm": ("duress", True, "disarmed", "disarm"),
    "tamper": ("tamper", True, "alarm", None),
    "sos": ("sos", True, "alarm", None),
    "panic": ("panic", True, "alarm", None),
    "silent_alarm": ("silent", True, "alarm", None),
    "smoke": ("smoke", True, "alarm", None),
    "alarm_cancelled": (None, False, "alarm_cancelled", None),
    # The panel's own settings changed (a user code added or removed, a zone edited): logged
    # with the user slot that did it, never the code itself.
    "config_changed": (None, False, "config", None),
}


class PolicyError(Exception):
    pass


def trigger_table(overrides=None):
    """The trigger configuration: the defaults with the device's overrides applied.

    `overrides` maps trigger -> dict with any of "enabled", "frames", "interval_ms", "sends"
    (for a trigger in DECIDING_TRIGGERS only "enabled" and "sends").
    """
    table = {}
    for name, row in DEFAULT_TRIGGERS.items():
        table[name] = row
    for name, cfg in (overrides or {}).items():
        if name not in table:
            raise PolicyError("unknown trigger %r in config; known: %s" % (name, ", ".join(sorted(table))))
        on, frames, interval, sends = table[name]
        on = bool(cfg.get("enabled", on))
        sends = bool(cfg.get("sends", sends))
        if name in DECIDING_TRIGGERS:
            for key in ("frames", "interval_ms"):
                if key in cfg:
                    raise PolicyError("trigger %s takes no photos of its own: it has no %s, only enabled and sends"
                                      % (name, key))
            table[name] = (on, frames, interval, sends)
            continue
        frames = int(cfg.get("frames", frames))
        interval = int(cfg.get("interval_ms", interval))
        if not 1 <= frames <= 10:
            raise PolicyError("trigger %s: frames must be 1..10, not %d" % (name, frames))
        if not 0 <= interval <= 60000:
            raise PolicyError("trigger %s: interval_ms must be 0..60000, not %d" % (name, interval))
        table[name] = (on, frames, interval, sends)
    return table


def default_cover(table):
    """Cover's default for a trigger table: on whenever a duress disarm sends photos (Cover)."""
    duress_on, _f, _i, duress_sends = table["duress"]
    return bool(table["disarm"][0] and (duress_sends if duress_on else True))


class CapturePolicy:
    """The sans-IO capture/hold/send/shred state machine of one device."""

    def __init__(self, triggers=None, hold_window_ms=DEFAULT_HOLD_WINDOW_MS, new_id=None, cover=None):
        self.triggers = trigger_table(triggers)
        if hold_window_ms < 0:
            raise PolicyError("hold window must not be negative")
        self.hold_window_ms = hold_window_ms
        self._new_id = new_id
        self._next_ref = 1
        # Cover (see Cover): None is the default, on when a duress disarm sends photos.
        self.cover = default_cover(self.triggers) if cover is None else bool(cover)
        # ref -> [trigger, alarm_id or None, cover]  (series being captured); cover is None,
        # or the alarm id its cover goes under if it is held (a disarm-shaped series)
        self.capturing = {}
        # capture_id -> [state, trigger, deadline_ms or alarm_id]
        self.captures = {}
        self.armed = None  # None, "away" or "home"

    # -- inputs -----------------------------------------------------------------------------

    def on_panel(self, event, now_ms, slot=None, mode=None):
        """A panel event happened at now_ms. Returns the actions to carry out."""
        row = PANEL_EVENTS.get(event)
        if row is None:
            raise PolicyError("unknown panel event %r" % (event,))
        trigger, is_alarm, log_kind, fallback = row
        actions = []
        if event == "armed":
            self.armed = mode or "away"
        elif event in ("disarmed", "duress_disarm"):
            self.armed = None
        alarm_id = None
        if is_alarm:
            alarm_id = self._id(8)
            actions.append(("alarm", alarm_id, trigger))
        named = None  # the alarm id a disarmed event names
        if log_kind:
            ev = {"kind": log_kind}
            if slot is not None:
                ev["slot"] = slot
            if mode is not None:
                ev["mode"] = mode
            if log_kind == "disarmed":
                # Every disarm says the same (see Cover): a normal one names a random alarm id.
                named = alarm_id if is_alarm else self._id(8)
                ev["duress"] = event == "duress_disarm"
                ev["alarm_id"] = named
            elif trigger and is_alarm:
                ev["code"] = trigger
                ev["alarm_id"] = alarm_id
            actions.append(("report", ev))
        if is_alarm:
            actions.extend(self._claim_held(alarm_id))
        if trigger:
            on, frames, interval, sends = self.triggers[trigger]
            claim = is_alarm and sends
            if not on and fallback:
                # The fallback series is taken at the moment of this alarm, so it belongs to
                # the alarm's hold window and goes with it whatever its own "sends" says.
                trigger = fallback
                on, frames, interval, sends = self.triggers[trigger]
                claim = is_alarm
            cover = None
            if named is not None and self.cover and self.triggers["disarm"][0]:
                # A disarm-shaped series: the disarm series' frames and interval, and one
                # delivery of its shape whatever becomes of it.
                cover = named
                frames, interval = self.triggers["disarm"][1:3]
            if on:
                ref = self._next_ref
                self._next_ref += 1
                self.capturing[ref] = [trigger, alarm_id if claim else None, cover]
                actions.append(("capture", ref, trigger, frames, interval))
        return actions

    def on_captured(self, ref, capture_id, now_ms):
        """The series `ref` is sealed on flash as capture_id. Decide what becomes of it."""
        entry = self.capturing.pop(ref, None)
        if entry is None:
            raise PolicyError("no capture in progress with ref %r" % (ref,))
        trigger, alarm_id, cover = entry
        if alarm_id is not None:
            self.captures[capture_id] = [SENDING, trigger, alarm_id]
            if cover is not None:
                # It leaves when a cover would have: after a twin of its shape is sealed.
                return [("cover", capture_id, None), ("send", capture_id, alarm_id)]
            return [("send", capture_id, alarm_id)]
        until = now_ms + self.hold_window_ms
        self.captures[capture_id] = [HELD, trigger, until]
        if cover is not None:
            return [("keep", capture_id, until), ("cover", capture_id, cover)]
        return [("keep", capture_id, until)]

    def on_capture_failed(self, ref):
        """The series `ref` could not be taken (camera fault, flash full): nothing to decide."""
        self.capturing.pop(ref, None)
        return []

    def on_tick(self, now_ms):
        """Time passed: shred every held capture whose hold window has ended."""
        actions = []
        for cid in list(self.captures):
            state, _trigger, until = self.captures[cid]
            if state == HELD and now_ms >= until:
                del self.captures[cid]
                actions.append(("shred", cid))
        return actions

    def on_delivered(self, capture_id):
        """The ARC receipted this capture; the agent has deleted it. Forget it."""
        self.captures.pop(capture_id, None)

    def restore(self, capture_id, state, trigger, alarm_id=None):
        """Re-enter a capture the vault found after a boot; call `on_boot` once all are back.

        A HELD capture comes back with its hold window over (deadline 0): a boot never
        extends a hold window, and `on_boot` decides it in this same boot.
        """
        if state == HELD:
            self.captures[capture_id] = [HELD, trigger, 0]
        elif state == SENDING and alarm_id is not None:
            self.captures[capture_id] = [SENDING, trigger, alarm_id]
        else:
            raise PolicyError("cannot restore a capture as %r (alarm %r): held, or sending with its alarm"
                              % (state, alarm_id))

    def on_boot(self):
        """The boot has restored every capture on flash: decide the held ones now (POWER_LOSS)."""
        held = [cid for cid, entry in self.captures.items() if entry[0] == HELD]
        if not held:
            return []
        on, _frames, _interval, sends = self.triggers["power_loss"]
        raise_alarm, fate = POWER_LOSS[(on, sends)]
        actions = []
        technical = {"kind": "technical", "code": TECHNICAL_POWER_LOSS, "captures": len(held),
                     "decision": "sent" if fate == "send" else "shredded"}
        if raise_alarm:
            alarm_id = self._id(8)
            technical["alarm_id"] = alarm_id
            actions.append(("alarm", alarm_id, "power_loss"))
            actions.append(("report", {"kind": "alarm", "code": "power_loss", "alarm_id": alarm_id}))
        if fate == "send":
            actions.extend(self._claim_held(alarm_id))
        else:
            for cid in held:
                del self.captures[cid]
                actions.append(("shred", cid))
        actions.append(("report", technical))
        return actions

    # -- queries ----------------------------------------------------------------------------

    def next_deadline(self):
        """The earliest hold-window end, or None when nothing is held."""
        best = None
        for state, _t, until in self.captures.values():
            if state == HELD and (best is None or until < best):
                best = until
        return best

    # -- internals --------------------------------------------------------------------------

    def _claim_held(self, alarm_id):
        actions = []
        for cid, entry in self.captures.items():
            if entry[0] == HELD:
                entry[0] = SENDING
                entry[2] = alarm_id
                actions.append(("send", cid, alarm_id))
        # Series still being taken for a non-alarm trigger join this alarm when sealed.
        for ref, entry in self.capturing.items():
            if entry[1] is None:
                entry[1] = alarm_id
        return actions

    def _id(self, n):
        if self._new_id is None:
            import os
            return os.urandom(n)
        return self._new_id(n)
