"""The envelope counter: strictly increasing over the device's life, leased from flash in blocks."""

import os


class MessageCounter:
    """Hands out counters; before using a block of `block` counters it records the block's end.

    After a reboot counting resumes at the last recorded end, so a counter is never reused
    and at most block-1 are skipped, at one flash write per block (docs/PROTOCOL.md section 3).
    """

    def __init__(self, path, block=256):
        self.path = path
        self.block = block
        self.value = self._read()
        self.lease_end = self.value

    def _read(self):
        try:
            with open(self.path) as f:
                return int(f.read().strip() or "1")
        except (OSError, ValueError):
            return 1

    def _write(self, end):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(end))
        os.rename(tmp, self.path)

    def next(self):
        if self.value >= self.lease_end:
            self.lease_end = self.value + self.block
            self._write(self.lease_end)
        v = self.value
        self.value += 1
        return v
