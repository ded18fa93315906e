"""User account rows: name, role, disabled flag and the console password's argon2 hash (never the password)."""

from __future__ import annotations

from gateway.storage.sqldb import Database


class Users:
    def __init__(self, db: Database):
        self.db = db

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM users").fetchone()[0]

    def get(self, name: str) -> dict | None:
        """role, disabled, password_hash of one account, or None."""
        row = self.db.execute("SELECT role, disabled, password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def put(self, name: str, role: str, at_ms: int, password_hash: str | None) -> bool:
        """Create the account, or give it this role and enable it again; True if it existed.

        A `password_hash` of None leaves an existing account's password as it is."""
        existed = self.get(name) is not None
        self.db.execute("INSERT INTO users (name, role, created_at_ms, password_hash) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET role = excluded.role, disabled = 0, "
                        "password_hash = coalesce(excluded.password_hash, users.password_hash)",
                        (name, role, at_ms, password_hash))
        return existed

    def disable(self, name: str) -> bool:
        """False if there is no such account."""
        return self.db.execute("UPDATE users SET disabled = 1 WHERE name = ?", (name,)).rowcount > 0

    def set_password_hash(self, name: str, password_hash: str) -> None:
        self.db.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))

    def list(self) -> list[dict]:
        """name, role, created_at_ms, disabled, can_log_in (a password is set) of every account."""
        return [dict(r) for r in self.db.execute(
            "SELECT name, role, created_at_ms, disabled, CASE WHEN password_hash IS NULL THEN 0 ELSE 1 END "
            "AS can_log_in FROM users ORDER BY name")]
