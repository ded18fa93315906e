"""Every trigger behaves as configured: on/off, frames per series, interval, and whether it sends to the ARC.

One device on real MicroPython, a real Mosquitto and the gateway process, with a trigger
configuration unlike the defaults; panel events are played one after the other and the
outcome is read where a user would look: the camera, the ARC's store and the raw flash.
"""

import time

import pytest

from simulator.flash import vault_listing
from simulator.stack import Stack

DEVICE = "trig-1"
TRIGGERS = {
    "panic": {"enabled": False},                                          # off: no photo at all
    "sos": {"enabled": True, "frames": 2, "interval_ms": 600},            # 2 frames, 0.6 s apart, sent
    "smoke": {"enabled": True, "frames": 1},                              # 1 frame, sent (the default)
    "tamper": {"enabled": True, "frames": 1, "sends": False},             # photographed, never sent
    "disarm": {"enabled": True, "frames": 2, "interval_ms": 0},           # held, then shredded
    "intrusion": {"enabled": False},
}
HOLD_MS = 1500


@pytest.fixture
def stack(tmp_path):
    with Stack(tmp_path / "run") as s:
        yield s


def _frames(dev, trigger):
    return [i for t, i, _ in dev.frames if t == trigger]


def test_each_trigger_takes_sends_or_shreds_as_configured(stack):
    dev = stack.add_device(DEVICE, triggers=TRIGGERS, hold_window_ms=HOLD_MS)
    dev.boot()
    dev.wait_trace("online", timeout=20)

    # A disabled trigger raises its alarm but takes no photo.
    dev.panel("panic")
    dev.wait_trace("alarm", timeout=10)

    # SOS: 2 frames at least 0.6 s apart, delivered to the ARC.
    dev.panel("sos")
    dev.wait_trace("receipt", count=1, timeout=30)
    assert _frames(dev, "sos") == [0, 1]
    sos_times = [t for (trig, _i, _j), t in zip(dev.frames, dev.frame_times) if trig == "sos"]
    assert sos_times[1] - sos_times[0] >= 0.6, "the configured interval between frames was not kept"

    # Smoke: 1 frame, delivered.
    dev.panel("smoke")
    dev.wait_trace("receipt", count=2, timeout=30)

    # Tamper with sends = false: photographed, held, shredded at the end of the hold window.
    since = len(dev.traces)
    dev.panel("tamper")
    dev.wait_trace("shredded", since=since, timeout=HOLD_MS / 1000 + 15)

    # Disarm: 2 frames, held and shredded (no alarm follows).
    since = len(dev.traces)
    dev.panel("disarmed", slot=3)
    dev.wait_trace("shredded", since=since, timeout=HOLD_MS / 1000 + 15)
    time.sleep(0.3)

    assert _frames(dev, "panic") == [] and _frames(dev, "intrusion") == []
    assert _frames(dev, "smoke") == [0]
    assert _frames(dev, "tamper") == [0]
    assert _frames(dev, "disarm") == [0, 1]

    images = stack.images_at_arc(DEVICE)
    by_trigger = {}
    for row in images:
        by_trigger[row["trigger"]] = by_trigger.get(row["trigger"], 0) + 1
    assert by_trigger == {"sos": 2, "smoke": 1}, f"the ARC holds {by_trigger}"

    with stack.store() as s:
        alarms = {a.get("code") for a in s.alarms.list(DEVICE)}
    assert {"panic", "sos", "smoke", "tamper"} <= alarms  # every alarm is logged, photo or not

    dev.stop()
    assert vault_listing(dev.flash_path) == {"captures": [], "states": [], "debris": []}
