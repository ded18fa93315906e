"""Rejected messages, counted by reason (what `vericam gateway status` and the metrics report)."""

from __future__ import annotations

import time

from gateway.storage.sqldb import Database


class Rejections:
    def __init__(self, db: Database):
        self.db = db

    def count(self, reason: str, at_ms: int | None = None) -> None:
        self.db.execute("INSERT INTO rejections (reason, count, last_at_ms) VALUES (?, 1, ?) "
                        "ON CONFLICT (reason) DO UPDATE SET count = rejections.count + 1, "
                        "last_at_ms = excluded.last_at_ms",
                        (reason, at_ms or int(time.time() * 1000)))

    def counts(self) -> dict[str, int]:
        return {r["reason"]: r["count"] for r in self.db.execute("SELECT reason, count FROM rejections")}
