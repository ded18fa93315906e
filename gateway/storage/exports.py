"""Export rows: every police bundle and subject export the gateway wrote to disk, so that retention can delete it."""

from __future__ import annotations

from gateway.storage.sqldb import Database


class Exports:
    def __init__(self, db: Database):
        self.db = db

    def add(self, kind: str, path: str, subject: str | None, by: str, at_ms: int, content_hash: str | None) -> int:
        """Register an export just written (its file or directory, absolute); its id."""
        return self.db.execute("INSERT INTO exports (kind, path, subject, written_by, written_at_ms, content_hash) "
                               "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                               (kind, path, subject, by, at_ms, content_hash)).fetchone()[0]

    def due(self, written_before_ms: int, limit: int) -> list[dict]:
        """Exports still on disk that were written at or before `written_before_ms`, oldest first."""
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM exports WHERE deleted_at_ms IS NULL AND written_at_ms <= ? ORDER BY written_at_ms, id "
            "LIMIT ?", (written_before_ms, limit))]

    def mark_deleted(self, export_id: int, at_ms: int) -> bool:
        """False if it was marked already (another sweeper)."""
        return self.db.execute("UPDATE exports SET deleted_at_ms = ? WHERE id = ? AND deleted_at_ms IS NULL "
                               "RETURNING id", (at_ms, export_id)).fetchone() is not None

    def oldest_live_ms(self) -> int | None:
        return self.db.execute("SELECT min(written_at_ms) FROM exports WHERE deleted_at_ms IS NULL").fetchone()[0]

    def list(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM exports ORDER BY id")]
