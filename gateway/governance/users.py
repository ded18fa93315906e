"""Console accounts: who may log in to the operator console, with which role, and their argon2 password hash.

Accounts live in the `users` table (migration 2, shared with the police hold's role check) and
the password hash in its `password_hash` column (migration 3). A user without a hash (created
by `vericam hold add-user`) has a role but cannot log in until a password is set. Every change
writes an audit record; passwords and hashes never reach a log or the audit trail.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.governance import audit
from gateway.storage.store import Store

ROLES = ("operator", "supervisor", "auditor", "admin")
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 10

_hasher = PasswordHasher()  # argon2id with the library's current defaults (RFC 9106 low-memory profile)
# Verified against when the name is unknown, so a wrong name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash("vericam: no such user")


class UserError(Exception):
    pass


def add_user(store: Store, name: str, role: str, password: str, by: str, now_ms: int) -> None:
    """Create an account or reset its role and password (re-enabling it)."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not NAME.match(name or ""):
        raise UserError(f"user name {name!r} must be 1-64 letters, digits or ._@-")
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    hashed = _hasher.hash(password)
    with store.transaction():
        existed = store.db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None
        store.db.execute("INSERT INTO users (name, role, created_at_ms, password_hash) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET role = excluded.role, disabled = 0, "
                         "password_hash = excluded.password_hash", (name, role, now_ms, hashed))
        audit.append(store, by, "configure user",
                     f"console account {name} {'updated' if existed else 'created'} with role {role}",
                     at_ms=now_ms, subject=name, detail={"role": role, "password": "set"})


def disable_user(store: Store, name: str, by: str, now_ms: int) -> None:
    with store.transaction():
        if store.db.execute("UPDATE users SET disabled = 1 WHERE name = ?", (name,)).rowcount == 0:
            raise UserError(f"no user {name}")
        audit.append(store, by, "configure user", f"console account {name} disabled", at_ms=now_ms, subject=name)


def authenticate(store: Store, name: str, password: str) -> str | None:
    """The user's role if the name and password match an active account, else None."""
    row = None
    if NAME.match(name or ""):
        row = store.db.execute("SELECT role, disabled, password_hash FROM users WHERE name = ?", (name,)).fetchone()
    hashed = row["password_hash"] if row is not None and row["password_hash"] else _DUMMY_HASH
    try:
        _hasher.verify(hashed, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled"] or not row["password_hash"]:
        return None
    if _hasher.check_needs_rehash(hashed):
        store.db.execute("UPDATE users SET password_hash = ? WHERE name = ?", (_hasher.hash(password), name))
    return row["role"]


def role_of(store: Store, name: str) -> str | None:
    """The current role of an active account (sessions re-check it on every request)."""
    row = store.db.execute("SELECT role, disabled FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None or row["disabled"] else row["role"]


def list_users(store: Store) -> list[dict]:
    return [dict(r) for r in store.db.execute(
        "SELECT name, role, created_at_ms, disabled, CASE WHEN password_hash IS NULL THEN 0 ELSE 1 END AS can_log_in "
        "FROM users ORDER BY name")]
