"""Properties of the capture policy under random panel events, time and reboots (hypothesis, on CPython).

The policy module is plain Python that runs unchanged on MicroPython (the end-to-end tests
run it there, and tests/test_delivery_properties.py replays its boot decisions there); here
it is driven through thousands of random histories in milliseconds.
"""

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))

from vericam.policy import (DEFAULT_TRIGGERS, HELD, PANEL_EVENTS, POWER_LOSS, SENDING,  # noqa: E402
                            TECHNICAL_POWER_LOSS, CapturePolicy, PolicyError, trigger_table)

ALL_ON = {name: {"enabled": True} for name in ("intrusion", "duress", "tamper", "sos", "panic", "silent")}
HOLD = 60_000
TICK = 1000  # the agent's tick task wakes at least once a second
# The device configurations of the power_loss trigger: the default (send), alarm only, off.
POWER_LOSS_CONFIGS = (None, {"sends": False}, {"enabled": False})
REBOOT = "reboot"  # not a panel event: the power goes and comes back

steps = st.lists(
    st.tuples(
        st.sampled_from(sorted(PANEL_EVENTS) + [REBOOT]),
        st.integers(min_value=0, max_value=90_000),   # ms before this event
        st.booleans(),                                 # does the pending capture finish before it?
        st.integers(min_value=0, max_value=120_000),   # a reboot: ms the device is off
    ),
    max_size=40,
)
configs = st.tuples(st.sampled_from([None, ALL_ON]), st.sampled_from(POWER_LOSS_CONFIGS)).map(
    lambda c: dict(c[0] or {}, **({"power_loss": c[1]} if c[1] is not None else {})) or None)


def play(history, triggers, cover=None):
    counter = iter(range(1, 10**6))
    new_id = lambda n: next(counter).to_bytes(n, "big")  # noqa: E731
    device = {"policy": CapturePolicy(triggers, HOLD, new_id=new_id, cover=cover)}
    now = 0
    pending = []            # refs being captured
    alarms = set()          # alarm ids that fired
    sent, shredded, held_until = {}, {}, {}
    kept_at = {}            # capture id -> when it was held
    decided_at = {}         # capture id -> when it was sent or shredded
    off_at_boot = {}        # capture id -> how long the device was off, if a boot decided it
    technical = []          # power_loss_in_hold_window events
    captured = 0
    series_of = {}          # ref -> the panel event it was taken for
    decisions = []          # (panel event, what the policy did when its series was sealed)
    cover_ids = []          # alarm ids covers were sent under
    reported = {}           # alarm id a disarmed event named -> its duress flag
    panel_event = [None]

    def apply(actions, at, boot_off=None):
        nonlocal captured
        for a in actions:
            if a[0] == "alarm":
                alarms.add(a[1])
            elif a[0] == "capture":
                pending.append(a[1])
                series_of[a[1]] = panel_event[0]
            elif a[0] == "cover":
                if a[2] is not None:
                    cover_ids.append(a[2])
            elif a[0] == "report" and a[1].get("kind") == "disarmed":
                reported[a[1]["alarm_id"]] = a[1]["duress"]
            elif a[0] == "send":
                assert a[1] not in sent and a[1] not in shredded, "a capture decided twice"
                assert a[2] in alarms, "sent without an alarm"
                sent[a[1]] = a[2]
            elif a[0] == "shred":
                assert a[1] not in sent and a[1] not in shredded, "a capture decided twice"
                if boot_off is None:
                    assert at >= held_until[a[1]], "shredded before its hold window ended"
                shredded[a[1]] = at
            elif a[0] == "keep":
                held_until[a[1]] = a[2]
                kept_at[a[1]] = at
            elif a[0] == "report" and a[1].get("code") == TECHNICAL_POWER_LOSS:
                technical.append(a[1])
            if a[0] in ("send", "shred") and a[1] in kept_at and a[1] not in decided_at:
                decided_at[a[1]] = at
                if boot_off is not None:
                    off_at_boot[a[1]] = boot_off

    def finish_one():
        nonlocal captured
        ref = pending.pop(0)
        captured += 1
        actions = device["policy"].on_captured(ref, ("cap", captured), now)
        decisions.append((series_of.pop(ref), [(a[0], "twin" if a[0] == "cover" and a[2] is None else "")
                                               for a in actions]))
        apply(actions, now)

    def reboot(off_ms):
        # The power goes: a series still being taken is lost (vault.recover removes it);
        # the sealed captures come back from their records, and the policy decides the
        # held ones at once.
        nonlocal now
        old = device["policy"]
        pending.clear()
        now += off_ms
        policy = device["policy"] = CapturePolicy(triggers, HOLD, new_id=new_id, cover=cover)
        held = 0
        for cid, (state, trigger, alarm_or_until) in old.captures.items():
            if state == HELD:
                held += 1
                policy.restore(cid, HELD, trigger)
            elif state == SENDING:
                policy.restore(cid, SENDING, trigger, alarm_or_until)
        before = len(technical)
        apply(policy.on_boot(), now, boot_off=off_ms)
        assert not [c for c, e in policy.captures.items() if e[0] == HELD], "a capture held across a boot"
        if held:
            assert len(technical) == before + 1 and technical[-1]["captures"] == held, "held photos decided silently"

    for event, gap, finish_first, off_ms in history:
        # Time passes in ticks of at most 1 s, as the agent's tick task does.
        end = now + gap
        while now < end:
            now = min(end, now + TICK)
            apply(device["policy"].on_tick(now), now)
        if finish_first and pending:
            finish_one()
        if event == REBOOT:
            reboot(off_ms)
        else:
            panel_event[0] = event
            apply(device["policy"].on_panel(event, now, slot=1), now)
    while pending:
        finish_one()
    # Run the clock past every hold window.
    end = now + HOLD + 2000
    while now < end:
        now += TICK
        apply(device["policy"].on_tick(now), now)
    return {"captured": captured, "sent": sent, "shredded": shredded, "held_until": held_until,
            "alarms": alarms, "kept_at": kept_at, "decided_at": decided_at, "off_at_boot": off_at_boot,
            "decisions": decisions, "cover_ids": cover_ids, "reported": reported,
            "cover": device["policy"].cover}


