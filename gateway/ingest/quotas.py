"""Per-device quotas at the ingest: messages and bytes per second, and bytes waiting in reassembly.

One device, even one whose key was stolen, must not be able to flood the gateway: fill its
disk, or keep it so busy that another device's alarm waits. So every device has two token
buckets, one counting messages and one counting bytes, each with a burst it may spend at once
and a rate at which it refills; and the captures it has in reassembly may together claim only
so many bytes (their stated totals, §5). A message over a quota is refused as `rate_limited`
(PROTOCOL.md §5): counted, acknowledged like every refusal so that it never blocks the MQTT
session, and told to the ARC as a technical event at most once a minute
(`gateway.ingest.notices`).

Only a message that passed every §3 check spends tokens: one that anyone could send (a
forgery, a replay, another device's message on this topic) cannot use up a device's quota and
so cannot silence it. What a flood costs the gateway past its quota is the parse, the key
lookup, the MAC and the counter check of each message, no write but its count: that is what
keeps another device's alarm from waiting behind it.

The defaults (`DeviceLimits`) are for a real device at its worst: an alarm whose photos and
the held photos before it go out at once, at link speed, and the backlog a broker delivers
at once after a gateway outage. A 3-frame capture of 130 KB, padded to 128 KiB (§4.5), is
64 chunks of 2 KiB, about 135 KB on the wire; the burst holds 30 such captures and their
alarm events back to back, or the 4 a device may have in reassembly at their 4 MiB maximum.
Sustained, 100 messages and 1 MiB a second is more than a device's uplink carries. The
figures are per gateway process: with several gateways in one `$share` group a device gets
that many times as much.

The buckets run on the transport clock (`time.monotonic`), not the world clock of a scaled
simulation, and live in memory (a restart refills them). `batch()` keeps them in step with
the ingest's transaction: a batch that fails to commit, and is retried, has spent nothing.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from gateway.protocol.errors import RateLimited


@dataclass(frozen=True)
class DeviceLimits:
    """What one device may send to one gateway process."""

    messages_per_s: float = 100.0
    message_burst: int = 2000
    bytes_per_s: float = 1 << 20
    byte_burst: int = 16 << 20
    reassembly_bytes: int = 8 << 20  # the stated totals of its captures in reassembly, together

    def __post_init__(self):
        if min(self.messages_per_s, self.bytes_per_s) <= 0 or min(self.message_burst, self.byte_burst) < 1:
            raise ValueError("device limits: every rate must be above 0 and every burst at least 1")
        if self.reassembly_bytes < 1:
            raise ValueError("device limits: reassembly_bytes must be at least 1")


class Quotas:
    """The token buckets of every device heard from; raises `RateLimited` past a quota."""

    def __init__(self, limits: DeviceLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}  # device -> (messages, bytes, at)
        self._undo: dict[str, tuple | None] | None = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Give back what the batch spent if it fails (it is retried, or its messages come again)."""
        self._undo = {}
        try:
            yield
        except BaseException:
            for device, before in self._undo.items():
                if before is None:
                    self._buckets.pop(device, None)
                else:
                    self._buckets[device] = before
            raise
        finally:
            self._undo = None

    def spend(self, device: str, size: int) -> None:
        """One message of `size` bytes from `device`; raises `RateLimited` (spending nothing) past a quota."""
        lim = self.limits
        now = self.clock()
        before = self._buckets.get(device)
        messages, nbytes, at = before if before is not None else (lim.message_burst, lim.byte_burst, now)
        elapsed = max(0.0, now - at)
        messages = min(lim.message_burst, messages + elapsed * lim.messages_per_s)
        nbytes = min(lim.byte_burst, nbytes + elapsed * lim.bytes_per_s)
        if self._undo is not None and device not in self._undo:
            self._undo[device] = before
        if messages < 1:
            self._buckets[device] = (messages, nbytes, now)
            raise RateLimited(f"device {device} sent more than {lim.message_burst} messages at once or "
                              f"{lim.messages_per_s:g} a second for long: refused until it slows down",
                              device=device)
        if nbytes < size:
            self._buckets[device] = (messages, nbytes, now)
            raise RateLimited(f"device {device} sent more than {lim.byte_burst} bytes at once or "
                              f"{lim.bytes_per_s:g} a second for long: refused until it slows down",
                              device=device)
        self._buckets[device] = (messages - 1, nbytes - size, now)

    def check_reassembly(self, device: str, reserved: int) -> None:
        """Raise `RateLimited` if the device's captures in reassembly would claim more than its share."""
        if reserved > self.limits.reassembly_bytes:
            raise RateLimited(f"device {device}'s captures in reassembly would hold {reserved} bytes, more than "
                              f"its {self.limits.reassembly_bytes}: a new capture waits until one is receipted",
                              device=device)
