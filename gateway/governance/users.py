"""User accounts: who has which role (operator, supervisor, auditor, admin), and who may log in to the console.

Accounts live in the `users` table (migration 2): the police hold's role check reads the role,
and the console's login checks the argon2 hash in `password_hash` (migration 3). An account
without a password (`vericam users add NAME --role R --no-password`) has a role but cannot log
in until one is set. Every change writes an audit record; passwords and hashes never reach a
log or the audit trail. `vericam users` is the one command that manages them.

Service accounts for machine clients are API tokens with scopes instead of a role (below):
`vericam users token create|revoke|list`.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.governance import audit
from gateway.storage.store import Store

ROLES = ("operator", "supervisor", "auditor", "admin")
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")

# Who may do what, for the console (gateway.console.access) and the command line alike: one table.
#
#   what                         operator  supervisor  auditor  admin
#   photos (alarm being handled)    x          x
#   handle (acknowledge, close)     x          x
#   hold (police hold, export)                 x
#   devices                         x          x                  x
#   activity (the activity log)     x          x
#   audit (the audit trail)                               x
#   users (accounts, API tokens)                                  x
#   create tokens (API tokens)                 x
#   customers (add, link, end)                 x                  x
#   subject rights (export, erase, restrict)   x
#   access report (who saw a household's photos)  x       x
#
# The admin runs the system (devices, accounts) and never sees what a household did: not its
# photos, not its activity log (README, issue 15). It lists and revokes API tokens (that only
# takes access away) but cannot create one: every scope reads alarms or photos, which a token may
# only be given by a role that reads them itself (`create_token`, `SCOPE_PERMISSION`).
PERMISSIONS = {
    "photos": ("operator", "supervisor"),
    "handle": ("operator", "supervisor"),
    "hold": ("supervisor",),
    "devices": ("operator", "supervisor", "admin"),
    "activity": ("operator", "supervisor"),
    "audit": ("auditor",),
    "users": ("admin",),
    "create tokens": ("supervisor",),
    "customers": ("supervisor", "admin"),
    "subject rights": ("supervisor",),
    "access report": ("supervisor", "auditor"),
}
ASSERTED = "asserted (no user accounts)"
MIN_PASSWORD = 10

_hasher = PasswordHasher()  # argon2id with the library's current defaults (RFC 9106 low-memory profile)
# Verified against when the name is unknown, so a wrong name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash("vericam: no such user")


class UserError(Exception):
    pass


class NotAllowed(UserError):
    """The acting role may not do this (the console answers 403, the command line exits 3)."""


def add_user(store: Store, name: str, role: str, password: str | None, by: str, now_ms: int) -> None:
    """Create an account or give it this role (re-enabling it), and set its password.

    With `password` None the account has a role but no console login (an existing one keeps
    the password it has)."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not NAME.match(name or ""):
        raise UserError(f"user name {name!r} must be 1-64 letters, digits or ._@-")
    if password is not None and len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    hashed = None if password is None else _hasher.hash(password)
    with store.transaction():
        existed = store.users.put(name, role, now_ms, hashed)
        audit.append(store, by, "configure user",
                     f"account {name} {'updated' if existed else 'created'} with role {role}",
                     at_ms=now_ms, subject=name, detail={"role": role,
                                                         "password": "unchanged" if hashed is None else "set"})


def disable_user(store: Store, name: str, by: str, now_ms: int) -> None:
    with store.transaction():
        if not store.users.disable(name):
            raise UserError(f"no user {name}")
        audit.append(store, by, "configure user", f"console account {name} disabled", at_ms=now_ms, subject=name)


