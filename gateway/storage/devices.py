"""Device rows: provisioned keys, the replay window, last seen and status, supervision, customer link.

A device's key is kept wrapped under the key store's master KEK; `keys_for` unwraps and derives
the envelope keys (cached by wrapped key). Inside an ingest batch (`UnitOfWork.batch`) the
replay window, last-seen time, clock flag and last status counter are read from
`LockedDevices`, the batch's locked copy of the rows, instead of one statement per message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.protocol.envelope import ReplayWindow, counter_ceiling
from gateway.protocol.keys import DeviceKeys
from gateway.storage.errors import StoreError
from gateway.storage.keystore import KeyStore
from gateway.storage.sqldb import Database

if TYPE_CHECKING:
    from gateway.storage.unit_of_work import UnitOfWork


def _in(ids: list) -> str:
    return ",".join("?" * len(ids))


class Devices:
    def __init__(self, db: Database, keys: KeyStore, uow: "UnitOfWork"):
        self.db = db
        self.keys = keys
        self.uow = uow
        self._key_cache: dict[bytes, DeviceKeys] = {}

    # Provisioning --------------------------------------------------------------------------
    def add(self, device_id: str, site: str, device_key: bytes, at_ms: int) -> None:
        """Register a device with its key (kept wrapped). Raises StoreError if the id is taken."""
        wrapped = self.keys.wrap_device_key(device_key)
        if self.db.execute("SELECT 1 FROM devices WHERE id = ?", (device_id,)).fetchone():
            raise StoreError(f"device {device_id} is already provisioned: revoke it or pick another id")
        self.db.execute("INSERT INTO devices (id, site, device_key, created_at_ms) VALUES (?, ?, ?, ?)",
                        (device_id, site, wrapped, at_ms))

    def revoke(self, device_id: str) -> bool:
        """Refuse the device's messages from now on; False if there is no such device."""
        return self.db.execute("UPDATE devices SET revoked = 1 WHERE id = ?", (device_id,)).rowcount > 0

    def rekey(self, device_id: str, device_key: bytes) -> None:
        """A new device key; the device is accepted again, its replay window and status counter start afresh."""
        self.db.execute("UPDATE devices SET device_key = ?, revoked = 0, counter_high = -1, "
                        "counter_bitmap = '0', status_counter = -1 WHERE id = ?",
                        (self.keys.wrap_device_key(device_key), device_id))

    def get(self, device_id: str) -> dict | None:
        """id, site, revoked, customer_id of one device (never its key)."""
        row = self.db.execute("SELECT id, site, revoked, customer_id FROM devices WHERE id = ?",
                              (device_id,)).fetchone()
        return dict(row) if row else None

    def list(self) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT id, site, revoked, online, fw, last_seen_ms, clock_unset, counter_high, "
            "created_at_ms FROM devices ORDER BY id")]

    def sites(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT site FROM devices ORDER BY site")]

    # Customers -----------------------------------------------------------------------------
    def link_customer(self, device_id: str, customer: str) -> bool:
        """False if there is no such device."""
        return self.db.execute("UPDATE devices SET customer_id = ? WHERE id = ?",
                               (customer, device_id)).rowcount > 0

    def of_customer(self, customer: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM devices WHERE customer_id = ? ORDER BY id",
                                              (customer,))]

    def for_export(self, device_ids: list[str]) -> list[dict]:
        """The rows of a data-subject export: everything but the key and the replay state."""
        if not device_ids:
            return []
        return [dict(r) for r in self.db.execute(
            f"SELECT id, site, customer_id, revoked, online, fw, last_seen_ms, created_at_ms FROM devices "
            f"WHERE id IN ({_in(device_ids)}) ORDER BY id", device_ids)]

    # Envelope checks -----------------------------------------------------------------------
    def keys_for(self, device_id: str) -> DeviceKeys | None:
        """The device's derived keys, or None if it is unknown or revoked."""
        locked = self.uow.locked_devices
        if locked is not None:
            row = locked.row(device_id)
        else:
            row = self.db.execute("SELECT device_key, revoked FROM devices WHERE id = ?", (device_id,)).fetchone()
        if row is None or row["revoked"]:
            return None
        wrapped = bytes(row["device_key"])
        keys = self._key_cache.get(wrapped)
        if keys is None:
            keys = DeviceKeys.derive(self.keys.unwrap_device_key(wrapped))
            self._key_cache[wrapped] = keys
        return keys

    def replay_window(self, device_id: str) -> ReplayWindow:
        # Locked till the commit on PostgreSQL: two gateways must not both accept one counter.
        locked = self.uow.locked_devices
        if locked is not None:
            row = locked.row(device_id)
            return row.window if row is not None else ReplayWindow()
        row = self.db.execute("SELECT counter_high, counter_bitmap FROM devices WHERE id = ?" + self.db.for_update,
                              (device_id,)).fetchone()
        return ReplayWindow(row[0], int(row[1], 16)) if row else ReplayWindow()

    def save_replay_window(self, device_id: str, window: ReplayWindow) -> None:
        locked = self.uow.locked_devices
        if locked is not None:
            row = locked.row(device_id)
            if row is not None:
                row.window, row.changed = window, True
            return
        self.db.execute("UPDATE devices SET counter_high = ?, counter_bitmap = ? WHERE id = ?",
                        (window.high, format(window.bitmap, "x"), device_id))

    def last_status_counter(self, device_id: str) -> int:
        locked = self.uow.locked_devices
        if locked is not None:
            row = locked.row(device_id)
            return row.status_counter if row is not None else -1
        row = self.db.execute("SELECT status_counter FROM devices WHERE id = ?", (device_id,)).fetchone()
        return row[0] if row else -1

    def counter_ceiling(self, device_id: str, now_ms: int) -> int | None:
        """The highest counter the device may use now (PROTOCOL §3 "Counters"); None if there is no such device.

        Measured from the highest counter seen from it, in its replay window or its last status,
        and from when it was last heard; for a device with neither (new, or its key just
        rotated), from 0 and from when it was provisioned."""
        locked = self.uow.locked_devices
        if locked is not None:
            row = locked.row(device_id)
            if row is None:
                return None
            high, status, last_seen, created = row.window.high, row.status_counter, row.last_seen_ms, row.created_at_ms
        else:
            found = self.db.execute("SELECT counter_high, status_counter, last_seen_ms, created_at_ms FROM devices "
                                    "WHERE id = ?", (device_id,)).fetchone()
            if found is None:
                return None
            high, status, last_seen, created = found
        highest = max(high, status)
        since = last_seen if highest >= 0 and last_seen is not None else created
        return counter_ceiling(highest, (now_ms - since) / 1000)

    def touch(self, device_id: str, at_ms: int, clock_unset: bool = False) -> None:
        """Heard from the device at `at_ms` (never moves "last seen" back); its clock flag."""
        locked = self.uow.locked_devices
        if locked is not None:
            row = locked.row(device_id)
            if row is not None:
                row.last_seen_ms = max(row.last_seen_ms or 0, at_ms)
                row.clock_unset, row.changed = int(clock_unset), True
            return
        self.db.execute("UPDATE devices SET last_seen_ms = greatest(coalesce(last_seen_ms, 0), ?), "
                        "clock_unset = ? WHERE id = ?", (at_ms, int(clock_unset), device_id))

    def set_status(self, device_id: str, online: bool, fw: str | None, at_ms: int, counter: int) -> None:
        self.db.execute("UPDATE devices SET online = ?, fw = coalesce(?, fw), status_counter = ? WHERE id = ?",
                        (int(online), fw, counter, device_id))
        locked = self.uow.locked_devices
        if locked is not None and (row := locked.row(device_id)) is not None:
            row.status_counter = counter  # written above; kept here for the batch's next reads
        self.touch(device_id, at_ms)

    # Supervision ---------------------------------------------------------------------------
    def supervised(self) -> list[dict]:
        """id, last_seen_ms, supervision_lost_ms of every device that is installed (heard once) and not revoked."""
        return [dict(r) for r in self.db.execute(
            "SELECT id, last_seen_ms, supervision_lost_ms FROM devices "
            "WHERE revoked = 0 AND last_seen_ms IS NOT NULL").fetchall()]

    def set_supervision_lost(self, device_id: str, at_ms: int | None) -> None:
        """When the device's silence raised supervision_lost; None once it is heard again."""
        self.db.execute("UPDATE devices SET supervision_lost_ms = ? WHERE id = ?", (at_ms, device_id))


