"""Technical events the gateway raises about a device it refuses: at most one per device and code a minute.

Some refusals are not noise an operator can ignore: a device held to its rate limit
(`rate_limited`), a counter that leaps out of bounds (`counter_jump`), authentic messages far
below the device's counter (`counter_conflict`: another holder of its key, or a device that
lost its counter). Each is stored in the device's activity log as a technical event, like
`supervision_lost`, with `source: gateway`, and logged once. A device that keeps causing it
gets one event a minute, which says how many refusals it stands for, so a flood cannot fill
the activity log or the gateway's log.

The timing is in memory, per gateway process: after a restart, or with several gateways in a
`$share` group, each may store its own event in the first minute. It runs on the transport
clock (`time.monotonic`), not the world clock of a scaled simulation. `batch()` keeps it in
step with the ingest's transaction: if the batch rolls back, so do the events it stored, and
so does what this module remembers of them.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from gateway.storage.store import Store

INTERVAL_S = 60.0


class Notices:
    """Raises technical events about devices, one per (device, code) per `interval_s`."""

    def __init__(self, store: Store, log: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 interval_s: float = INTERVAL_S):
        self.store = store
        self.log = log
        self.clock = clock
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}   # when the last event was stored
        self._since: dict[tuple[str, str], int] = {}    # refusals since then, not yet in an event
        self._undo: dict[tuple[str, str], tuple] | None = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Undo what the batch changed here if it fails (its events roll back with it)."""
        self._undo = {}
        try:
            yield
        except BaseException:
            for key, (last, since) in self._undo.items():
                self._put(self._last, key, last)
                self._put(self._since, key, since)
            raise
        finally:
            self._undo = None

    def refused(self, device: str, code: str, detail: str, at_ms: int) -> bool:
        """One refusal of `device` for `code`; store a technical event if none went out for a minute."""
        key = (device, code)
        if self._undo is not None and key not in self._undo:
            self._undo[key] = (self._last.get(key), self._since.get(key))
        count = self._since.get(key, 0) + 1
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._since[key] = count
            return False
        self.store.events.add(device, {"kind": "technical", "code": code, "source": "gateway", "refused": count,
                                       "detail": detail}, at_ms, clock_unset=False)
        self._last[key], self._since[key] = now, 0
        self.log(f"technical alarm {code}: device={device}: {count} message(s) refused since the last such "
                 f"alarm: {detail}")
        return True

    @staticmethod
    def _put(table: dict, key, value) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
