"""Power loss while an alarm capture is being written: the vault stays whole and every finished alarm photo reaches the ARC.

The device runs on real MicroPython with its flash slowed down (hal_sim's
`--flash-delay-us`), so the power can be cut in the middle of a littlefs write. Each round
boots the device, fires an intrusion alarm with the gateway stopped (so no receipt deletes
anything), and SIGKILLs the process at a varied point while the frames are sealed onto the
flash. The raw flash image is then read by littlefs-python, not by the firmware.
"""

import random
import time

from simulator.flash import mounted, vault_listing
from simulator.stack import Stack

DEVICE = "cut-1"
ROUNDS = 16
FRAMES = 3


def _sizes(flash_path):
    with mounted(flash_path) as fs:
        return {name: fs.stat("/vault/" + name).size for name in fs.listdir("/vault") if name.endswith(".cap")}


def _wait_frames(dev, count, timeout=15.0):
    deadline = time.monotonic() + timeout
    while len(dev.frames) < count:
        assert time.monotonic() < deadline, f"camera asked for {len(dev.frames)} of {count} frames: {dev.log_tail()}"
        time.sleep(0.005)


def test_power_cut_mid_capture_leaves_a_consistent_vault_and_loses_no_finished_alarm_photo(tmp_path):
    rng = random.Random(20261121)
    with Stack(tmp_path / "run") as stack:
        stack.stop_gateway()
        dev = stack.add_device(DEVICE, triggers={"intrusion": {"enabled": True, "frames": FRAMES, "interval_ms": 0}},
                               flash_blocks=1024)
        dev.hal_args = ["--flash-delay-us", "400"]
        finished = {}      # capture id hex -> sealed size, as the device reported before the cut
        cut_mid_capture = 0
        debris_after_cut = 0
        for rnd in range(ROUNDS):
            since = len(dev.traces)
            frames_before = len(dev.frames)
            dev.boot()
            dev.wait_trace("boot", since=since, timeout=20)
            dev.panel("intrusion_alarm")
            # Cut while frame k of the series is sealed, at a varied point inside it; every
            # fourth round lets the series finish and cuts just after, while the capture's
            # state record is rewritten and it is being published, so that later rounds cut
            # the power with finished captures on the flash.
            k = rnd % (FRAMES + 1)
            if k < FRAMES:
                _wait_frames(dev, frames_before + k + 1)
                time.sleep(rng.uniform(0.0, 0.25))
            else:
                dev.wait_trace("sealed", since=since, timeout=20)
                time.sleep(rng.uniform(0.0, 0.05))
            dev.kill()
            round_traces = dev.traces[since:]
            sealed = [t for t in round_traces if t.get("what") == "sealed"]
            if not sealed:
                cut_mid_capture += 1
            for t in sealed:
                finished[t["capture"]] = t["bytes"]

            # Straight after the cut, before any recovery: every finished capture is whole on
            # the raw flash, and no sealed file lacks its state record.
            listing = vault_listing(dev.flash_path)
            debris_after_cut += bool(listing["debris"])
            caps = {n[:-4] for n in listing["captures"]}
            states = {n[:-3] for n in listing["states"]}
            assert caps <= states, f"round {rnd}: sealed file without a state record: {caps - states}"
            sizes = _sizes(dev.flash_path)
            for cid, size in finished.items():
                assert sizes.get(cid + ".cap") == size, f"round {rnd}: finished capture {cid[:8]} damaged or lost; {dev.traces[-12:]}"

        print(f"{ROUNDS} cuts: {cut_mid_capture} inside a capture, {debris_after_cut} left debris, "
              f"{len(finished)} captures finished")
        assert len(finished) >= ROUNDS // (FRAMES + 1), "rounds meant to finish a capture did not"
        assert cut_mid_capture >= ROUNDS // 2, "the cuts did not land inside captures; the test proves nothing"
        assert debris_after_cut >= ROUNDS // 3, "the cuts did not land inside writes; the test proves nothing"

        # One more boot: recovery removes the debris and keeps exactly the finished captures.
        since = len(dev.traces)
        dev.boot()
        boot = dev.wait_trace("boot", since=since, timeout=20)[0]
        assert boot["captures"] == len(finished)
        dev.stop()
        listing = vault_listing(dev.flash_path)
        assert listing["debris"] == [], f"half-written files survived recovery: {listing['debris']}"
        assert {n[:-4] for n in listing["captures"]} == set(finished)
        assert {n[:-3] for n in listing["states"]} == set(finished)
        for cid, size in finished.items():
            assert _sizes(dev.flash_path)[cid + ".cap"] == size

        # The gateway comes back: every finished alarm capture reaches the ARC, whole.
        stack.start_gateway()
        since = len(dev.traces)
        dev.boot()
        stack.wait_images(DEVICE, FRAMES * len(finished), timeout=60)
        dev.wait_trace("receipt", count=len(finished), since=since, timeout=60)
        with stack.store() as s:
            captures = s.list_captures(DEVICE)
            images = s.list_images(DEVICE)
        assert {c["capture_id"] for c in captures} == set(finished)
        assert len(images) == FRAMES * len(finished)
        dev.stop()
        assert vault_listing(dev.flash_path) == {"captures": [], "states": [], "debris": []}
