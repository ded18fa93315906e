"""The vault: sealed captures on the device's flash, each with its decision, surviving power loss.

Layout under the vault directory (littlefs on the device):

    <id>.cap   the sealed capture (docs/PROTOCOL.md section 4), written as <id>.tmp and
               renamed when its last byte is on flash
    <id>.st    its state record, JSON, always replaced via <id>.sx + rename:
               {"s": "capturing"|"held"|"sending", "t": trigger, "a": alarm id hex, "ts": time}
               (what each state means, and after a reboot, is delivery.py's)

The .st files are the index: a directory listing at boot gives every capture and its
decision. The state record is written before the sealed file is started, so a power cut at
any point leaves either a complete capture with its record or debris that `recover()`
removes. Nothing in here is plaintext: frames are sealed before their first byte is written
(see seal.py), so a deleted capture cannot be read back from a raw dump of the flash.
"""

import json
import os
from binascii import hexlify, unhexlify

from vericam.delivery import RECORD_CAPTURING

SUFFIX_CAP = ".cap"
SUFFIX_TMP = ".tmp"
SUFFIX_STATE = ".st"
SUFFIX_STATE_TMP = ".sx"


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
    """Appends sealed bytes to one capture's temporary file; `commit()` makes it whole."""

    def __init__(self, vault, capture_id):
        self.vault = vault
        self.capture_id = capture_id
        self.size = 0
        self._f = open(vault._path(capture_id, SUFFIX_TMP), "wb")

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
        self._file().close()
        self._f = None
        os.rename(self.vault._path(self.capture_id, SUFFIX_TMP), self.vault._path(self.capture_id, SUFFIX_CAP))
        return self.size

    def abort(self):
        if self._f is not None:
            self._f.close()
            self._f = None
        self.vault.shred(self.capture_id)


class Vault:
    """Sealed captures on flash, indexed by their state records."""

    def __init__(self, root, reserve_bytes=64 * 1024):
        self.root = root
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

    def begin(self, capture_id, trigger, expected_bytes=0):
        """Start a capture: its state record first, then its temporary file."""
        if expected_bytes and not self.has_room_for(expected_bytes):
            raise FlashFull("flash full: %d bytes free, a capture needs %d" % (self.free_bytes(), expected_bytes))
        self.set_state(capture_id, RECORD_CAPTURING, trigger)
        return CaptureWriter(self, capture_id)

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

    # -- destroying ---------------------------------------------------------------------------

    def shred(self, capture_id):
        """Destroy a capture: sealed file first, then its record, so no record points at nothing."""
        _remove(self._path(capture_id, SUFFIX_TMP))
        _remove(self._path(capture_id, SUFFIX_CAP))
        _remove(self._path(capture_id, SUFFIX_STATE_TMP))
        _remove(self._path(capture_id, SUFFIX_STATE))

    # -- boot ---------------------------------------------------------------------------------

    def recover(self):
        """After a boot: remove half-written debris and return the whole captures.

        A capture that was still being written when the power went is incomplete and
        removed; a whole one keeps its record, which the delivery reads (`on_boot`).
        """
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
        return self.captures(), removed
