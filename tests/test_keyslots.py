"""Key slots on real MicroPython: a capture's slot key lives in one erase block of raw flash, and erasing it destroys the key.

The firmware's `keyslots.KeySlots` runs on the MicroPython unix port over the simulator's
flash chip (`hal_sim.FlashChip`, NOR semantics: a program only clears bits). The raw chip
file is then read from CPython, independently of the firmware, as an attacker with a dump
would read it.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

from simulator.mpy import run_micropython

BLOCK = 4096
LFS_BLOCKS = 8      # a stand-in for littlefs in front of the key slots
SLOTS = 4

PRELUDE = """
import json, sys
from vericam.hal_sim import FlashChip, FileBlockDevice
from vericam.keyslots import KeySlots, SlotsExhausted, CLAIMED, SHREDDED, CORRUPT
chip = FlashChip(sys.argv[1])
area = FileBlockDevice(chip, %d, %d, nor=True)
seq = [0]
def urandom(n):
    seq[0] += 1
    return bytes([seq[0] & 0xFF]) * n  # fixed: slot 1 first, then round robin
def out(what, value):
    print(json.dumps([what, value]))
""" % (LFS_BLOCKS, SLOTS)


def on_micropython(tmp_path: Path, body: str) -> tuple[dict, bytes]:
    """Run PRELUDE + body on MicroPython over a chip file; its outputs by name, and the raw chip."""
    script = tmp_path / "slots.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    chip = tmp_path / "chip.img"
    done = run_micropython(script, str(chip), timeout=60)
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    outputs = {}
    for line in done.stdout.decode().splitlines():
        what, value = json.loads(line)
        outputs[what] = value
    return outputs, chip.read_bytes()


def slot_bytes(raw: bytes, slot: int, n: int = 60) -> bytes:
    at = (LFS_BLOCKS + slot) * BLOCK
    return raw[at:at + n]


def test_a_claimed_slot_holds_the_record_of_the_spec_in_its_own_block(tmp_path):
    out, raw = on_micropython(tmp_path, """
        slots = KeySlots(area, urandom)
        slot, key = slots.claim(b"C" * 16)
        out("slot", slot)
        out("key", bytes(key).hex())
        out("read", slots.key(slot, b"C" * 16).hex())
        out("other", slots.key(slot, b"D" * 16))
    """)
    assert len(raw) == (LFS_BLOCKS + SLOTS) * BLOCK
    assert raw[:LFS_BLOCKS * BLOCK] == b"\xff" * (LFS_BLOCKS * BLOCK), "the key slots wrote into littlefs's blocks"
    slot, key = out["slot"], bytes.fromhex(out["key"])
    record = slot_bytes(raw, slot)
    assert record[:52] == b"VKS1" + b"C" * 16 + key
    assert record[52:] == hashlib.sha256(record[:52]).digest()[:8]
    assert slot_bytes(raw, slot, BLOCK)[60:] == b"\xff" * (BLOCK - 60)
    assert out["read"] == key.hex() and out["other"] is None
    for other in set(range(SLOTS)) - {slot}:
        assert slot_bytes(raw, other, BLOCK) == b"\xff" * BLOCK


def test_zeroing_destroys_the_key_and_keeps_the_capture_id_then_erase_frees_the_block(tmp_path):
    out, raw = on_micropython(tmp_path, """
        slots = KeySlots(area, urandom)
        slot, key = slots.claim(b"C" * 16)
        out("slot", slot)
        slots.zero(slot)
        out("after_zero", [slots.read(slot)[0], slots.read(slot)[1].hex()])
        out("key_after_zero", slots.key(slot, b"C" * 16))
        with open(sys.argv[1], "rb") as f:
            f.seek((%d + slot) * 4096)
            out("zeroed_raw", f.read(60).hex())
        slots.erase(slot)
        out("after_erase", slots.read(slot)[0])
        out("free", slots.free_count())
    """ % LFS_BLOCKS)
    slot = out["slot"]
    assert out["after_zero"] == ["shredded", (b"C" * 16).hex()]
    assert out["key_after_zero"] is None
    assert bytes.fromhex(out["zeroed_raw"]) == b"VKS1" + b"C" * 16 + bytes(40)
    assert out["after_erase"] == "free" and out["free"] == SLOTS
    assert slot_bytes(raw, slot, BLOCK) == b"\xff" * BLOCK


def test_slots_are_claimed_round_robin_and_exhaust_with_a_clear_error(tmp_path):
    out, _ = on_micropython(tmp_path, """
        slots = KeySlots(area, urandom)
        got = [slots.claim(bytes([i]) * 16)[0] for i in range(4)]
        out("claimed", got)
        try:
            slots.claim(b"E" * 16)
            out("fifth", "claimed")
        except SlotsExhausted as exc:
            out("fifth", str(exc))
        slots.zero(got[1])
        slots.erase(got[1])
        out("reused", slots.claim(b"F" * 16)[0])
        out("find", slots.find(b"F" * 16))
    """)
    assert sorted(out["claimed"]) == list(range(SLOTS))
    assert out["claimed"] == [(out["claimed"][0] + i) % SLOTS for i in range(SLOTS)]
    assert "all 4 key slots" in out["fifth"]
    assert out["reused"] == out["claimed"][1] == out["find"]


def test_scan_after_a_reboot_tells_claimed_shredded_corrupt_and_free_slots_apart(tmp_path):
    out, _ = on_micropython(tmp_path, """
        slots = KeySlots(area, urandom)
        a, _ = slots.claim(b"A" * 16)
        b, _ = slots.claim(b"B" * 16)
        c, _ = slots.claim(b"C" * 16)
        slots.zero(b)
        area.writeblocks(c, b"\\x00", 30)   # a worn cell inside C's key
        again = KeySlots(area, urandom)      # the next boot
        found = sorted((s, st, cid.hex() if cid else None) for s, st, cid in again.scan())
        out("found", found)
        out("abc", [a, b, c])
        out("free", again.free_count())
        out("key_c", again.key(c, b"C" * 16))
    """)
    a, b, c = out["abc"]
    assert out["found"] == sorted([[a, "claimed", (b"A" * 16).hex()], [b, "shredded", (b"B" * 16).hex()],
                                   [c, "corrupt", (b"C" * 16).hex()]])
    assert out["free"] == SLOTS - 3 and out["key_c"] is None


def test_a_slot_that_does_not_read_back_is_erased_and_the_next_one_taken(tmp_path):
    # A block left unerased (a torn erase): programming a record over it ANDs into garbage.
    out, raw = on_micropython(tmp_path, """
        first = urandom(1)[0] % 4
        seq[0] = 0
        area.writeblocks(first, b"\\x0f" * 60, 0)  # not erased; bits already cleared
        slots = KeySlots(area, urandom)
        slot, key = slots.claim(b"C" * 16)
        out("first", first)
        out("slot", slot)
        out("key", slots.key(slot, b"C" * 16).hex())
    """)
    assert out["slot"] == (out["first"] + 1) % SLOTS
    assert slot_bytes(raw, out["first"], BLOCK) == b"\xff" * BLOCK, "the bad slot was not erased"
    assert slot_bytes(raw, out["slot"])[20:52].hex() == out["key"]
