"""Need-to-know: every read of personal data leaves an audit record, and a customer's restriction hides their data.

Reads
-----
The console, its JSON API (people and API tokens alike) and the command line call
`record_read` for every page or answer that shows personal data: the alarm queue, one alarm,
the device list, the activity log, the audit trail, a household's access report. Photos have
their own record per photo served ("view image", `gateway.governance.alarms.record_view`, or
`record_photo_view` here when a supervisor opened them with a reason).

The queue refreshes itself every 2 s in an operator's browser. A record per refresh would add
nothing but noise, so a `Reads` memory (one per console) lets a read through unrecorded when the
same person read the same thing with the same result (its `digest`) less than `READ_WINDOW_MS`
ago: the record already written says they had exactly that in view. A new alarm in the queue,
another filter, or the window running out writes a new record. The command line has no memory:
each command that reads is one record.

Restriction (GDPR art. 18)
--------------------------
While a customer's processing is restricted (`vericam subject restrict`), the gateway goes on
storing what the customer's devices send (restriction is not erasure), but it is not shown:
the queue leaves the customer's alarms out for operators and API tokens, their alarm pages are
refused, and a supervisor sees the alarm without its site and its photos only after giving a
reason (`open photos`, audited), as for a closed alarm. What still goes to the ARC's alarm
software over DC-09 is in `gateway.forward.forwarder` (`FORWARDED_UNDER_RESTRICTION`) and
docs/OPERATING.md.
"""

from __future__ import annotations

import hashlib
import json
import threading

from gateway.governance import audit
from gateway.storage.access_report import AccessQueries
from gateway.storage.store import Store

READ_WINDOW_MS = 15 * 60 * 1000
RESTRICTED_SITE = "(restricted)"


class Reads:
    """What each reader last had recorded, to leave repeated identical reads out (see the module docstring)."""

    def __init__(self, window_ms: int = READ_WINDOW_MS, max_entries: int = 10_000):
        self.window_ms, self.max_entries = window_ms, max_entries
        self._last: dict[tuple, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def new(self, key: tuple, digest: str, now_ms: int) -> bool:
        """Whether this read must be recorded; if so, it is remembered as the last one of `key`."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and last[0] == digest and 0 <= now_ms - last[1] < self.window_ms:
                return False
            if len(self._last) >= self.max_entries:
                self._last.clear()  # bounded memory; the worst case is one record more per reader
            self._last[key] = (digest, now_ms)
            return True

    def forget(self, key: tuple) -> None:
        """The record of `key` was not written (its transaction failed): the next read writes one."""
        with self._lock:
            self._last.pop(key, None)


def digest_of(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def record_read(store: Store, who: str, role: str, what: str, why: str, now_ms: int, *, subject: str | None = None,
                detail: dict | None = None, reads: Reads | None = None, shown=None) -> bool:
    """Audit that `who` (in `role`) read `what`; `shown` is what they saw, for the digest (default: `detail`).
    Returns whether a record was written (False: the same read is on record from less than the window ago)."""
    key = (who, what, subject)
    if reads is not None and not reads.new(key, digest_of(detail if shown is None else shown), now_ms):
        return False
    try:
        with store.transaction():
            audit.append(store, who, what, why, at_ms=now_ms, subject=subject, detail={"role": role, **(detail or {})})
    except BaseException:
        if reads is not None:
            reads.forget(key)
        raise
    return True


def record_opening(store: Store, who: str, role: str, device: str, alarm_id: str, reason: str, why_needed: str,
                   now_ms: int) -> None:
    """Audit that a supervisor opened the photos of an alarm they may see only with a reason."""
    with store.transaction():
        audit.append(store, who, "open photos", reason, at_ms=now_ms, subject=f"alarm:{device}/{alarm_id}",
                     detail={"device": device, "alarm": alarm_id, "role": role, "because": why_needed})


def record_photo_view(store: Store, who: str, role: str, device: str, alarm_id: str, photo: dict, reason: str,
                      now_ms: int) -> None:
    """Audit one photo served to a supervisor who gave `reason` for opening a closed or restricted alarm."""
    with store.transaction():
        audit.append(store, who, "view image", reason, at_ms=now_ms, subject=photo["id"],
                     content_hash=photo["sha256"],
                     detail={"device": device, "alarm": alarm_id, "role": role, "frame": photo["frame_index"],
                             "reason": reason})


def clean_reason(reason: str | None) -> str:
    """A reason as recorded: stripped, at most 500 characters, "" if none was given."""
    return " ".join((reason or "").split())[:500]


def restricted_devices(store: Store) -> set[str]:
    """The devices whose customer has restricted processing."""
    return AccessQueries(store.db).restricted_devices()


def is_restricted(store: Store, device: str) -> bool:
    return AccessQueries(store.db).is_restricted(device)


def photo_reads(store: Store, devices: list[str], customer: str) -> list[dict]:
    """The audit records of reads of these devices' photos and of the customer's own exports."""
    return AccessQueries(store.db).photo_reads(devices, customer)