@settings(max_examples=400, deadline=None)
@given(steps, configs)
def test_every_capture_ends_sent_or_shredded_and_nothing_is_sent_without_an_alarm(history, triggers):
    out = play(history, triggers)
    decided = set(out["sent"]) | set(out["shredded"])
    assert len(decided) == out["captured"], "a capture was left half-decided"
    for cid, at in out["shredded"].items():
        if cid not in out["off_at_boot"]:
            assert at - out["held_until"][cid] <= TICK, "shredded more than 1 s after its hold window ended"


@settings(max_examples=400, deadline=None)
@given(steps, configs)
def test_no_reboot_sequence_keeps_a_held_capture_past_its_hold_window_and_one_boot(history, triggers):
    out = play(history, triggers)
    for cid, kept in out["kept_at"].items():
        # Held at `kept`; the ticks end it by HOLD (+ one tick), or the one boot that
        # interrupts it decides it as it comes up: never a second window, never a second boot.
        on_device = out["decided_at"][cid] - kept
        assert on_device <= HOLD + TICK + out["off_at_boot"].get(cid, 0), (cid, on_device)


@settings(max_examples=400, deadline=None)
@given(steps, configs, st.sampled_from([None, True, False]))
def test_every_disarm_series_leaves_one_delivery_of_its_shape_and_nothing_else_does(history, triggers, cover):
    # With cover on, a disarm's series, duress or not, ends in exactly one upload of its shape
    # when it is sealed: a cover while its photos stay held, or the photos themselves after a
    # twin. Whatever else happens around it (alarms, reboots, other series), no other series
    # gets a cover, and a cover goes under the alarm id its disarmed event named.
    out = play(history, triggers, cover)
    for event, did in out["decisions"]:
        covers = [d for d in did if d[0] == "cover"]
        if not (out["cover"] and event in ("disarmed", "duress_disarm")):
            assert not covers, (event, did)
            continue
        assert did in ([("keep", ""), ("cover", "")], [("cover", "twin"), ("send", "")]), (event, did)
    assert set(out["cover_ids"]) <= set(out["reported"]), "a cover under an alarm id no disarm named"
    assert len(out["cover_ids"]) == len(set(out["cover_ids"])), "two covers for one disarm"
    # A normal disarm's id names no alarm: its cover can never be mistaken for an alarm's photos.
    assert not {aid for aid, duress in out["reported"].items() if not duress} & out["alarms"]


@settings(max_examples=200, deadline=None)
@given(steps)
def test_without_an_alarm_nothing_is_ever_sent(history):
    calm = [s for s in history if s[0] != REBOOT and not PANEL_EVENTS[s[0]][1]]
    out = play(calm, ALL_ON)
    assert not out["alarms"] and not out["sent"]
    assert len(out["shredded"]) == out["captured"]


@settings(max_examples=200, deadline=None)
@given(steps)
def test_with_power_loss_off_reboots_send_nothing_and_shred_what_was_held(history):
    calm = [s for s in history if s[0] == REBOOT or not PANEL_EVENTS[s[0]][1]]
    out = play(calm, dict(ALL_ON, power_loss={"enabled": False}))
    assert not out["alarms"] and not out["sent"]
    assert len(out["shredded"]) == out["captured"]


@settings(max_examples=200, deadline=None)
@given(steps)
def test_by_default_a_reboot_in_the_hold_window_sends_the_held_photos_with_a_power_loss_alarm(history):
    calm = [s for s in history if s[0] == REBOOT or not PANEL_EVENTS[s[0]][1]]
    out = play(calm, None)
    # The only alarms are power_loss ones, and what they sent is exactly what boots found held.
    assert set(out["sent"]) == set(out["off_at_boot"])
    assert not set(out["shredded"]) & set(out["off_at_boot"])


