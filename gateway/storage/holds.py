"""Police hold rows: who placed which hold, for which case and why, and its release."""

from __future__ import annotations

from gateway.storage.sqldb import Database


def _in(ids: list) -> str:
    return ",".join("?" * len(ids))


class Holds:
    def __init__(self, db: Database):
        self.db = db

    def create(self, case_ref: str, reason: str, placed_by: str, role_source: str, at_ms: int, target: str) -> int:
        """A new hold's id (its images are moved under it by `Images.rekey`)."""
        return self.db.execute("INSERT INTO holds (case_ref, reason, placed_by, role_source, placed_at_ms, target) "
                               "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                               (case_ref, reason, placed_by, role_source, at_ms, target)).fetchone()[0]

    def get(self, hold_id: int) -> dict | None:
        row = self.db.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)).fetchone()
        return dict(row) if row else None

    def by_ids(self, hold_ids) -> list[dict]:
        ids = sorted(hold_ids)
        if not ids:
            return []
        return [dict(r) for r in self.db.execute(f"SELECT * FROM holds WHERE id IN ({_in(ids)}) ORDER BY id", ids)]

    def mark_released(self, hold_id: int, at_ms: int, by: str, reason: str) -> None:
        self.db.execute("UPDATE holds SET released_at_ms = ?, released_by = ?, release_reason = ?, "
                        "ended_at_ms = coalesce(ended_at_ms, ?) WHERE id = ?", (at_ms, by, reason, at_ms, hold_id))

    def mark_handed_over(self, hold_id: int, at_ms: int, requester: str, reference: str) -> None:
        """Record the handover to the police: who there asked for the material, under which reference."""
        self.db.execute("UPDATE holds SET handed_over_at_ms = ?, police_requester = ?, police_reference = ? "
                        "WHERE id = ?", (at_ms, requester, reference, hold_id))

    def list(self, active_only: bool = False) -> list[dict]:
        """Every hold with the number of images it still covers, oldest first."""
        sql = "SELECT h.*, (SELECT count(*) FROM images i WHERE i.hold_id = h.id) AS images FROM holds h"
        if active_only:
            sql += " WHERE released_at_ms IS NULL"
        return [dict(r) for r in self.db.execute(sql + " ORDER BY id")]

    def alarms_of_case(self, case_ref: str) -> list[tuple[str, str]]:
        """(device, alarm id) of every alarm with images under an active hold for this police case."""
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT DISTINCT i.device, i.alarm_id FROM images i JOIN holds h ON i.hold_id = h.id "
            "WHERE h.case_ref = ? AND h.released_at_ms IS NULL ORDER BY i.device, i.alarm_id", (case_ref,))]

    def held_on_devices(self, device_ids: list[str]) -> list[dict]:
        """Per hold covering these devices' images: id, case_ref, images `n`, and the earliest deletion day `until`."""
        if not device_ids:
            return []
        return [dict(r) for r in self.db.execute(
            f"SELECT h.id, h.case_ref, count(*) AS n, min(i.kek_day) AS until FROM images i "
            f"JOIN holds h ON h.id = i.hold_id WHERE i.device IN ({_in(device_ids)}) GROUP BY h.id, h.case_ref "
            f"ORDER BY h.id", device_ids)]
