"""A raw dump of the flash, read as an attacker who also holds the ARC's private key would read it.

`simulator.flash.scan_sealed_captures` looks for sealed captures in every block of a littlefs
image, free blocks included, and opens what the ARC key opens together with any slot key
found in the dump (the key-slot area after littlefs, keyslots.py). These tests build images
with littlefs-python (the same littlefs v2 as the device), append a key-slot area, and check
that the scanner finds a capture whose file was removed, follows its first frame across
blocks, and tells a capture it can open from one it cannot: since format 2 that is one whose
slot key is still in the dump, and never one whose slot was zeroed or erased.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from littlefs import LittleFS

from gateway.protocol.capture import TRIGGER_CODES, seal
from gateway.protocol.keys import arc_key_id
from simulator.flash import BLOCK_SIZE, recoverable_with_arc_key, scan_sealed_captures, slot_keys, vault_listing

ARC = serialization.load_pem_private_key(
    json.loads((Path(__file__).parent / "vectors" / "test_arc_key.json").read_text())["private_key_pem"].encode(),
    password=None)
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def jpeg(size: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + os.urandom(size - 4)


def sealed_capture(arc_public, frames: list[bytes], trigger: str = "disarm") -> tuple[bytes, bytes, bytes]:
    """(capture_id, slot key, sealed bytes) as the device seals them (docs/PROTOCOL.md §4)."""
    capture_id, dk, sk = os.urandom(16), os.urandom(32), os.urandom(32)
    sealed = seal([(1795300000 + i, f) for i, f in enumerate(frames)], trigger=TRIGGER_CODES[trigger],
                  capture_id=capture_id, captured_at=1795300000, arc_key_id=arc_key_id(arc_public), dk=dk,
                  slot_key=sk, wrapped_key=arc_public.encrypt(dk, OAEP), meta_iv=os.urandom(16),
                  ivs=[os.urandom(16) for _ in frames])
    return capture_id, sk, sealed


def slot(capture_id: bytes, sk: bytes, state: str = "claimed") -> bytes:
    """One 4 KiB key slot as the device leaves it (keyslots.py): claimed, zeroed or erased."""
    if state == "erased":
        return b"\xff" * BLOCK_SIZE
    record = b"VKS1" + capture_id + sk
    record += hashlib.sha256(record).digest()[:8]
    if state == "zeroed":
        record = record[:20] + bytes(40)
    return record + b"\xff" * (BLOCK_SIZE - len(record))


def flash_image(tmp_path: Path, files: dict[str, bytes], removed: tuple[str, ...] = (), blocks: int = 96,
                slots: list[bytes] = ()) -> Path:
    """A littlefs image holding `files` in /vault, after removing `removed` (their blocks stay),
    followed by the key-slot area: `slots`, then erased slots up to 8."""
    fs = LittleFS(block_size=BLOCK_SIZE, block_count=blocks)
    fs.mkdir("/vault")
    for name, data in files.items():
        with fs.open(f"/vault/{name}", "wb") as f:
            f.write(data)
    for name in removed:
        fs.remove(f"/vault/{name}")
    path = tmp_path / "flash.img"
    area = b"".join(slots) + b"\xff" * BLOCK_SIZE * (8 - len(slots))
    path.write_bytes(bytes(fs.context.buffer) + area)
    fs.unmount()
    return path


def test_a_removed_capture_opens_from_the_free_blocks_with_the_arc_key_and_its_slot_key(tmp_path):
    frames = [jpeg(30000), jpeg(20000)]  # the first frame spans eight 4 KiB blocks
    cid, sk, sealed = sealed_capture(ARC.public_key(), frames)
    image = flash_image(tmp_path, {"a.cap": sealed}, removed=("a.cap",), slots=[slot(cid, sk)])
    found = scan_sealed_captures(image, ARC)
    assert [(e["capture_id"], e["trigger"], e["key_unwrapped"], e["first_frame_opened"]) for e in found] == [
        (cid.hex(), "disarm", True, True)]
    assert found[0]["first_frame_bytes"] == len(frames[0])
    assert recoverable_with_arc_key(image, ARC) == {
        "sealed_headers_on_flash": 1, "data_keys_unwrapped_with_arc_key": 1,
        "capture_keys_recoverable_with_arc_key": 1, "captures_recoverable_with_arc_key": 1}


def test_captures_are_counted_once_each_whether_removed_live_or_copied(tmp_path):
    cid_a, sk_a, a = sealed_capture(ARC.public_key(), [jpeg(9000)])
    cid_b, sk_b, b = sealed_capture(ARC.public_key(), [jpeg(12000)], trigger="intrusion")
    image = flash_image(tmp_path, {"a.cap": a, "a-copy.tmp": a, "b.cap": b}, removed=("a.cap",),
                        slots=[slot(cid_b, sk_b), slot(cid_a, sk_a)])
    found = scan_sealed_captures(image, ARC)
    assert sorted((e["capture_id"], e["trigger"]) for e in found) == sorted(
        [(cid_a.hex(), "disarm"), (cid_b.hex(), "intrusion")])
    assert recoverable_with_arc_key(image, ARC)["captures_recoverable_with_arc_key"] == 2


def test_a_capture_sealed_to_another_arc_key_is_found_but_does_not_open(tmp_path):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cid, sk, sealed = sealed_capture(other.public_key(), [jpeg(9000)])
    image = flash_image(tmp_path, {"a.cap": sealed}, removed=("a.cap",), slots=[slot(cid, sk)])
    assert recoverable_with_arc_key(image, ARC) == {
        "sealed_headers_on_flash": 1, "data_keys_unwrapped_with_arc_key": 0,
        "capture_keys_recoverable_with_arc_key": 0, "captures_recoverable_with_arc_key": 0}


def test_the_first_frame_must_verify_a_key_alone_is_not_an_opened_capture(tmp_path):
    # Erase the file's second block (as littlefs does before reusing it): the capture's keys
    # are still recovered, but the first frame no longer verifies.
    cid, sk, sealed = sealed_capture(ARC.public_key(), [jpeg(30000)])
    image = flash_image(tmp_path, {"a.cap": sealed}, removed=("a.cap",), slots=[slot(cid, sk)])
    raw = bytearray(image.read_bytes())
    head = scan_sealed_captures(image, ARC)[0]["block"]
    second = next(b for b in range(len(raw) // BLOCK_SIZE)
                  if raw[b * BLOCK_SIZE:b * BLOCK_SIZE + 4] == head.to_bytes(4, "little"))
    raw[second * BLOCK_SIZE:(second + 1) * BLOCK_SIZE] = b"\xff" * BLOCK_SIZE
    image.write_bytes(bytes(raw))
    assert recoverable_with_arc_key(image, ARC) == {
        "sealed_headers_on_flash": 1, "data_keys_unwrapped_with_arc_key": 1,
        "capture_keys_recoverable_with_arc_key": 1, "captures_recoverable_with_arc_key": 0}


def test_erased_blocks_hold_nothing_to_open(tmp_path):
    cid, sk, sealed = sealed_capture(ARC.public_key(), [jpeg(9000)])
    image = flash_image(tmp_path, {"a.cap": sealed}, removed=("a.cap",), slots=[slot(cid, sk)])
    raw = bytearray(image.read_bytes())
    head = scan_sealed_captures(image, ARC)[0]["block"]
    raw[head * BLOCK_SIZE:(head + 1) * BLOCK_SIZE] = b"\xff" * BLOCK_SIZE
    image.write_bytes(bytes(raw))
    assert scan_sealed_captures(image, ARC) == []


@pytest.mark.parametrize("state", ["zeroed", "erased"])
def test_a_shredded_slot_leaves_a_capture_nobody_opens_the_arc_key_and_the_whole_dump_included(tmp_path, state):
    # The data key still unwraps with the ARC key from the header in the free blocks; without
    # the slot key it opens nothing (PROTOCOL §4.1), and the other slots' keys do not help.
    cid, sk, sealed = sealed_capture(ARC.public_key(), [jpeg(30000), jpeg(9000)])
    cid_b, sk_b, b = sealed_capture(ARC.public_key(), [jpeg(9000)], trigger="intrusion")
    image = flash_image(tmp_path, {"a.cap": sealed, "b.cap": b}, removed=("a.cap",),
                        slots=[slot(cid, sk, state), slot(cid_b, sk_b)])
    found = {e["capture_id"]: e for e in scan_sealed_captures(image, ARC)}
    assert found[cid.hex()]["data_key_unwrapped"] and not found[cid.hex()]["key_unwrapped"]
    assert not found[cid.hex()]["first_frame_opened"] and found[cid.hex()]["trigger"] is None
    assert found[cid_b.hex()]["first_frame_opened"]  # the live one next to it still opens
    assert recoverable_with_arc_key(image, ARC) == {
        "sealed_headers_on_flash": 2, "data_keys_unwrapped_with_arc_key": 2,
        "capture_keys_recoverable_with_arc_key": 1, "captures_recoverable_with_arc_key": 1}
    if state == "zeroed":  # the zeroed record still names its capture: the id is no secret
        assert slot_keys(image.read_bytes())[0] == (cid, bytes(32))


def test_the_littlefs_part_of_an_image_with_key_slots_still_mounts(tmp_path):
    cid, sk, sealed = sealed_capture(ARC.public_key(), [jpeg(9000)])
    image = flash_image(tmp_path, {"a.cap": sealed}, slots=[slot(cid, sk)])
    assert vault_listing(image)["captures"] == ["a.cap"]