def test_disarm_then_sabotage_sends_the_disarm_photos_with_the_alarm():
    ids = iter(range(1, 100))
    p = CapturePolicy(ALL_ON, HOLD, new_id=lambda n: next(ids).to_bytes(n, "big"))
    (cap,) = [a for a in p.on_panel("disarmed", 0, slot=2) if a[0] == "capture"]
    assert p.on_captured(cap[1], b"disarm-photos", 3000)[0][0] == "keep"
    actions = p.on_panel("tamper", 30_000)
    sends = [a for a in actions if a[0] == "send"]
    assert [a[1] for a in sends] == [b"disarm-photos"]
    assert any(a[0] == "capture" and a[2] == "tamper" for a in actions)


def test_disarm_photos_without_an_alarm_are_shredded_within_a_second_of_the_window():
    p = CapturePolicy(None, HOLD, new_id=lambda n: b"\x01" * n)
    (cap,) = [a for a in p.on_panel("disarmed", 0, slot=1) if a[0] == "capture"]
    p.on_captured(cap[1], b"c", 2500)
    assert p.on_tick(2500 + HOLD - 1) == []
    assert p.on_tick(2500 + HOLD) == [("shred", b"c")]
    assert p.next_deadline() is None


def test_the_camera_detectors_own_alarms_send_photos_by_default():
    # The reference privacy policy: when the alarm is triggered, the camera detector's images
    # are always sent. Disarm photos are held, smoke sends; the panel's SOS, panic and silent
    # alarm stay for the configuration to add.
    table = trigger_table(None)
    for name in ("intrusion", "tamper", "duress", "smoke"):
        assert table[name][0] and table[name][3], name
    assert table["disarm"][:2] == (True, 3) and not table["disarm"][3]
    assert table["smoke"] == (True, 3, 2000, True)
    for name in ("sos", "panic", "silent"):
        assert not table[name][0], name
    assert table["power_loss"][0] and table["power_loss"][3]

    ids = iter(range(1, 100))
    p = CapturePolicy(None, HOLD, new_id=lambda n: next(ids).to_bytes(n, "big"))
    p.on_panel("armed", 0, slot=2, mode="away")
    actions = p.on_panel("intrusion_alarm", 40_000)
    (alarm,) = [a for a in actions if a[0] == "alarm"]
    (cap,) = [a for a in actions if a[0] == "capture"]
    assert cap[2:4] == ("intrusion", 3)
    assert p.on_captured(cap[1], b"burglar", 43_000) == [("send", b"burglar", alarm[1])]


def test_the_power_loss_table_decides_every_configuration_at_boot():
    for (on, sends), (raises, fate) in POWER_LOSS.items():
        p = CapturePolicy({"power_loss": {"enabled": on, "sends": sends}}, HOLD, new_id=lambda n: b"\x07" * n)
        p.restore(b"held", HELD, "disarm")
        p.restore(b"sending", SENDING, "smoke", b"\x01" * 8)
        actions = p.on_boot()
        kinds = [a[0] for a in actions]
        assert ("alarm" in kinds) == raises, (on, sends)
        if fate == "send":
            assert ("send", b"held", b"\x07" * 8) in actions
        else:
            assert ("shred", b"held") in actions and "send" not in kinds
        (tech,) = [a[1] for a in actions if a[0] == "report" and a[1]["kind"] == "technical"]
        assert tech["code"] == TECHNICAL_POWER_LOSS and tech["captures"] == 1
        assert tech["decision"] == ("sent" if fate == "send" else "shredded")
        assert b"held" not in p.captures or p.captures[b"held"][0] == SENDING
        assert p.captures[b"sending"] == [SENDING, "smoke", b"\x01" * 8], "what an alarm claimed stays claimed"
        assert p.on_boot() == [], "a second call finds nothing held"


def test_a_boot_with_nothing_held_says_nothing():
    p = CapturePolicy(None, HOLD)
    p.restore(b"sending", SENDING, "smoke", b"\x01" * 8)
    assert p.on_boot() == []


def test_a_restored_held_capture_has_no_hold_window_left():
    # Even if nothing decided it at boot, the very next tick shreds it: no fresh window.
    p = CapturePolicy(None, HOLD)
    p.restore(b"held", HELD, "disarm")
    assert p.next_deadline() == 0
    assert p.on_tick(1) == [("shred", b"held")]


def test_power_loss_takes_no_photos_of_its_own():
    assert DEFAULT_TRIGGERS["power_loss"][1] == 0
    assert not [e for e, row in PANEL_EVENTS.items() if row[0] == "power_loss"]
    for key in ("frames", "interval_ms"):
        try:
            trigger_table({"power_loss": {key: 2}})
        except PolicyError as exc:
            assert "power_loss" in str(exc) and key in str(exc)
        else:
            raise AssertionError("power_loss accepted %s" % key)
    assert trigger_table({"power_loss": {"enabled": False}})["power_loss"] == (False, 0, 0, True)
