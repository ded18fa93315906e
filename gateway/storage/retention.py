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
            n += self.db.execute("DELETE FROM alarms WHERE device = ?", (device_id,)).rowcount
        return n


def backlog_on_own_connection(target: str | Path, now_ms: int) -> int:
    """`RetentionQueries.backlog` on a read-only connection of its own (a metrics scrape must not
    wait for the writer's batch)."""
    db = sqldb.connect(target, readonly=True)
    try:
        return RetentionQueries(db).backlog(now_ms)
    finally:
        db.close()