class LockedDevice:
    """A device row as an ingest batch holds it (locked) between its first read and the commit."""

    __slots__ = ("device_key", "revoked", "window", "last_seen_ms", "clock_unset", "status_counter", "created_at_ms",
                 "changed")

    def __init__(self, row):
        self.device_key, self.revoked = row["device_key"], row["revoked"]
        self.window = ReplayWindow(row["counter_high"], int(row["counter_bitmap"], 16))
        self.last_seen_ms, self.clock_unset = row["last_seen_ms"], row["clock_unset"]
        self.status_counter = row["status_counter"]  # written by Devices.set_status itself
        self.created_at_ms = row["created_at_ms"]
        self.changed = False

    def __getitem__(self, name: str):  # read like the row it came from (Devices.keys_for)
        return getattr(self, name)

    def snapshot(self) -> tuple:
        return (self.window.high, self.window.bitmap, self.last_seen_ms, self.clock_unset, self.changed,
                self.status_counter)

    def restore(self, snap: tuple) -> None:
        # a new window object: the rolled-back message may still hold the one it changed
        self.window = ReplayWindow(snap[0], snap[1])
        self.last_seen_ms, self.clock_unset, self.changed, self.status_counter = snap[2], snap[3], snap[4], snap[5]


class LockedDevices:
    """The device rows one ingest batch has locked: read once, changed in memory, written once.

    Each savepoint remembers the rows as they were when it first touched them, so a failed
    message's changes are undone (`rollback`) and a good one's are kept for an enclosing
    savepoint to undo (`release`)."""

    def __init__(self, db: Database):
        self.db = db
        self._rows: dict[str, LockedDevice | None] = {}
        self._undo: list[dict[str, tuple]] = []  # one per open savepoint, innermost last

    def load(self, device_ids: list[str]) -> None:
        """Lock and read these rows (in the order given: sorted, so batches queue, never deadlock)."""
        for i in range(0, len(device_ids), 500):
            part = device_ids[i:i + 500]
            for device_id in part:
                self._rows[device_id] = None  # unknown unless a row says otherwise
            rows = self.db.execute(
                "SELECT id, device_key, revoked, counter_high, counter_bitmap, last_seen_ms, clock_unset, "
                f"status_counter, created_at_ms FROM devices WHERE id IN ({_in(part)}) ORDER BY id" + self.db.for_update, part).fetchall()
            for row in rows:
                self._rows[row["id"]] = LockedDevice(row)

    def row(self, device_id: str) -> LockedDevice | None:
        """The batch's copy of a device row (locked on first use), remembered for undo by the current savepoint."""
        if device_id not in self._rows:
            self.load([device_id])
        row = self._rows[device_id]
        if row is not None and self._undo and device_id not in self._undo[-1]:
            self._undo[-1][device_id] = row.snapshot()
        return row

    def write(self) -> None:
        changed = [(r.window.high, format(r.window.bitmap, "x"), r.last_seen_ms, r.clock_unset, device_id)
                   for device_id, r in sorted(self._rows.items()) if r is not None and r.changed]
        if changed:
            self.db.executemany("UPDATE devices SET counter_high = ?, counter_bitmap = ?, last_seen_ms = ?, "
                                "clock_unset = ? WHERE id = ?", changed)

    def savepoint(self) -> None:
        self._undo.append({})

    def rollback(self) -> None:
        for device_id, before in self._undo.pop().items():
            self._rows[device_id].restore(before)

    def release(self) -> None:
        undo = self._undo.pop()
        if self._undo:  # an enclosing savepoint may still undo these changes
            for device_id, before in undo.items():
                self._undo[-1].setdefault(device_id, before)
