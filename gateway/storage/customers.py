"""Customer rows: the data subject a device belongs to, when the relationship started and ended, restriction."""

from __future__ import annotations

from gateway.storage.sqldb import Database


class Customers:
    def __init__(self, db: Database):
        self.db = db

    def add(self, customer: str, name: str | None, started_at_ms: int) -> bool:
        """False (and nothing written) if the customer exists already."""
        if self.get(customer) is not None:
            return False
        self.db.execute("INSERT INTO customers (id, name, started_at_ms) VALUES (?, ?, ?)",
                        (customer, name, started_at_ms))
        return True

    def get(self, customer: str) -> dict | None:
        row = self.db.execute("SELECT * FROM customers WHERE id = ?", (customer,)).fetchone()
        return dict(row) if row else None

    def end(self, customer: str, ended_at_ms: int) -> None:
        self.db.execute("UPDATE customers SET ended_at_ms = ? WHERE id = ?", (ended_at_ms, customer))

    def set_restricted(self, customer: str, restricted: bool) -> None:
        self.db.execute("UPDATE customers SET restricted = ? WHERE id = ?", (int(restricted), customer))

    def ended_by(self, cutoff_ms: int) -> list[dict]:
        """id, ended_at_ms of every customer whose relationship ended at or before `cutoff_ms`."""
        return [dict(r) for r in self.db.execute(
            "SELECT id, ended_at_ms FROM customers WHERE ended_at_ms IS NOT NULL AND ended_at_ms <= ? ORDER BY id",
            (cutoff_ms,))]
