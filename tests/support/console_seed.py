"""A gateway data directory for the console tests: one user per role, and alarms with real JPEG photos."""

import os
import time

from gateway.governance.users import add_user
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from simulator.camera import Camera

from support.seeding import seed

PASSWORDS = {"olivia": "operator-pass-1", "sam": "supervisor-pass-1", "aud": "auditor-pass-1", "adam": "admin-pass-001"}
ROLES = {"olivia": "operator", "sam": "supervisor", "aud": "auditor", "adam": "admin"}


def init(data):
    init_arc(data)
    with Store.open(data) as store:
        for name, role in ROLES.items():
            add_user(store, name, role, PASSWORDS[name], "test-setup", int(time.time() * 1000))
    return data


def ingest_alarm(data, device="cam-1", site="Storgatan 12", frames=3, code="intrusion"):
    """Provision `device` (once) and deliver one alarm with `frames` rendered JPEG photos. Returns the alarm id."""
    with Store.open(data) as store:
        known = any(d["id"] == device for d in store.devices.list())
    if not known:
        add_device(data, device, site)
    now = int(time.time())
    cam = Camera(device, size=(320, 240))
    jpegs = [cam.render("intruder", i, now + i, trigger=code) for i in range(frames)]
    alarm_id = os.urandom(8).hex()
    with Store.open(data) as store:
        seed(store, device, now * 1000, alarm_id=alarm_id, jpegs=jpegs, code=code, fw=None if known else "1.4.2")
    return alarm_id
