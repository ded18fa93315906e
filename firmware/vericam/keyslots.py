"""Key slots: each capture's slot key in its own erase block of raw flash, destroyed by erasing the block.

Theory of operation
-------------------
littlefs does not erase what it deletes: a removed file's blocks keep their bytes until they
are reused, so a raw dump of the flash still holds every "shredded" sealed capture. Sealing
wraps the capture's data key to the ARC, whose private key outlives any device. So a capture
is also bound to a second key, its slot key SK, that never enters littlefs (PROTOCOL.md §4:
the capture's keys come from DK || SK). SK lives in a key slot, an erase block of a raw flash
area outside the file system (hal: `key_slot_area`; an `esp32.Partition` labelled "vckeys"
on a board, blocks after littlefs in the simulator's flash image). Destroying SK destroys the
capture for everyone, the ARC included; only a capture an alarm claimed ever sends SK, to
the ARC, in its release record.

One slot is one erase block, so a slot is destroyed without touching any other (no
read-modify-write of live keys, which a power cut could tear). Its first RECORD_SIZE bytes:

    b"VKS1" || capture_id (16) || SK (32) || SHA-256(the 52 bytes before)[:8]

Read back, a slot is in one of four states (`slot_state`):

    FREE      erased: every byte 0xFF; it can be claimed
    CLAIMED   a whole record whose check matches: the key of one capture
    SHREDDED  magic and capture id, then 40 zero bytes: SK was zeroed, the block not yet
              erased (a shred that a power cut interrupted)
    CORRUPT   anything else: a torn program or erase, worn cells

Claim (`claim`): a fresh SK programmed into a free block, read back, before the capture's
state record or any of its bytes is written; a power cut after it leaves an orphan slot,
which the vault erases at boot. Shred (`zero`, then the vault removes the files, then
`erase`): programming SK and the check to zero can only clear bits, so it needs no erase and
makes the capture unrecoverable at once; the erase afterwards only makes the block reusable.
The capture id stays readable in a zeroed slot, so a boot after a cut between the steps
knows which capture was being shredded and finishes it without reporting a lost key.

Wear. Slots are claimed round robin from a random start at boot, so every block takes its
share of the erases: one erase per capture, 100,000 cycles per block, 32 slots.

This module knows nothing of captures beyond their ids; the vault (vault.py) decides when
a slot is claimed and shredded. It only calls the block device given to it.
"""

import hashlib
import os

MAGIC = b"VKS1"
CAPTURE_ID_SIZE = 16
SLOT_KEY_SIZE = 32
_KEY_AT = 4 + CAPTURE_ID_SIZE                 # 20
_CHECK_AT = _KEY_AT + SLOT_KEY_SIZE           # 52
CHECK_SIZE = 8
RECORD_SIZE = _CHECK_AT + CHECK_SIZE          # 60
_ZEROED = bytes(RECORD_SIZE - _KEY_AT)        # what `zero` programs over SK and the check
_ERASED = b"\xff" * RECORD_SIZE

FREE = "free"
CLAIMED = "claimed"
SHREDDED = "shredded"
CORRUPT = "corrupt"

_IOCTL_BLOCK_COUNT = 4
_IOCTL_BLOCK_SIZE = 5
_IOCTL_ERASE = 6


class KeySlotError(Exception):
    """A key slot could not be read or written as the format says."""


class SlotsExhausted(KeySlotError):
    """Every key slot holds the key of a capture still on the device: none is free."""


def _check(record):
    return hashlib.sha256(memoryview(record)[:_CHECK_AT]).digest()[:CHECK_SIZE]


def build_record(capture_id, slot_key):
    """The RECORD_SIZE bytes programmed into an erased slot."""
    if len(capture_id) != CAPTURE_ID_SIZE or len(slot_key) != SLOT_KEY_SIZE:
        raise KeySlotError("a slot record holds a 16-byte capture id and a 32-byte key")
    rec = bytearray(RECORD_SIZE)
    rec[0:4] = MAGIC
    rec[4:_KEY_AT] = capture_id
    rec[_KEY_AT:_CHECK_AT] = slot_key
    rec[_CHECK_AT:] = _check(rec)
    return rec


