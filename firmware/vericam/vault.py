"""The vault: sealed captures on the device's flash, each with its decision and its key slot, surviving power loss.

Layout under the vault directory (littlefs on the device):

    <id>.cap   the sealed capture (docs/PROTOCOL.md section 4), written as <id>.tmp and
               renamed when its last byte is on flash
    <id>.st    its state record, JSON, always replaced via <id>.sx + rename:
               {"s": "capturing"|"held"|"sending", "t": trigger, "a": alarm id hex, "ts": time}
               (what each state means, and after a reboot, is delivery.py's)

and, outside littlefs, the capture's key slot (keyslots.py), which holds the slot key SK its
keys are derived from. Nothing in littlefs is plaintext: frames are sealed before their
first byte is written (seal.py). And nothing in littlefs opens without SK, so a capture is
destroyed by destroying its slot, not by removing its files (littlefs leaves removed files'
blocks as they were, for anyone with a raw dump).

Order of writes, so that a power cut anywhere leaves a whole capture with its record and
its slot, or debris that `recover()` removes, and never a capture that opens after its shred:

    begin   claim the slot (SK programmed), then the state record, then <id>.tmp
    commit  rename <id>.tmp -> <id>.cap
    shred   zero SK in the slot (from here nobody can open the capture), remove the files,
            erase the slot's block

The .st files and the slots are the index: at boot, `recover()` lists both and reconciles
them (its docstring says how).
"""

import json
import os
from binascii import hexlify, unhexlify

from vericam.delivery import RECORD_CAPTURING
from vericam.keyslots import CLAIMED, SHREDDED

SUFFIX_CAP = ".cap"
SUFFIX_TMP = ".tmp"
SUFFIX_STATE = ".st"
SUFFIX_STATE_TMP = ".sx"
END_RECORD = 34  # seal.END_RECORD: the end record closes every sealed capture
RECORD_END = 0x45


class VaultError(Exception):
    pass


class FlashFull(VaultError):
    pass


def _hex(b):
    return hexlify(b).decode()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
        return True
    except OSError:
        return False


class CaptureWriter:
    """Appends sealed bytes to one capture's temporary file; `commit()` makes it whole.

    `slot_key` is the capture's SK, for the sealer; `forget_key()` wipes it once the header
    is sealed, and commit() and abort() wipe it anyway."""

    def __init__(self, vault, capture_id, slot_key):
        self.vault = vault
        self.capture_id = capture_id
        self.slot_key = slot_key
        self.size = 0
        self._f = open(vault._path(capture_id, SUFFIX_TMP), "wb")

    def forget_key(self):
        key = self.slot_key
        if key is not None:
            for i in range(len(key)):
                key[i] = 0
        self.slot_key = None

    def _file(self):
        f = self._f
        if f is None:
            raise VaultError("capture %s is already committed or aborted: begin a new one" % _hex(self.capture_id))
        return f

    def write(self, data):
        self._file().write(data)
        self.size += len(data)

    def write_frame(self, sealer, index, t, stream, length, buf, probe=None):
        """Stream one camera frame through `sealer` onto the flash, `len(buf)` bytes at a time.

        `buf` is preallocated by the caller and reused for every piece, so RAM holds one
        piece of plaintext and its ciphertext, never a frame. `probe()`, if given, is called
        after each piece (the device benchmark samples gc.mem_alloc() there).
        """
        self.write(sealer.begin_frame(index, t, length))
        view = memoryview(buf)
        left = length
        while left > 0:
            n = stream.readinto(view[:min(len(buf), left)])
            if not n:
                raise OSError("camera frame ended early: %d of %d bytes missing" % (left, length))
            self.write(sealer.update(view[:n]))
            left -= n
            if probe is not None:
                probe()
        self.write(sealer.end_frame())

    def commit(self):
        self.forget_key()
        self._file().close()
        self._f = None
        os.rename(self.vault._path(self.capture_id, SUFFIX_TMP), self.vault._path(self.capture_id, SUFFIX_CAP))
        return self.size

    def abort(self):
        self.forget_key()
        if self._f is not None:
            self._f.close()
            self._f = None
        self.vault.shred(self.capture_id)


