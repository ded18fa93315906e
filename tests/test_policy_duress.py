"""A disarm with the duress code is a disarm at the panel and a silent alarm: the policy photographs it.

Rule 1 photographs whoever disarms at the panel; rule 3 sends an alarm's photos and those of
its hold window. The same check runs on CPython and on the real MicroPython unix port, where
the policy runs on the device.
"""

import sys
import json
import textwrap
from pathlib import Path

import pytest

from simulator.mpy import FIRMWARE_DIR, run_micropython

sys.path.insert(0, str(FIRMWARE_DIR))

from vericam.policy import CapturePolicy  # noqa: E402

HOLD = 300_000

# Plays arm, disarm with the duress code, the series sealed; prints what the ARC would get.
PLAY = '''
from vericam.policy import CapturePolicy

def play(triggers):
    ids = iter(range(1, 100))
    p = CapturePolicy(triggers, %d, new_id=lambda n: next(ids).to_bytes(n, "big"))
    p.on_panel("armed", 0, slot=1, mode="away")
    actions = p.on_panel("duress_disarm", 40000, slot=1)
    alarms = [a for a in actions if a[0] == "alarm"]
    reports = [a[1] for a in actions if a[0] == "report"]
    captures = [a for a in actions if a[0] == "capture"]
    sent = []
    for i, cap in enumerate(captures):
        for a in p.on_captured(cap[1], bytes([i]), 43000):
            if a[0] == "send":
                sent.append((cap[2], cap[3], a[2] == alarms[0][1]))
    return {
        "alarm_triggers": [a[2] for a in alarms],
        "codes": [r.get("code") for r in reports],
        "series": [(c[2], c[3]) for c in captures],
        "sent": sent,
    }
''' % HOLD

CASES = [
    # duress photos off: the disarm series is taken, and sent with the duress alarm
    ({"disarm": {"enabled": True, "frames": 2}, "duress": {"enabled": False}},
     {"alarm_triggers": ["duress"], "codes": ["duress"], "series": [("disarm", 2)], "sent": [("disarm", 2, True)]}),
    # duress photos on: its own series, sent with the alarm (no second, disarm series)
    ({"disarm": {"enabled": True, "frames": 2}, "duress": {"enabled": True, "frames": 3}},
     {"alarm_triggers": ["duress"], "codes": ["duress"], "series": [("duress", 3)], "sent": [("duress", 3, True)]}),
    # both off: no photo, but the silent alarm is still reported
    ({"disarm": {"enabled": False}, "duress": {"enabled": False}},
     {"alarm_triggers": ["duress"], "codes": ["duress"], "series": [], "sent": []}),
]


def _play_here(triggers):
    scope = {}
    exec(PLAY, scope)
    return scope["play"](triggers)


def _normal(result):
    return {k: [list(x) if isinstance(x, tuple) else x for x in v] for k, v in result.items()}


@pytest.mark.parametrize("triggers,want", CASES, ids=["duress-off", "duress-on", "both-off"])
def test_a_duress_disarm_is_photographed_and_the_photos_go_with_the_silent_alarm(triggers, want):
    assert _normal(_play_here(triggers)) == _normal(want)


def test_the_same_holds_on_real_micropython(tmp_path):
    script = tmp_path / "duress.py"
    script.write_text(PLAY + textwrap.dedent('''
        import json
        for triggers in %s:
            print(json.dumps(play(triggers)))
    ''' % repr([c[0] for c in CASES])))
    done = run_micropython(script, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    got = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert got == [_normal(want) for _, want in CASES]


def test_a_plain_disarm_still_sends_nothing_on_its_own():
    p = CapturePolicy({"disarm": {"enabled": True, "frames": 2}}, HOLD, new_id=lambda n: b"\x01" * n)
    actions = p.on_panel("disarmed", 0, slot=1)
    assert not [a for a in actions if a[0] == "alarm"]
    (cap,) = [a for a in actions if a[0] == "capture"]
    assert p.on_captured(cap[1], b"c", 2000)[0][0] == "keep"
