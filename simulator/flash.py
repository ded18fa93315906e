"""Reading a device's raw flash image from the host, independently of the firmware, as an attacker would.

Two readings. Through the file system (littlefs-python): what the vault holds now. And raw,
block by block, free blocks and the key-slot area included (`scan_sealed_captures`): what
someone with a dump of the chip and the ARC's private key could still open, which is how the
simulator checks that "shredded" means gone (issue 13; rule 2 of the design).
"""

from __future__ import annotations

import hashlib
import struct
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from littlefs import LittleFS

from gateway.protocol.capture import FRAME_FIXED, REC_END, REC_FRAME, open_sealed, parse_header
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import capture_keys, hmac_sha256

BLOCK_SIZE = 4096


def littlefs_blocks(data: bytes) -> int:
    """The block count littlefs's superblock gives: the image may go on past it (the key slots).

    The superblock entry opens both blocks of the metadata pair 0/1: a revision count, a tag,
    b"littlefs", a tag, then version, block_size and block_count (u32, little-endian).
    """
    for block in (0, 1):
        at = block * BLOCK_SIZE + 8
        if data[at:at + 8] == b"littlefs":
            _version, block_size, count = struct.unpack_from("<3I", data, at + 12)
            if block_size == BLOCK_SIZE and 0 < count <= len(data) // BLOCK_SIZE:
                return count
    return len(data) // BLOCK_SIZE


@contextmanager
def mounted(path: str | Path):
    """The littlefs in a flash image, mounted read-only in memory; unmounted on exit.

    Files opened from it must be closed inside the block: littlefs-python crashes when a
    mounted file system with open files is garbage-collected.
    """
    data = Path(path).read_bytes()
    count = littlefs_blocks(data)
    data = data[:count * BLOCK_SIZE]
    fs = LittleFS(block_size=BLOCK_SIZE, block_count=count, mount=False)
    fs.context.buffer[: len(data)] = data
    fs.mount()
    try:
        yield fs
    finally:
        fs.unmount()


def read_file(path: str | Path, name: str) -> bytes:
    with mounted(path) as fs:
        with fs.open(name, "rb") as f:
            return f.read()


def vault_listing(path: str | Path) -> dict[str, list[str]]:
    """The vault's files by kind: whole sealed captures, state records and debris."""
    with mounted(path) as fs:
        try:
            names = fs.listdir("/vault")
        except Exception:
            names = []
    return {
        "captures": sorted(n for n in names if n.endswith(".cap")),
        "states": sorted(n for n in names if n.endswith(".st")),
        "debris": sorted(n for n in names if n.endswith((".tmp", ".sx"))),
    }


def captures_left(path: str | Path) -> int:
    return len(vault_listing(path)["captures"])


# -- the raw image, as an attacker reads it ---------------------------------------------------
#
# littlefs keeps a file larger than its inline limit in a CTZ skip list: block n of the file
# (n >= 1) starts with ctz(n) + 1 little-endian u32 pointers, to blocks n - 1, n - 2, n - 4,
# ..., n - 2^ctz(n); block 0 has none. Removing a file only drops its metadata entry: the
# blocks keep their bytes until littlefs erases them for reuse. So a sealed capture whose
# file was removed can be found by its magic at the start of a block, and its first frame
# followed from block to block by those pointers.

MAX_CHAIN_STEPS = 20000  # candidate blocks tried per capture while following a chain


def _ctz(n: int) -> int:
    return (n & -n).bit_length() - 1


def _pointers(image: bytes, block: int, n: int, block_size: int) -> tuple[int, ...]:
    return struct.unpack_from(f"<{_ctz(n) + 1}I", image, block * block_size)


