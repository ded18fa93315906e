"""Seed a gateway data directory for console tests: a real sealed capture through the real ingest path."""

import os
import time

from gateway.ingest.pipeline import Ingest, Message
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from gateway.governance.users import add_user
from simulator.camera import Camera

from test_gateway_vectors import mv

PASSWORDS = {"olivia": "operator-pass-1", "sam": "supervisor-pass-1", "aud": "auditor-pass-1", "adam": "admin-pass-001"}
ROLES = {"olivia": "operator", "sam": "supervisor", "aud": "auditor", "adam": "admin"}


def init(data):
    init_arc(data)
    with Store.open(data) as store:
        for name, role in ROLES.items():
            add_user(store, name, role, PASSWORDS[name], "test-setup", int(time.time() * 1000))
    return data


def ingest_alarm(data, device="cam-1", site="Storgatan 12", frames=3, code="intrusion"):
    """Provision `device` (once) and deliver one alarm with `frames` real JPEG photos. Returns the alarm id."""
    with Store.open(data) as store:
        known = any(d["id"] == device for d in store.devices.list())
    config = _configs.get((str(data), device)) or add_device(data, device, site)
    _configs[(str(data), device)] = config
    dev = _devices.setdefault((str(data), device), mv.TestDevice(config))
    now = int(time.time())
    cam = Camera(device, size=(320, 240))
    jpegs = [cam.render("intruder", i, now + i, trigger=code) for i in range(frames)]
    cid, sealed = dev.seal(jpegs, captured_at=now)
    aid = os.urandom(8)
    msgs = [] if known else [dev.status("online", fw="1.4.2")]
    msgs += [dev.event({"kind": "armed", "mode": "away", "slot": 2, "t": now - 60}),
             dev.event({"kind": "alarm", "code": code, "alarm_id": aid.hex(), "t": now, "captures": [cid.hex()]})]
    msgs += dev.chunk_messages(cid, sealed, aid)
    with Store.open(data) as store:
        result = Ingest(store).process_batch([Message(t, p) for t, p in msgs])
        store.captures.mark_stored([s.rowid for s in result.stored], int(time.time() * 1000))
    return aid.hex()


_configs: dict = {}
_devices: dict = {}
