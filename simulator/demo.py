"""The end-to-end demo: a burglary on a simulated panel, to verification photos stored at the ARC."""

from __future__ import annotations

import hashlib
import time

from simulator.stack import Stack

DEVICE = "panel-1"


def play_burglary(stack: Stack, device_id: str = DEVICE, timeout: float = 60.0) -> dict:
    """Arm, enter through the door zone, do not disarm: the intrusion alarm sends 3 photos.

    Returns the figures of the run. Raises StackError/DeviceError if the photos do not
    arrive in time.
    """
    dev = stack.devices[device_id]
    panel = stack.panels[device_id]
    dev.wait_trace("online", timeout=20)
    panel.arm("2580", mode="away")               # user slot 2
    time.sleep(panel.exit_delay_s + 0.2)
    panel.open_zone("door-1")                    # entry delay starts; nobody disarms
    receipts = dev.wait_trace("receipt", 1, timeout=timeout)
    rows = stack.wait_images(device_id, 3, timeout=timeout)
    alarm_ms = stack.alarm_sent_ms[device_id][0]
    stored_ms = max(r["stored_at_ms"] for r in rows)
    camera = {hashlib.sha256(jpeg).hexdigest() for trig, _i, jpeg in dev.frames if trig == "intrusion"}
    at_arc = stack.read_images(device_id)
    identical = sum(1 for img in at_arc if hashlib.sha256(img).hexdigest() in camera)
    return {
        "scenario": "burglary",
        "images_captured": len(dev.frames),
        "images_at_arc": len(rows),
        "images_identical": identical,
        "alarm_to_stored_ms": round(stored_ms - alarm_ms, 1),
        "receipts": len(receipts),
    }


def run_demo(workdir=None, keep: bool = False, echo=None, dc09=None, dc09_account: str = "1234") -> tuple[dict, Stack]:
    """Start everything, play the burglary, stop the device and read its flash.

    With `dc09` settings (`gateway.forward.config.Settings`) the gateway also forwards the alarm
    to those receivers: `result["dc09"]` lists the reports and which receiver acknowledged each."""
    from simulator.timeline import Timeline
    stack = Stack(workdir, Timeline(echo=echo), keep=keep, dc09=dc09, dc09_account=dc09_account)
    try:
        stack.start()
        dev = stack.add_device(DEVICE)
        dev.boot()
        result = play_burglary(stack)
        if dc09 is not None:  # the alarm and its follow-up with the link, each acknowledged (bounded wait)
            result["dc09"] = stack.wait_dc09_acked(2, timeout=30.0)
        dev.stop()
        result["device_captures_left"] = stack.device_captures_left(DEVICE)
        with stack.store() as s:
            result["rejected"] = s.rejections.counts()
        result["gateway_data"] = str(stack.gateway_dir)
        return result, stack
    finally:
        stack.close()
