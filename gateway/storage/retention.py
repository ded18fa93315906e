"""Retention queries: what is due, which KEKs are still in use, deleting image rows, purging old activity logs.

The rules (when an image is due, what a sweep does in which order) are
`gateway.governance.retention`; these are the statements it runs. `due` reads the index
`images_by_delete_at` only, so a sweep costs what has expired, not what is stored.
"""

from __future__ import annotations

from pathlib import Path

from gateway.storage import sqldb
from gateway.storage.captures import DELETION_COLUMNS
from gateway.storage.sqldb import Database

SWEEPER_LOCK = "retention-sweeper"
DUE_SQL = (f"SELECT {DELETION_COLUMNS} FROM images "
           "WHERE delete_at_ms <= ? ORDER BY delete_at_ms, id LIMIT ?")


def _in(ids: list) -> str:
    return ",".join("?" * len(ids))


class RetentionQueries:
    def __init__(self, db: Database):
        self.db = db

    def serialise_sweepers(self) -> None:
        """Until the transaction ends, no other sweeper (or hold release) deletes rows or destroys a KEK."""
        self.db.lock(SWEEPER_LOCK)

    # Images ----------------------------------------------------------------------------------
    def due(self, now_ms: int, limit: int) -> list[dict]:
        """Up to `limit` images due at `now_ms`, the longest overdue first (deletion columns)."""
        return [dict(r) for r in self.db.execute(DUE_SQL, (now_ms, limit)).fetchall()]

    def backlog(self, now_ms: int) -> int:
        """Images past their deletion time and still stored: must stay 0 between sweeps."""
        return self.db.execute("SELECT count(*) FROM images WHERE delete_at_ms <= ?", (now_ms,)).fetchone()[0]

    def images(self, image_ids: list[str]) -> list[dict]:
        """The deletion columns of these images (those still stored)."""
        if not image_ids:
            return []
        return [dict(r) for r in self.db.execute(
            f"SELECT {DELETION_COLUMNS} FROM images WHERE id IN ({_in(image_ids)})", image_ids).fetchall()]

    def unheld_images_of(self, device_ids: list[str]) -> list[dict]:
        """The deletion columns of these devices' images that no police hold covers."""
        if not device_ids:
            return []
        return [dict(r) for r in self.db.execute(
            f"SELECT {DELETION_COLUMNS} FROM images WHERE device IN ({_in(device_ids)}) AND hold_id IS NULL",
            device_ids).fetchall()]

    def all_images(self) -> list[dict]:
        """The deletion columns of every image (reconciliation: a full scan)."""
        return [dict(r) for r in self.db.execute(f"SELECT {DELETION_COLUMNS} FROM images").fetchall()]

    def delete_image(self, image_id: str) -> bool:
        """Delete one image row; False if it was gone already (another sweeper, an erasure)."""
        return self.db.execute("DELETE FROM images WHERE id = ? RETURNING id", (image_id,)).fetchone() is not None

    def image_exists(self, image_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is not None

    def kek_in_use(self, kek: str) -> bool:
        """True while any image's data key is wrapped under this KEK (a day, or `DAY/hold-N`)."""
        return self.db.execute("SELECT 1 FROM images WHERE kek_day = ? LIMIT 1", (kek,)).fetchone() is not None

    def oldest_alarm_ms(self, held: bool) -> int | None:
        """When the alarm of the oldest stored image (held or not) was received; None if there is none."""
        return self.db.execute(
            "SELECT min(a.received_at_ms) FROM images i JOIN alarms a ON a.device = i.device AND "
            f"a.alarm_id = i.alarm_id WHERE i.hold_id IS {'NOT ' if held else ''}NULL").fetchone()[0]

    # The activity log --------------------------------------------------------------------------
    def activity_count(self, device_ids: list[str]) -> int:
        """Events, alarms and captures of these devices: the activity log kept under the legal duty."""
        if not device_ids:
            return 0
        ph = _in(device_ids)
        return self.db.execute(
            f"SELECT (SELECT count(*) FROM events WHERE device IN ({ph})) + "
            f"(SELECT count(*) FROM alarms WHERE device IN ({ph})) + "
            f"(SELECT count(*) FROM captures WHERE device IN ({ph}))", list(device_ids) * 3).fetchone()[0]

    def purge_activity(self, device_id: str, limit: int) -> int:
        """Delete up to `limit` events and captures of a device, its alarm links, and its alarms once
        none of its images is left (a held image keeps its alarm); how many rows went."""
        n = 0
        for table in ("events", "captures"):
            n += self.db.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE device = ? "
                                 "LIMIT ?)", (device_id, limit)).rowcount
        n += self.db.execute("DELETE FROM alarm_captures WHERE device = ?", (device_id,)).rowcount
        if self.db.execute("SELECT 1 FROM images WHERE device = ? LIMIT 1", (device_id,)).fetchone() is None:
            n += self.db.execute("DELETE FROM alarm_handling WHERE device = ?", (device_id,)).rowcount
            n += self.db.execute("DELETE FROM alarms WHERE device = ?", (device_id,)).rowcount
        return n

    def relationship_end_of(self, device_id: str) -> int | None:
        """When the relationship of the device's customer ended (None: no customer, or not ended)."""
        row = self.db.execute("SELECT c.ended_at_ms FROM devices d JOIN customers c ON c.id = d.customer_id "
                              "WHERE d.id = ?", (device_id,)).fetchone()
        return None if row is None else row[0]

    def devices_without_customer(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM devices WHERE customer_id IS NULL ORDER BY id")]

    def purge_activity_before(self, device_id: str, before_ms: int, limit: int) -> int:
        """Delete up to `limit` events and captures of a device received before `before_ms`, and its
        alarms (with their links and handling) received before it that no image still names."""
        n = 0
        for table in ("events", "captures"):
            n += self.db.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE device = ? "
                                 "AND received_at_ms < ? LIMIT ?)", (device_id, before_ms, limit)).rowcount
        old = ("SELECT a.alarm_id FROM alarms a WHERE a.device = ? AND a.received_at_ms < ? AND NOT EXISTS "
               "(SELECT 1 FROM images i WHERE i.device = a.device AND i.alarm_id = a.alarm_id)")
        for table in ("alarm_captures", "alarm_handling", "alarms"):
            n += self.db.execute(f"DELETE FROM {table} WHERE device = ? AND alarm_id IN ({old})",
                                 (device_id, device_id, before_ms)).rowcount
        return n

    def oldest_activity_ms(self, device_ids: list[str]) -> int | None:
        """When the oldest event, capture or alarm of these devices was received (None: there is none)."""
        if not device_ids:
            return None
        ph = _in(device_ids)
        return self.db.execute(
            f"SELECT min(m) FROM (SELECT min(received_at_ms) AS m FROM events WHERE device IN ({ph}) "
            f"UNION ALL SELECT min(received_at_ms) FROM alarms WHERE device IN ({ph}) "
            f"UNION ALL SELECT min(received_at_ms) FROM captures WHERE device IN ({ph})) AS t",
            list(device_ids) * 3).fetchone()[0]

    # The customer's identity ---------------------------------------------------------------------
    def identities_due(self, ended_before_ms: int) -> list[dict]:
        """Customers whose relationship ended at or before `ended_before_ms` and whose name, sites and
        id are not yet erased."""
        return [dict(r) for r in self.db.execute(
            "SELECT id, ended_at_ms FROM customers WHERE ended_at_ms IS NOT NULL AND ended_at_ms <= ? "
            "AND identity_erased_at_ms IS NULL ORDER BY ended_at_ms, id", (ended_before_ms,))]

    def erase_identity(self, customer: str, pseudonym: str, at_ms: int) -> list[str] | None:
        """Erase the customer's name and its devices' sites, and replace its id by `pseudonym` (the
        activity log keeps the pseudonym and the end date); the devices it had, or None if another
        sweeper erased it first (call under `serialise_sweepers`)."""
        if self.db.execute("SELECT 1 FROM customers WHERE id = ? AND identity_erased_at_ms IS NULL",
                           (customer,)).fetchone() is None:
            return None
        devices = [r[0] for r in self.db.execute("SELECT id FROM devices WHERE customer_id = ? ORDER BY id",
                                                 (customer,))]
        self.db.execute("INSERT INTO customers (id, name, started_at_ms, ended_at_ms, restricted, "
                        "identity_erased_at_ms) SELECT ?, NULL, started_at_ms, ended_at_ms, restricted, ? "
                        "FROM customers WHERE id = ?", (pseudonym, at_ms, customer))
        self.db.execute("UPDATE devices SET customer_id = ?, site = '' WHERE customer_id = ?", (pseudonym, customer))
        self.db.execute("DELETE FROM customers WHERE id = ?", (customer,))
        return devices

    def oldest_identity_end_ms(self) -> int | None:
        """The earliest end of a relationship whose identity is still kept (None: none is)."""
        return self.db.execute("SELECT min(ended_at_ms) FROM customers WHERE ended_at_ms IS NOT NULL "
                               "AND identity_erased_at_ms IS NULL").fetchone()[0]

    def forget_customer_ready(self, customer: str) -> bool:
        """True when the customer's identity is erased and none of its devices has activity left."""
        return self.db.execute(
            "SELECT 1 FROM customers c WHERE c.id = ? AND c.identity_erased_at_ms IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM devices d WHERE d.customer_id = c.id AND (EXISTS (SELECT 1 FROM events e WHERE "
            "e.device = d.id) OR EXISTS (SELECT 1 FROM alarms a WHERE a.device = d.id) OR EXISTS (SELECT 1 FROM "
            "captures p WHERE p.device = d.id)))", (customer,)).fetchone() is not None

    def forget_customer(self, customer: str) -> bool:
        """Delete the customer's row, its remaining devices unlinked; True if it went."""
        self.db.execute("UPDATE devices SET customer_id = NULL WHERE customer_id = ?", (customer,))
        return self.db.execute("DELETE FROM customers WHERE id = ? RETURNING id", (customer,)).fetchone() is not None

    def drop_revoked_devices(self, customer: str) -> list[str]:
        """Delete the rows (and DC-09 accounts) of the customer's revoked devices that hold no image and
        no activity any more; the devices deleted. A device still provisioned keeps its row: it may
        still connect (revoke it when the relationship ends)."""
        gone = [r[0] for r in self.db.execute(
            "SELECT d.id FROM devices d WHERE d.customer_id = ? AND d.revoked = 1 AND NOT EXISTS "
            "(SELECT 1 FROM images i WHERE i.device = d.id) AND NOT EXISTS (SELECT 1 FROM events e WHERE "
            "e.device = d.id) AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.device = d.id) AND NOT EXISTS "
            "(SELECT 1 FROM captures c WHERE c.device = d.id) ORDER BY d.id", (customer,))]
        for dev in gone:
            self.db.execute("DELETE FROM dc09_accounts WHERE device = ?", (dev,))
            self.db.execute("DELETE FROM devices WHERE id = ?", (dev,))
        return gone

    # Alarm-handling notes ------------------------------------------------------------------------
    def notes_due(self, closed_before_ms: int, limit: int) -> list[dict]:
        """Alarms whose handling note is kept and that were closed (or, never closed, acknowledged)
        at or before `closed_before_ms`."""
        return [dict(r) for r in self.db.execute(
            "SELECT device, alarm_id, coalesce(closed_at_ms, acknowledged_at_ms) AS at_ms FROM alarm_handling "
            "WHERE note IS NOT NULL AND coalesce(closed_at_ms, acknowledged_at_ms) <= ? "
            "ORDER BY 3, device, alarm_id LIMIT ?", (closed_before_ms, limit))]

    def erase_note(self, device: str, alarm_id: str, at_ms: int) -> bool:
        return self.db.execute("UPDATE alarm_handling SET note = NULL, note_erased_at_ms = ? WHERE device = ? "
                               "AND alarm_id = ? AND note IS NOT NULL RETURNING device",
                               (at_ms, device, alarm_id)).fetchone() is not None

    def oldest_note_ms(self) -> int | None:
        return self.db.execute("SELECT min(coalesce(closed_at_ms, acknowledged_at_ms)) FROM alarm_handling "
                               "WHERE note IS NOT NULL").fetchone()[0]

    # Hold records --------------------------------------------------------------------------------
    def holds_run_out(self) -> list[int]:
        """Holds not released, handed over or ended that no image is under any more (their 30 days ran out)."""
        return [r[0] for r in self.db.execute(
            "SELECT h.id FROM holds h WHERE h.ended_at_ms IS NULL AND h.released_at_ms IS NULL AND NOT EXISTS "
            "(SELECT 1 FROM images i WHERE i.hold_id = h.id) ORDER BY h.id")]

    def end_hold(self, hold_id: int, at_ms: int) -> bool:
        return self.db.execute("UPDATE holds SET ended_at_ms = ? WHERE id = ? AND ended_at_ms IS NULL RETURNING id",
                               (at_ms, hold_id)).fetchone() is not None

    def hold_records_due(self, ended_before_ms: int, limit: int) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT id, ended_at_ms FROM holds h WHERE ended_at_ms IS NOT NULL AND ended_at_ms <= ? AND NOT EXISTS "
            "(SELECT 1 FROM images i WHERE i.hold_id = h.id) ORDER BY ended_at_ms, id LIMIT ?",
            (ended_before_ms, limit))]

    def delete_hold(self, hold_id: int) -> bool:
        return self.db.execute("DELETE FROM holds WHERE id = ? RETURNING id", (hold_id,)).fetchone() is not None

    def oldest_hold_end_ms(self) -> int | None:
        return self.db.execute("SELECT min(ended_at_ms) FROM holds WHERE ended_at_ms IS NOT NULL").fetchone()[0]


def backlog_on_own_connection(target: str | Path, now_ms: int) -> int:
    """`RetentionQueries.backlog` on a read-only connection of its own (a metrics scrape must not
    wait for the writer's batch)."""
    db = sqldb.connect(target, readonly=True)
    try:
        return RetentionQueries(db).backlog(now_ms)
    finally:
        db.close()