class Vault:
    """Sealed captures on flash, indexed by their state records, keyed by their key slots."""

    def __init__(self, root, slots, reserve_bytes=64 * 1024):
        self.root = root
        self.slots = slots  # keyslots.KeySlots
        self.reserve_bytes = reserve_bytes
        try:
            os.mkdir(root)
        except OSError:
            pass

    def _path(self, capture_id, suffix):
        return "%s/%s%s" % (self.root, _hex(capture_id), suffix)

    # -- space --------------------------------------------------------------------------------

    def free_bytes(self):
        st = os.statvfs(self.root)
        return st[0] * st[3]

    def total_bytes(self):
        st = os.statvfs(self.root)
        return st[0] * st[2]

    def has_room_for(self, nbytes):
        return self.free_bytes() - nbytes >= self.reserve_bytes

    # -- writing ------------------------------------------------------------------------------

    def begin(self, capture_id, trigger, expected_bytes=0, alarm_id=None):
        """Start a capture: its key slot, then its state record, then its temporary file.

        `alarm_id`: the capture is claimed from its first byte (a cover, sent under that id).
        Raises FlashFull, or keyslots.SlotsExhausted when every slot holds a capture's key.
        """
        if expected_bytes and not self.has_room_for(expected_bytes):
            raise FlashFull("flash full: %d bytes free, a capture needs %d" % (self.free_bytes(), expected_bytes))
        _slot, key = self.slots.claim(capture_id)
        try:
            self.set_state(capture_id, RECORD_CAPTURING, trigger, alarm_id)
            return CaptureWriter(self, capture_id, key)
        except Exception:
            for i in range(len(key)):
                key[i] = 0
            self.shred(capture_id)
            raise

    def set_state(self, capture_id, state, trigger, alarm_id=None, ts=0):
        record = {"s": state, "t": trigger, "ts": ts}
        if alarm_id is not None:
            record["a"] = _hex(alarm_id)
        tmp = self._path(capture_id, SUFFIX_STATE_TMP)
        with open(tmp, "w") as f:
            f.write(json.dumps(record))
        os.rename(tmp, self._path(capture_id, SUFFIX_STATE))

    # -- reading ------------------------------------------------------------------------------

    def open_sealed(self, capture_id):
        return open(self._path(capture_id, SUFFIX_CAP), "rb")

    def sealed_size(self, capture_id):
        return os.stat(self._path(capture_id, SUFFIX_CAP))[6]

    def state(self, capture_id):
        try:
            with open(self._path(capture_id, SUFFIX_STATE)) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def captures(self):
        """[(capture_id, record)] of every whole capture in the vault."""
        out = []
        for name in os.listdir(self.root):
            stem = name[:-len(SUFFIX_STATE)]
            if name.endswith(SUFFIX_STATE) and _exists(self.root + "/" + stem + SUFFIX_CAP):
                cid = unhexlify(stem)
                rec = self.state(cid)
                if rec is not None:
                    out.append((cid, rec))
        return out

    def count(self):
        return len(self.captures())

    def slot_key(self, capture_id):
        """The capture's SK from its key slot (a bytearray: wipe it), or None if the slot is lost."""
        return self.slots.key(self.slots.find(capture_id), capture_id)

    def frames_in(self, capture_id):
        """The frame count of a whole sealed capture, from its end record (§4.3)."""
        with self.open_sealed(capture_id) as f:
            f.seek(-END_RECORD, 2)
            end = f.read(2)
        if len(end) != 2 or end[0] != RECORD_END:
            raise VaultError("capture %s does not close with an end record" % _hex(capture_id))
        return end[1]

    # -- destroying ---------------------------------------------------------------------------

    def shred(self, capture_id):
        """Destroy a capture: zero its slot key, remove its files, erase its slot.

        Zeroing SK is what destroys the capture, for everyone; it comes first, so a power cut
        later in the shred leaves nothing that opens (and a slot that tells `recover()` which
        capture to finish destroying). The files go sealed file first, then the record, so
        no record points at nothing. The erase only makes the slot reusable."""
        slot = self.slots.find(capture_id)
        if slot is not None:
            self.slots.zero(slot)
        self._remove_files(capture_id)
        if slot is not None:
            self.slots.erase(slot)

    def _remove_files(self, capture_id):
        _remove(self._path(capture_id, SUFFIX_TMP))
        _remove(self._path(capture_id, SUFFIX_CAP))
        _remove(self._path(capture_id, SUFFIX_STATE_TMP))
        _remove(self._path(capture_id, SUFFIX_STATE))

    # -- boot ---------------------------------------------------------------------------------

    def recover(self):
        """After a boot: remove debris, reconcile files and key slots -> (captures, removed, lost).

        `captures` are the whole captures with their key, [(capture_id, record)], for the
        delivery's `on_boot`; `removed` counts what was cleared away; `lost` are the whole
        captures whose key slot is gone or corrupt, [(capture_id, record)]: nobody can open
        them any more, so their files are removed, and the agent reports them.

        A capture still being written when the power went is incomplete and removed. Then
        each slot that is not free:
          claimed, its capture whole     kept
          claimed, no whole capture      an orphan (a cut between the claim and the first
                                         write, or in the middle of a capture): zeroed, erased
          shredded (SK zeroed)           a shred the power cut: its files removed, the slot
                                         erased; nothing to report, the capture was done with
          corrupt                        erased; its capture, if any, is lost
        """
        found = self.slots.scan()
        removed = 0
        names = os.listdir(self.root)
        for name in names:
            path = self.root + "/" + name
            if name.endswith(SUFFIX_TMP) or name.endswith(SUFFIX_STATE_TMP):
                _remove(path)
                removed += 1
        for name in os.listdir(self.root):
            path = self.root + "/" + name
            if name.endswith(SUFFIX_STATE):
                stem = name[:-len(SUFFIX_STATE)]
                rec = None
                try:
                    with open(path) as f:
                        rec = json.loads(f.read())
                except (OSError, ValueError):
                    pass
                has_cap = _exists(self.root + "/" + stem + SUFFIX_CAP)
                if rec is None or not has_cap:
                    # A record without its sealed file: the capture never finished.
                    _remove(path)
                    removed += 1
            elif name.endswith(SUFFIX_CAP):
                stem = name[:-len(SUFFIX_CAP)]
                if not _exists(self.root + "/" + stem + SUFFIX_STATE):
                    _remove(path)
                    removed += 1
        whole = {}
        for cid, rec in self.captures():
            whole[cid] = rec
        keyed = {}
        for slot, state, cid in found:
            if state == CLAIMED and cid in whole and cid not in keyed:
                keyed[cid] = slot
                continue
            if state == SHREDDED and cid in whole:
                self._remove_files(cid)
                del whole[cid]
            elif state == CLAIMED:
                self.slots.zero(slot)
            self.slots.erase(slot)
            removed += 1
        captures, lost = [], []
        for cid, rec in whole.items():
            if cid in keyed:
                captures.append((cid, rec))
            else:
                self._remove_files(cid)
                lost.append((cid, rec))
        return captures, removed, lost