def _follow_chain(image: bytes, head: int, start: int, want: int, block_size: int, check) -> bytes | None:
    """Bytes `start .. start + want` of a CTZ file whose block 0 is `head`, taken from any
    chain of blocks (free or live) whose pointers agree, until `check(bytes)` accepts one.

    Several blocks can claim the same predecessor (copies littlefs made, older files), so
    this is a bounded depth-first search over the candidates. None when nothing is accepted.
    """
    by_first: dict[int, list[int]] = {}
    for b in range(len(image) // block_size):
        by_first.setdefault(struct.unpack_from("<I", image, b * block_size)[0], []).append(b)

    def data_of(b: int, n: int) -> bytes:
        skip = 0 if n == 0 else 4 * (_ctz(n) + 1)
        return image[b * block_size + skip:(b + 1) * block_size]

    stack = [([head], data_of(head, 0)[start:])]
    steps = 0
    while stack and steps < MAX_CHAIN_STEPS:
        chain, got = stack.pop()
        if len(got) >= want:
            if check(got[:want]):
                return got[:want]
            continue
        n = len(chain)
        for b in reversed(by_first.get(chain[-1], [])):
            steps += 1
            ptrs = _pointers(image, b, n, block_size)
            if b not in chain and all(ptrs[i] == chain[n - (1 << i)] for i in range(len(ptrs))):
                stack.append((chain + [b], got + data_of(b, n)))
    return None


def key_slots(path: str | Path) -> list[tuple[str, bytes | None]]:
    """(state, capture_id) of every key slot in a simulated device's image: the blocks after
    littlefs's (hal_sim), each read as keyslots.py lays it out, by independent code.

    States: `free` (erased), `claimed` (whole record, check matches), `shredded` (key and
    check zeroed, capture id kept), `corrupt` (anything else)."""
    data = Path(path).read_bytes()
    out = []
    for at in range(littlefs_blocks(data) * BLOCK_SIZE, len(data) - BLOCK_SIZE + 1, BLOCK_SIZE):
        rec = data[at:at + 60]
        if rec == b"\xff" * 60:
            out.append(("free", None))
        elif rec[:4] != b"VKS1":
            out.append(("corrupt", None))
        elif rec[20:] == bytes(40):
            out.append(("shredded", rec[4:20]))
        elif rec[52:] == hashlib.sha256(rec[:52]).digest()[:8]:
            out.append(("claimed", rec[4:20]))
        else:
            out.append(("corrupt", rec[4:20]))
    return out


def slot_keys(image: bytes) -> list[tuple[bytes, bytes]]:
    """Every (capture_id, key) a key-slot record anywhere in the image could hold (keyslots.py).

    The attacker does not trust the record's check or its layout: every occurrence of the
    slot magic, whole, torn or zeroed, gives a candidate."""
    found = []
    pos = image.find(b"VKS1")
    while pos >= 0:
        if pos + 52 <= len(image):
            found.append((image[pos + 4:pos + 20], image[pos + 20:pos + 52]))
        pos = image.find(b"VKS1", pos + 1)
    return found


def scan_sealed_captures(image_path: str | Path, arc_private_key, block_size: int = BLOCK_SIZE) -> list[dict]:
    """Every sealed capture whose header is anywhere in the raw image, and whether the ARC key opens it.

    What the attacker holds: the raw image (littlefs's blocks, free ones included, and the
    key-slot area) and the ARC private key. For each occurrence of the sealed-capture magic
    (docs/PROTOCOL.md §4) the header is parsed and its data key unwrapped with the ARC key
    (`data_key_unwrapped`). That no longer opens anything on its own (format 2): the capture's
    keys come from the data key and its slot key. So every slot key found anywhere in the
    image is tried, its own capture's first, until one verifies the header MAC
    (`key_unwrapped`: the capture's keys are recovered). Then the first frame is followed
    through the blocks and opened with the gateway's own opener
    (`gateway.protocol.capture.open_sealed`: frame tag verified, then decrypted). One entry
    per distinct capture id, the best outcome of its copies: `{capture_id, trigger, block,
    offset, data_key_unwrapped, key_unwrapped, first_frame_opened, first_frame_bytes}`.

    When the sealed format changes, this must keep trying what the attacker has: the raw
    image and the ARC private key, nothing else.
    """
    image = Path(image_path).read_bytes()
    keys = slot_keys(image)
    found: dict[str, dict] = {}
    pos = image.find(b"VCAP")
    while pos >= 0:
        entry = _try_header(image, pos, block_size, arc_private_key, keys)
        if entry is not None:
            best = found.get(entry["capture_id"])
            rank = (entry["first_frame_opened"], entry["key_unwrapped"], entry["data_key_unwrapped"])
            if best is None or rank > (best["first_frame_opened"], best["key_unwrapped"], best["data_key_unwrapped"]):
                found[entry["capture_id"]] = entry
        pos = image.find(b"VCAP", pos + 1)
    return sorted(found.values(), key=lambda e: (e["block"], e["offset"]))


def _try_header(image: bytes, pos: int, block_size: int, key, keys: list[tuple[bytes, bytes]]) -> dict | None:
    """What the ARC key and the slot keys open of the sealed capture whose magic is at `pos`;
    None if no header is there."""
    block, offset = divmod(pos, block_size)
    # The header lies in one block when the capture's file starts there (offset 0), the
    # usual case; elsewhere (metadata, a cache) take the bytes as they stand.
    window = image[pos:(block + 1) * block_size] if offset == 0 else image[pos:pos + block_size]
    try:
        capture_id, _kid, wrapped, _meta, header_mac, header_len = parse_header(window)
    except ProtocolError:
        return None
    entry = {"capture_id": capture_id.hex(), "trigger": None, "block": block, "offset": offset,
             "data_key_unwrapped": False, "key_unwrapped": False, "first_frame_opened": False,
             "first_frame_bytes": 0}
    try:
        dk = key.decrypt(wrapped, asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()),
                                                    algorithm=hashes.SHA256(), label=None))
    except ValueError:
        return entry
    if len(dk) != 32:
        return entry
    entry["data_key_unwrapped"] = True
    candidates = [sk for cid, sk in keys if cid == capture_id] + [sk for cid, sk in keys if cid != capture_id]
    for sk in candidates:
        _k_enc, k_mac, _k_meta = capture_keys(dk, sk, capture_id)
        if hmac_sha256(k_mac, window[:header_len - 32]) == header_mac:
            break
    else:
        return entry
    entry["key_unwrapped"] = True
    header = window[:header_len]
    try:  # the header alone, closed by an end record of no frames, tells the trigger
        empty = bytes([REC_END, 0]) + hmac_sha256(k_mac, capture_id + b"E\x00")
        entry["trigger"] = open_sealed(header + empty, key, sk)[0].trigger_name
    except ProtocolError:
        pass
    head_of_frame = window[header_len:header_len + FRAME_FIXED]
    if len(head_of_frame) < FRAME_FIXED or head_of_frame[0] != REC_FRAME or head_of_frame[1] != 0:
        return entry
    c = struct.unpack_from(">I", head_of_frame, 2)[0]
    frame_len = FRAME_FIXED + c + 32
    if c == 0 or c % 16 or frame_len > len(image):
        return entry
    opened = []

    def opens(frame: bytes) -> bool:
        # The first frame and an end record for one frame (we hold K_mac): the gateway's
        # opener then checks the header MAC and the frame's tag, and decrypts it.
        end = bytes([REC_END, 1]) + hmac_sha256(k_mac, capture_id + b"E" + b"\x01" + frame[-32:])
        try:
            opened.append(open_sealed(header + frame + end, key, sk)[0].frames[0])
            return True
        except ProtocolError:
            return False

    if offset == 0:
        _follow_chain(image, block, header_len, frame_len, block_size, opens)
    else:
        opens(window[header_len:header_len + frame_len])
    if opened:
        entry["first_frame_opened"] = True
        entry["first_frame_bytes"] = len(opened[0].jpeg)
    return entry


def recoverable_with_arc_key(image_path: str | Path, arc_private_key) -> dict:
    """The raw-image figures of a run: sealed headers found, data keys unwrapped, capture keys
    recovered (a slot key from the dump verifies the header) and captures opened."""
    found = scan_sealed_captures(image_path, arc_private_key)
    return {
        "sealed_headers_on_flash": len(found),
        "data_keys_unwrapped_with_arc_key": sum(1 for e in found if e["data_key_unwrapped"]),
        "capture_keys_recoverable_with_arc_key": sum(1 for e in found if e["key_unwrapped"]),
        "captures_recoverable_with_arc_key": sum(1 for e in found if e["first_frame_opened"]),
    }
