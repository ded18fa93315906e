"""A disarm with the duress code is a disarm at the panel and a silent alarm: photographed, and invisible on the wire.

Rule 1 photographs whoever disarms at the panel; rule 3 sends an alarm's photos and those of
its hold window; rule 8 says the wire must not tell a duress disarm from a normal one. So the
policy reports a duress disarm as a `disarmed` event like any disarm (with `duress` and the
alarm id inside), and with cover on every disarm ends in one upload of the disarm series'
shape: the duress series itself, or, after a normal disarm, a cover. The same checks run on
CPython and on the real MicroPython unix port, where the policy runs on the device.
"""

import json
import sys
import textwrap

import pytest

from simulator.mpy import FIRMWARE_DIR, run_micropython

sys.path.insert(0, str(FIRMWARE_DIR))

from vericam.policy import CapturePolicy, default_cover, trigger_table  # noqa: E402

HOLD = 300_000

# Plays arm, then a disarm (the duress code, or a user's), the series sealed; prints what the
# device reports and what leaves it.
PLAY = '''
from vericam.policy import CapturePolicy

def play(triggers, cover=None, event="duress_disarm"):
    ids = iter(range(1, 100))
    p = CapturePolicy(triggers, %d, new_id=lambda n: next(ids).to_bytes(n, "big"), cover=cover)
    p.on_panel("armed", 0, slot=1, mode="away")
    actions = p.on_panel(event, 40000, slot=1)
    alarms = [a for a in actions if a[0] == "alarm"]
    reports = [a[1] for a in actions if a[0] == "report"]
    captures = [a for a in actions if a[0] == "capture"]
    sent, covers = [], []
    for i, cap in enumerate(captures):
        for a in p.on_captured(cap[1], bytes([i]), 43000):
            if a[0] == "send":
                sent.append((cap[2], cap[3], a[2] == alarms[0][1]))
            elif a[0] == "cover":
                # (sent under the alarm id the disarmed event named, or a twin)
                covers.append("twin" if a[2] is None else a[2] == reports[0]["alarm_id"])
    return {
        "alarm_triggers": [a[2] for a in alarms],
        "reports": [(r["kind"], r.get("duress"), sorted(r), r.get("alarm_id") == (alarms[0][1] if alarms else None))
                    for r in reports],
        "series": [(c[2], c[3], c[4]) for c in captures],
        "sent": sent,
        "covers": covers,
        "cover_on": p.cover,
    }
''' % HOLD

DISARMED = ["alarm_id", "duress", "kind", "slot"]  # the fields of every disarmed event
DURESS_REPORT = [("disarmed", True, DISARMED, True)]

CASES = [
    # duress photos off: the disarm series is taken, and sent with the duress alarm (cover
    # on by default: those photos leave, so they are hidden, behind a twin)
    ({"disarm": {"enabled": True, "frames": 2}, "duress": {"enabled": False}}, None,
     {"alarm_triggers": ["duress"], "reports": DURESS_REPORT, "series": [("disarm", 2, 1000)],
      "sent": [("disarm", 2, True)], "covers": ["twin"], "cover_on": True}),
    # the same with cover off: as before issue 13, no twin
    ({"disarm": {"enabled": True, "frames": 2}, "duress": {"enabled": False}}, False,
     {"alarm_triggers": ["duress"], "reports": DURESS_REPORT, "series": [("disarm", 2, 1000)],
      "sent": [("disarm", 2, True)], "covers": [], "cover_on": False}),
    # duress photos on, cover off: its own series as configured, sent with the alarm
    ({"disarm": {"enabled": True, "frames": 2}, "duress": {"enabled": True, "frames": 3, "interval_ms": 500}}, False,
     {"alarm_triggers": ["duress"], "reports": DURESS_REPORT, "series": [("duress", 3, 500)],
      "sent": [("duress", 3, True)], "covers": [], "cover_on": False}),
    # duress photos on, cover on (the default): the duress series in the disarm series' shape,
    # or its size and timing would give it away; sent after a twin, when a cover would go
    ({"disarm": {"enabled": True, "frames": 2}, "duress": {"enabled": True, "frames": 3, "interval_ms": 500}}, None,
     {"alarm_triggers": ["duress"], "reports": DURESS_REPORT, "series": [("duress", 2, 1000)],
      "sent": [("duress", 2, True)], "covers": ["twin"], "cover_on": True}),
    # both off: no photo, nothing to hide, but the silent alarm is still reported (as a disarm)
    ({"disarm": {"enabled": False}, "duress": {"enabled": False}}, None,
     {"alarm_triggers": ["duress"], "reports": DURESS_REPORT, "series": [], "sent": [], "covers": [],
      "cover_on": False}),
]
IDS = ["duress-off", "duress-off-no-cover", "duress-on-no-cover", "duress-on", "both-off"]