def slot_state(raw):
    """(state, capture_id or None) of the first RECORD_SIZE bytes of a slot."""
    if raw == _ERASED:
        return FREE, None
    if raw[0:4] != MAGIC:
        return CORRUPT, None
    capture_id = bytes(raw[4:_KEY_AT])
    if raw[_KEY_AT:] == _ZEROED:
        return SHREDDED, capture_id
    if raw[_CHECK_AT:] == _check(raw):
        return CLAIMED, capture_id
    return CORRUPT, capture_id


def _wipe(buf):
    for i in range(len(buf)):
        buf[i] = 0


class KeySlots:
    """The key-slot area: claim a slot for a capture, read its key, zero it, erase it."""

    def __init__(self, bdev, urandom=os.urandom):
        self._bdev = bdev
        self._urandom = urandom
        self.count = bdev.ioctl(_IOCTL_BLOCK_COUNT, 0)
        self.block_size = bdev.ioctl(_IOCTL_BLOCK_SIZE, 0)
        if not self.count or self.block_size < RECORD_SIZE:
            raise KeySlotError("the key-slot area has %r blocks of %r bytes: it needs at least one "
                               "block of %d bytes" % (self.count, self.block_size, RECORD_SIZE))
        self._buf = bytearray(RECORD_SIZE)  # every read lands here: no allocation per read
        # Slot -> capture id while it holds (or held, until erased) a capture's key; None when
        # free. Filled by scan(); 32 short ids is all the RAM the key slots keep.
        self._owner = [None] * self.count
        self._next = urandom(1)[0] % self.count

    # -- reading -------------------------------------------------------------------------------

    def read(self, slot):
        """(state, capture_id or None) of a slot as it is on flash now."""
        self._bdev.readblocks(slot, self._buf, 0)
        return slot_state(self._buf)

    def scan(self):
        """Read every slot once, at boot: [(slot, state, capture_id or None)] of every slot not FREE.

        Afterwards the slots found CLAIMED or SHREDDED count as taken until `erase`; a
        CORRUPT one as taken too, so nothing is programmed over it before it is erased."""
        found = []
        for slot in range(self.count):
            state, cid = self.read(slot)
            self._owner[slot] = None if state == FREE else (cid or b"")
            if state != FREE:
                found.append((slot, state, cid))
        return found

    def find(self, capture_id):
        """The slot holding this capture's key, or None."""
        for slot in range(self.count):
            if self._owner[slot] == capture_id:
                return slot
        return None

    def free_count(self):
        return sum(1 for owner in self._owner if owner is None)

    def key(self, slot, capture_id):
        """The slot key of capture_id as a bytearray (wipe it after use), or None if the
        slot no longer holds a whole record for that capture: the key is lost."""
        if slot is None:
            return None
        state, cid = self.read(slot)
        if state != CLAIMED or cid != capture_id:
            return None
        key = bytearray(self._buf[_KEY_AT:_CHECK_AT])
        _wipe(self._buf)
        return key

    # -- writing -------------------------------------------------------------------------------

    def claim(self, capture_id):
        """Program a fresh slot key for capture_id into a free slot: (slot, SK as a bytearray).

        Raises SlotsExhausted when no slot is free. A slot that does not read back what was
        programmed (not erased after all, a worn block) is erased and the next one tried."""
        for _ in range(self.count):
            slot = self._next
            self._next = (slot + 1) % self.count
            if self._owner[slot] is not None:
                continue
            key = bytearray(self._urandom(SLOT_KEY_SIZE))
            rec = build_record(capture_id, key)
            self._bdev.writeblocks(slot, rec, 0)
            self._bdev.readblocks(slot, self._buf, 0)
            good = self._buf == rec
            _wipe(rec)
            _wipe(self._buf)
            if good:
                self._owner[slot] = bytes(capture_id)
                return slot, key
            _wipe(key)
            self._owner[slot] = b""
            self.erase(slot)
        raise SlotsExhausted("all %d key slots hold the keys of captures on the device" % self.count)

    def zero(self, slot):
        """Program SK and the check to zero: from here on nobody can open the slot's capture."""
        self._bdev.writeblocks(slot, _ZEROED, _KEY_AT)

    def erase(self, slot):
        """Erase the slot's block: it is free again."""
        self._bdev.ioctl(_IOCTL_ERASE, slot)
        self._owner[slot] = None
