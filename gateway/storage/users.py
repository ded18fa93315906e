"""User account rows: people (role, disabled, argon2 password hash) and API tokens (scopes, SHA-256).

Neither a password nor a token is ever stored: a person's password as its argon2 hash, a
service account's API token as the SHA-256 of the token (migration 7, `api_tokens`).
"""

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

    # Service accounts (migration 7): API tokens for machine clients, kept as the token's SHA-256.

    def add_token(self, name: str, scopes: str, token_sha256: str, by: str, at_ms: int) -> bool:
        """Record a new token; False if a token of that name exists (revoked names stay taken, for the audit trail)."""
        if self.token(name) is not None:
            return False
        self.db.execute("INSERT INTO api_tokens (name, scopes, token_sha256, created_by, created_at_ms) "
                        "VALUES (?, ?, ?, ?, ?)", (name, scopes, token_sha256, by, at_ms))
        return True

    def token(self, name: str) -> dict | None:
        row = self.db.execute("SELECT name, scopes, created_by, created_at_ms, revoked_at_ms, last_used_ms "
                              "FROM api_tokens WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def token_by_hash(self, token_sha256: str) -> dict | None:
        """name, scopes, revoked_at_ms, last_used_ms of the token with this hash, or None."""
        row = self.db.execute("SELECT name, scopes, revoked_at_ms, last_used_ms FROM api_tokens WHERE token_sha256 = ?",
                              (token_sha256,)).fetchone()
        return dict(row) if row else None

    def revoke_token(self, name: str, at_ms: int) -> bool:
        """False if there is no such token or it was revoked already."""
        return self.db.execute("UPDATE api_tokens SET revoked_at_ms = ? WHERE name = ? AND revoked_at_ms IS NULL",
                               (at_ms, name)).rowcount > 0

    def token_used(self, name: str, at_ms: int) -> None:
        self.db.execute("UPDATE api_tokens SET last_used_ms = ? WHERE name = ?", (at_ms, name))

    def tokens(self) -> list[dict]:
        """name, scopes, created_by, created_at_ms, revoked_at_ms, last_used_ms of every token (never the hash)."""
        return [dict(r) for r in self.db.execute(
            "SELECT name, scopes, created_by, created_at_ms, revoked_at_ms, last_used_ms FROM api_tokens "
            "ORDER BY name")]