def authenticate(store: Store, name: str, password: str) -> str | None:
    """The user's role if the name and password match an active account, else None."""
    row = None
    if NAME.match(name or ""):
        row = store.users.get(name)
    hashed = row["password_hash"] if row is not None and row["password_hash"] else _DUMMY_HASH
    try:
        _hasher.verify(hashed, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled"] or not row["password_hash"]:
        return None
    if _hasher.check_needs_rehash(hashed):
        store.users.set_password_hash(name, _hasher.hash(password))
    return row["role"]


def role_of(store: Store, name: str) -> str | None:
    """The current role of an active account (sessions re-check it on every request)."""
    row = store.users.get(name)
    return None if row is None or row["disabled"] else row["role"]


def act_as(store: Store, user: str | None, permission: str, asserted_role: str | None = None) -> str:
    """The command line's check that `user` may do `permission` (a `PERMISSIONS` key): the role
    source ("users table", or `ASSERTED` while the gateway has no accounts at all), else UserError.

    The command line runs as the gateway's OS user, who can read the database anyway, so this is
    no security boundary: it makes every audited act name an active account whose role allows it
    (accountability), and it stops mistakes (a typo in --by, an admin exporting a household's
    photos, a disabled account). While no account exists yet, `--role` states the role, and the
    audit record says it was asserted, not checked, as the police hold does."""
    roles = PERMISSIONS[permission]
    if not user:
        raise UserError("say who you are: --by USER (an account of this gateway)")
    if store.users.count():
        if asserted_role is not None:
            raise UserError("user accounts exist: the role comes from the users table, drop --role")
        account = store.users.get(user)
        if account is None or account["disabled"]:
            raise UserError(f"{user} is not an active user of this gateway (see `vericam users list`)")
        if account["role"] not in roles:
            raise UserError(f"{user} has the role {account['role']}; {permission} needs the {' or '.join(roles)} "
                            "role")
        return "users table"
    if asserted_role not in roles:
        raise UserError(f"no user accounts exist yet: state --role {roles[0]} (recorded as asserted, not checked), "
                        "or create accounts with `vericam users add`")
    return ASSERTED


def list_users(store: Store) -> list[dict]:
    return store.users.list()


def record_login(store: Store, name: str, role: str, client: str, now_ms: int) -> None:
    """Audit a console login by `name` from the address `client`."""
    with store.transaction():
        audit.append(store, name, "login", "console login", at_ms=now_ms, subject=name,
                     detail={"client": client, "role": role})


def record_failed_login(store: Store, name: str, client: str, now_ms: int) -> None:
    """Audit a refused console login. The typed name is recorded only when it names an account of
    this gateway: anything else may be a password typed into the name field (issue 15)."""
    shown = name if NAME.match(name or "") and store.users.get(name) is not None else "(not a user of this gateway)"
    with store.transaction():
        audit.append(store, "anonymous", "login failed", "wrong user name or password", at_ms=now_ms,
                     subject=shown, detail={"client": client})


def record_logout(store: Store, name: str, now_ms: int) -> None:
    """Audit a console logout by `name`."""
    with store.transaction():
        audit.append(store, name, "logout", "console logout", at_ms=now_ms, subject=name)


# Service accounts: API tokens for machine clients (the ARC's alarm software), issue 16.
#
# A token is "vct_" and 32 random bytes (urlsafe base64). Only its SHA-256 is stored: a token
# has 256 bits of entropy, so unlike a password it cannot be guessed from its hash, and a slow
# hash (argon2) would only cost time on every API call. The lookup is by the hash, so comparing
# a presented token leaks nothing about the stored ones. A token acts under its scopes only;
# in the audit trail its actor is `token:NAME`, so its uses are never mistaken for a person's.

SCOPES = {
    "alarms:read": "read the alarm queue and one alarm (GET /api/alarms, GET /api/alarms/{device}/{alarm})",
    "photos:read": "read the photos of an alarm, only under that alarm's URL, while the alarm is being "
                   "handled (GET /api/alarms/{device}/{alarm}/photos/{image}); every photo read is audited",
}
# The permission a scope reads with. A token is never given a scope its creator's role does not
# hold, so a token cannot widen anyone's access (an admin, who may see no photo, cannot mint a
# photos:read token); creating one is the supervisor's, who may delegate what it reads itself.
SCOPE_PERMISSION = {"alarms:read": "handle", "photos:read": "photos"}
TOKEN_PREFIX = "vct_"
TOKEN_USE_RESOLUTION_MS = 60_000  # how exactly `last_used_ms` is kept


def token_actor(name: str) -> str:
    """How a service account appears in the audit trail and as the console's `user`."""
    return f"token:{name}"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _scopes(scopes) -> list[str]:
    wanted = sorted({s for item in scopes for s in item.replace(",", " ").split()})
    bad = [s for s in wanted if s not in SCOPES]
    if bad or not wanted:
        raise UserError(f"scope must be one or more of {', '.join(SCOPES)}, not {' '.join(bad) or 'nothing'}")
    return wanted


def may_grant(role: str | None, scopes) -> None:
    """NotAllowed unless `role` may create a token with `scopes`: it holds the "create tokens"
    permission and every scope's own permission (`SCOPE_PERMISSION`) itself."""
    creators = PERMISSIONS["create tokens"]
    if role not in creators:
        raise NotAllowed(f"the {role} role may not create API tokens: a token reads alarms or photos, so it is "
                         f"created by a {' or '.join(creators)}, who reads them itself")
    for scope in scopes:
        if role not in PERMISSIONS[SCOPE_PERMISSION[scope]]:
            raise NotAllowed(f"the {role} role does not hold {scope} itself, so it cannot give it to a token")


def create_token(store: Store, name: str, scopes, by: str, now_ms: int, role: str) -> str:
    """Create the service account `name` with `scopes` for `by`, whose role is `role` (checked by
    `may_grant`, the one check the console and the command line share); the token, shown only this once."""
    if not NAME.match(name or ""):
        raise UserError(f"token name {name!r} must be 1-64 letters, digits or ._@-")
    wanted = _scopes(scopes)
    may_grant(role, wanted)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.transaction():
        if not store.users.add_token(name, " ".join(wanted), _token_hash(token), by, now_ms):
            raise UserError(f"a token named {name} exists already (a revoked token keeps its name)")
        audit.append(store, by, "configure token", f"API token {name} created with scopes {' '.join(wanted)}",
                     at_ms=now_ms, subject=token_actor(name), detail={"scopes": wanted, "role": role})
    return token


def revoke_token(store: Store, name: str, by: str, now_ms: int) -> None:
    with store.transaction():
        if not store.users.revoke_token(name, now_ms):
            raise UserError(f"no active token named {name}")
        audit.append(store, by, "configure token", f"API token {name} revoked", at_ms=now_ms,
                     subject=token_actor(name))


def list_tokens(store: Store) -> list[dict]:
    """Every token's name, scopes (a list), creator and times; never the token or its hash."""
    return [{**t, "scopes": t["scopes"].split()} for t in store.users.tokens()]


def authenticate_token(store: Store, token: str, now_ms: int) -> tuple[str, frozenset[str]] | None:
    """(name, scopes) of an active token, else None. Notes when it was last used (to the minute:
    a client polling every second does not cost a write transaction per request)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = store.users.token_by_hash(_token_hash(token))
    if row is None or row["revoked_at_ms"] is not None:
        return None
    if row["last_used_ms"] is None or not 0 <= now_ms - row["last_used_ms"] < TOKEN_USE_RESOLUTION_MS:
        with store.transaction():
            store.users.token_used(row["name"], now_ms)
    return row["name"], frozenset(row["scopes"].split())
