"""Power loss while an alarm capture is being written: the vault stays whole and every finished alarm photo reaches the ARC.

The device runs on real MicroPython with its flash as a littlefs image in a host file. Each
round boots the device, fires an intrusion alarm with the gateway stopped (so no receipt
deletes anything), and cuts the power at a chosen point of the series: hal_sim's
`--pause-at` stops the device dead there (in the middle of a littlefs program or erase,
with half of it written; or between two frames; or in the writes just after the capture
is sealed), and the test SIGKILLs the process. The points are chosen, not timed, so the
test cuts where it says it does on a loaded machine too. The raw flash image is then read
by littlefs-python, not by the firmware.
"""

import json
import random
import time

from simulator.flash import mounted, vault_listing
from simulator.stack import Stack

DEVICE = "cut-1"
ROUNDS = 16
FRAMES = 3
# Flash writes while one frame is sealed onto the flash (a 40 KB JPEG, programmed in
# littlefs's 128-byte cache units, and its erases): about 330. Cuts inside a frame pick
# their write below this, so each lands inside that frame's data.
WRITES_IN_A_FRAME = 250
# Writes after `sealed`: the capture's state record becomes "sending" (a small file
# replaced by rename), before anything is published.
WRITES_AFTER_SEALED = 3


def _plan(rnd, rng):
    """Where round `rnd` cuts the power: (event, n, what it tests)."""
    kind = rnd % 4
    if kind in (0, 1):   # mid-write, inside frame k's data
        return f"frame{(rnd // 2) % FRAMES}", rng.randint(1, WRITES_IN_A_FRAME), "mid-write"
    if kind == 2:        # between frames: frame k has arrived, frames before it are written
        return f"frame{1 + (rnd // 4) % (FRAMES - 1)}", 0, "between frames"
    return "sealed", 1 + (rnd // 4) % WRITES_AFTER_SEALED, "after sealed"


def _sizes(flash_path):
    with mounted(flash_path) as fs:
        return {name: fs.stat("/vault/" + name).size for name in fs.listdir("/vault") if name.endswith(".cap")}


def _wait_paused(dev, pause, timeout=30.0):
    """The device's report of where it stopped dead, once it has."""
    deadline = time.monotonic() + timeout
    while not pause.exists():
        assert dev.proc.poll() is None, f"device exited before its pause point: {dev.log_tail()}"
        assert time.monotonic() < deadline, f"device never reached its pause point: {dev.traces[-8:]}"
        time.sleep(0.002)
    return json.loads(pause.read_text())


def test_power_cut_mid_capture_leaves_a_consistent_vault_and_loses_no_finished_alarm_photo(tmp_path):
    rng = random.Random(20261121)
    pause = tmp_path / "paused.json"
    with Stack(tmp_path / "run") as stack:
        stack.stop_gateway()
        dev = stack.add_device(DEVICE, triggers={"intrusion": {"enabled": True, "frames": FRAMES, "interval_ms": 0}},
                               flash_blocks=1024)
        finished = {}      # capture id hex -> sealed size, as the device reported before the cut
        cuts = {"mid-write": 0, "between frames": 0, "after sealed": 0}
        debris_after_cut = {"mid-write": 0, "between frames": 0, "after sealed": 0}
        for rnd in range(ROUNDS):
            event, n, kind = _plan(rnd, rng)
            pause.unlink(missing_ok=True)
            dev.hal_args = ["--pause-at", f"{event}:{n}", "--pause-file", str(pause)]
            since, frames_before = len(dev.traces), len(dev.frames)
            dev.boot()
            dev.wait_trace("boot", since=since, timeout=20)
            dev.panel("intrusion_alarm")
            stopped = _wait_paused(dev, pause)
            dev.kill()  # SIGKILL while it sits at the chosen point
            # It stopped where it was told to: inside a write for the mid-write and
            # after-sealed cuts, before one for the cut between frames.
            assert (stopped["event"], stopped["n"]) == (event, n)
            assert (stopped["write"] in ("prog", "erase")) == (n > 0), stopped
            round_traces = dev.traces[since:]
            sealed = [t for t in round_traces if t.get("what") == "sealed"]
            assert bool(sealed) == (kind == "after sealed"), f"round {rnd} ({kind}): {round_traces[-6:]}"
            # A cut in frame k came before frame k + 1 was asked for: it is in frame k's writes.
            served = len(dev.frames) - frames_before
            assert served == (FRAMES if kind == "after sealed" else int(event[5:]) + 1), (rnd, event, n, served)
            cuts[kind] += 1
            for t in sealed:
                finished[t["capture"]] = t["bytes"]

            # Straight after the cut, before any recovery: every finished capture is whole on
            # the raw flash, and no sealed file lacks its state record.
            listing = vault_listing(dev.flash_path)
            debris_after_cut[kind] += bool(listing["debris"])
            caps = {n[:-4] for n in listing["captures"]}
            states = {n[:-3] for n in listing["states"]}
            assert caps <= states, f"round {rnd}: sealed file without a state record: {caps - states}"
            sizes = _sizes(dev.flash_path)
            for cid, size in finished.items():
                assert sizes.get(cid + ".cap") == size, f"round {rnd}: finished capture {cid[:8]} damaged or lost; {dev.traces[-12:]}"

        print(f"{ROUNDS} cuts: {cuts}; left debris: {debris_after_cut}; {len(finished)} captures finished")
        assert len(finished) == cuts["after sealed"] == ROUNDS // 4
        # A capture cut off mid-series is a half-written file on the raw flash: the test
        # really did cut inside the vault's writes, and recovery has work to do.
        assert debris_after_cut["mid-write"] == cuts["mid-write"]
        assert debris_after_cut["between frames"] == cuts["between frames"]

        # One more boot: recovery removes the debris and keeps exactly the finished captures.
        dev.hal_args = []
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
            captures = s.captures.list(DEVICE)
            images = s.images.list(DEVICE)
        assert {c["capture_id"] for c in captures} == set(finished)
        assert len(images) == FRAMES * len(finished)
        dev.stop()
        assert vault_listing(dev.flash_path) == {"captures": [], "states": [], "debris": []}


# -- the key slots: claiming one, and shredding a capture -------------------------------------

SLOT_FLASH_BLOCKS = 256  # littlefs's blocks; the key slots are the chip's blocks from here on
# Writes from the `capturing` trace on: the slot claimed (1, a program in the key-slot area),
# then the state record (a small file replaced by rename) and the .tmp file opened.
WRITES_WHEN_A_CAPTURE_STARTS = 5


def _slots_in_use(flash_path):
    from simulator.flash import key_slots

    return [(state, cid.hex() if cid else None) for state, cid in key_slots(flash_path) if state != "free"]


def test_power_cut_at_every_step_of_a_key_slot_leaves_nothing_openable_after_its_shred(tmp_path):
    """Cuts where a capture claims its key slot and writes its first records, and at every flash
    write of a shred (zero the slot key, remove the files, erase the slot): a raw dump and the
    ARC's private key never open a capture whose shred had begun, no alarm photo is lost, and
    no boot reports a key as lost for a capture that was merely being shredded."""
    from simulator.flash import recoverable_with_arc_key, scan_sealed_captures

    pause = tmp_path / "paused.json"
    with Stack(tmp_path / "run") as stack:
        dev = stack.add_device(DEVICE, triggers={"intrusion": {"enabled": True, "frames": FRAMES, "interval_ms": 0}},
                               flash_blocks=SLOT_FLASH_BLOCKS)
        with stack.store() as s:
            arc_key = s.keys.arc_private_key()

        def cut_at(event, n):
            """Boot, fire an intrusion alarm, stop dead at the nth flash write after `event`, SIGKILL."""
            pause.unlink(missing_ok=True)
            dev.hal_args = ["--pause-at", f"{event}:{n}", "--pause-file", str(pause)]
            since = len(dev.traces)
            dev.boot()
            dev.wait_trace("online", since=since, timeout=20)
            dev.panel("intrusion_alarm")
            stopped = _wait_paused(dev, pause, timeout=60)
            dev.kill()
            assert (stopped["event"], stopped["n"]) == (event, n)
            return stopped, dev.traces[since:]

        def reboot_and_settle():
            """Boot with nothing armed; its boot trace once the device is online and idle."""
            dev.hal_args = []
            since = len(dev.traces)
            dev.boot()
            boot = dev.wait_trace("boot", since=since, timeout=20)[0]
            dev.wait_trace("online", since=since, timeout=20)
            time.sleep(1.0)  # a lost key would be reported, and any queued capture resent
            dev.stop()
            return boot, dev.traces[since:]

        # 1. Where a capture starts: the slot claim, then its state record and .tmp file.
        for n in range(1, WRITES_WHEN_A_CAPTURE_STARTS + 1):
            stopped, _ = cut_at("capturing", n)
            if n == 1:  # the claim is the first write, a program in the key-slot area
                assert stopped["write"] == "prog" and stopped["block"] >= SLOT_FLASH_BLOCKS, stopped
            else:
                assert stopped["block"] < SLOT_FLASH_BLOCKS, stopped
            boot, _ = reboot_and_settle()
            # No photo was taken before the cut; the half-claimed slot is an orphan, erased at
            # boot without a report; nothing is left of the capture on flash.
            assert (boot["captures"], boot["keys_lost"]) == (0, 0), boot
            assert _slots_in_use(dev.flash_path) == [], f"cut {n} left a slot behind"
            assert vault_listing(dev.flash_path) == {"captures": [], "states": [], "debris": []}
        assert not stack.images_at_arc(DEVICE)

        # 2. Every write of a shred: the ARC has stored the capture and receipted it.
        stored = 0
        n = 0
        while True:
            n += 1
            stopped, traces = cut_at("shredding", n)
            stored += 1
            shredding = [t for t in traces if t.get("what") == "shredding"]
            assert len(shredding) == 1 and shredding[0]["why"] == "delivered", traces[-6:]
            cid = shredding[0]["capture"]
            if n == 1:  # zeroing the slot key comes first, in place, before any file goes
                assert stopped["write"] == "prog" and stopped["block"] >= SLOT_FLASH_BLOCKS, stopped
            last = stopped["write"] == "erase" and stopped["block"] >= SLOT_FLASH_BLOCKS
            # Straight after the cut, the strongest attacker: the raw dump and the ARC key.
            found = {e["capture_id"]: e for e in scan_sealed_captures(dev.flash_path, arc_key)}
            if cid in found:  # its header is still on flash (its files may not be gone yet)
                assert found[cid]["data_key_unwrapped"], found[cid]
                assert not found[cid]["key_unwrapped"] and not found[cid]["first_frame_opened"], \
                    f"cut {n} of a shred left capture {cid[:8]} open to a raw dump and the ARC key"
            assert recoverable_with_arc_key(dev.flash_path, arc_key)["captures_recoverable_with_arc_key"] == 0
            boot, after = reboot_and_settle()
            # The next boot finishes the shred: nothing resent, nothing left, no slot in use.
            assert boot["captures"] == 0 and not [t for t in after if t.get("what") == "capture_sent"], after[-6:]
            if n > 1:  # a zeroed slot names the capture being shredded: no false alarm
                assert boot["keys_lost"] == 0, boot
            assert boot["keys_lost"] <= 1, boot  # a torn zeroing cannot be told from a worn slot
            assert _slots_in_use(dev.flash_path) == []
            assert vault_listing(dev.flash_path) == {"captures": [], "states": [], "debris": []}
            if last or n >= 40:
                break
        assert last, f"no shred ended with an erase of its key slot within {n} writes"
        print(f"a shred is {n} flash writes: zero the slot key, remove the files, erase the slot")
        # Every alarm photo of every round is at the ARC, exactly once.
        images = stack.wait_images(DEVICE, FRAMES * stored, timeout=30)
        assert len(images) == FRAMES * stored
        assert len({(r["capture_id"], r["frame_index"]) for r in images}) == FRAMES * stored
