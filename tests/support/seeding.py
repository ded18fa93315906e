"""Seeding a gateway for a test: a data directory with devices, and captures stored through the real ingest."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from gateway.ingest.pipeline import Ingest, Message
from gateway.provisioning.devices import add_device, arc_public, init_arc
from gateway.storage.store import Store
from simulator.fake_device import FakeDevice, fake_jpeg


def make_gateway_dir(path: Path, devices=("cam-1",)) -> Path:
    """An initialised gateway data directory with `devices` provisioned (site `site-<id>`)."""
    init_arc(path)
    for d in devices:
        add_device(path, d, "site-" + d)
    return path


def device_of(store: Store, device: str) -> FakeDevice:
    """A fake of the provisioned `device`, keyed from the store, its counter past every one seen."""
    keys = store.devices.keys_for(device)
    assert keys is not None, f"{device} is not provisioned (or is revoked) in this data directory"
    return FakeDevice({"device_id": device, **arc_public(store.keys)}, keys=keys,
                      counter=max(0, store.devices.replay_window(device).high))


def seed(store: Store, device: str, alarm_ms: int | None = None, frames: int = 2, alarm_id: str | None = None,
         jpegs: list[bytes] | None = None, code: str | None = None, fw: str | None = None) -> list[str]:
    """One stored capture of `device` for an alarm at `alarm_ms` (default: now); its image ids in frame order.

    The capture is sealed by a fake of the device and goes through the gateway's own ingest
    with the clock at `alarm_ms`, so the rows, blobs and keys are what the ingest stores:
    the alarm received at `alarm_ms`, its images due on the alarm's day + 7. `alarm_id`
    (16 hex digits) puts the capture on an alarm that may already have captures. `jpegs`
    default to `frames` fake JPEGs of 600 bytes. With `code`, the activity log gets what a
    panel's alarm brings: an `armed` event a minute before, then the alarm event naming
    the capture. With `fw`, an `online` status with that firmware version comes first."""
    at_ms = int(time.time() * 1000) if alarm_ms is None else alarm_ms
    t = at_ms // 1000
    dev = device_of(store, device)
    jpegs = jpegs if jpegs is not None else [fake_jpeg(600) for _ in range(frames)]
    aid = bytes.fromhex(alarm_id) if alarm_id else os.urandom(8)
    cid, sealed = dev.seal(jpegs, captured_at=t)
    msgs = [dev.status("online", fw=fw)] if fw else []
    if code:
        msgs += [dev.event({"kind": "armed", "mode": "away", "slot": 2, "t": t - 60}, time_s=t),
                 dev.event({"kind": "alarm", "code": code, "alarm_id": aid.hex(), "t": t, "captures": [cid.hex()]},
                           time_s=t)]
    msgs += dev.chunk_messages(cid, sealed, aid, time_s=t)
    result = Ingest(store, log=lambda line: None, clock=lambda: at_ms / 1000).process_batch(
        [Message(topic, payload) for topic, payload in msgs])
    assert not result.rejected and len(result.stored) == 1, f"seeding {device}: the ingest refused {result.rejected}"
    store.captures.mark_stored([result.stored[0].rowid], at_ms)
    images = [i for i in store.images.list(device) if i["capture_id"] == cid.hex()]
    return [i["id"] for i in sorted(images, key=lambda i: i["frame_index"])]


def intact(store: Store, image_id: str) -> bool:
    """The image decrypts (its key is alive) to the very bytes whose SHA-256 the ingest recorded.

    Raises what `images.read` raises (KeyDestroyed when its key is gone)."""
    [row] = [r for r in store.images.list() if r["id"] == image_id]
    return hashlib.sha256(store.images.read(image_id)).hexdigest() == row["sha256"]