# A normal disarm on the same sites: the same event fields, and a cover where a duress
# disarm's photos would have left.
NORMAL = [
    ({"disarm": {"enabled": True, "frames": 2}, "duress": {"enabled": False}}, None,
     {"alarm_triggers": [], "reports": [("disarmed", False, DISARMED, False)], "series": [("disarm", 2, 1000)],
      "sent": [], "covers": [True], "cover_on": True}),
    ({"disarm": {"enabled": True, "frames": 2}, "duress": {"enabled": False}}, False,
     {"alarm_triggers": [], "reports": [("disarmed", False, DISARMED, False)], "series": [("disarm", 2, 1000)],
      "sent": [], "covers": [], "cover_on": False}),
]


def _play_here(triggers, cover=None, event="duress_disarm"):
    scope = {}
    exec(PLAY, scope)
    return scope["play"](triggers, cover, event)


def _normal(result):
    return json.loads(json.dumps(result))


@pytest.mark.parametrize("triggers,cover,want", CASES, ids=IDS)
def test_a_duress_disarm_is_photographed_and_the_photos_go_with_the_silent_alarm(triggers, cover, want):
    assert _normal(_play_here(triggers, cover)) == _normal(want)


@pytest.mark.parametrize("triggers,cover,want", NORMAL, ids=["cover", "no-cover"])
def test_a_normal_disarm_reports_the_same_fields_and_sends_a_cover_of_its_series(triggers, cover, want):
    assert _normal(_play_here(triggers, cover, "disarmed")) == _normal(want)


def test_the_same_holds_on_real_micropython(tmp_path):
    played = [(t, c, "duress_disarm") for t, c, _ in CASES] + [(t, c, "disarmed") for t, c, _ in NORMAL]
    script = tmp_path / "duress.py"
    script.write_text(PLAY + textwrap.dedent('''
        import json
        for triggers, cover, event in %s:
            print(json.dumps(play(triggers, cover, event)))
    ''' % repr(played)))
    done = run_micropython(script, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    got = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert got == [_normal(want) for _, _, want in CASES + NORMAL]


@pytest.mark.parametrize("triggers", [None, {"duress": {"enabled": False}}, {"duress": {"frames": 5, "interval_ms": 200}},
                                      {"disarm": {"frames": 1, "interval_ms": 0}}])
def test_with_cover_a_duress_and_a_normal_disarm_leave_the_same_trace_on_the_device_s_way_out(triggers):
    # What decides the wire: the event's fields, the series' frames and interval, and one
    # delivery of that series' shape at the moment it is sealed (a cover, or the series
    # after a twin). Only the ARC, which opens the event and the release record, tells them apart.
    def way_out(event):
        ids = iter(range(1, 100))
        p = CapturePolicy(triggers, HOLD, new_id=lambda n: next(ids).to_bytes(n, "big"))
        actions = p.on_panel(event, 40_000, slot=3)
        (report,) = [a[1] for a in actions if a[0] == "report"]
        (capture,) = [a for a in actions if a[0] == "capture"]
        after = p.on_captured(capture[1], b"series", 43_000)
        uploads = [a for a in after if a[0] == "send" or (a[0] == "cover" and a[2] is not None)]
        sealed_beside = [a for a in after if a[0] == "cover"]
        return sorted(report), report["slot"], capture[3:], len(uploads), len(sealed_beside)

    assert way_out("duress_disarm") == way_out("disarmed")


def test_cover_is_on_by_default_exactly_when_a_duress_disarm_sends_photos():
    assert default_cover(trigger_table(None))
    assert default_cover(trigger_table({"duress": {"enabled": False}}))  # the disarm series goes with the alarm
    assert not default_cover(trigger_table({"duress": {"sends": False}}))  # nothing leaves: nothing to hide
    assert not default_cover(trigger_table({"disarm": {"enabled": False}}))  # no disarm series to copy
    assert CapturePolicy(None, HOLD, cover=False).cover is False
    # Asked for without disarm photos, it has nothing to copy and sends nothing.
    p = CapturePolicy({"disarm": {"enabled": False}}, HOLD, cover=True, new_id=lambda n: b"\x01" * n)
    assert not [a for a in p.on_panel("disarmed", 0, slot=1) if a[0] in ("capture", "cover")]


def test_a_plain_disarm_still_sends_nothing_on_its_own():
    p = CapturePolicy({"disarm": {"enabled": True, "frames": 2}}, HOLD, new_id=lambda n: b"\x01" * n)
    actions = p.on_panel("disarmed", 0, slot=1)
    assert not [a for a in actions if a[0] == "alarm"]
    (cap,) = [a for a in actions if a[0] == "capture"]
    decided = p.on_captured(cap[1], b"c", 2000)
    assert decided[0][0] == "keep"
    # Its cover carries random frames, not the photos: the photos stay held.
    assert not [a for a in decided if a[0] == "send"]
    assert p.captures[b"c"][0] == "held"
