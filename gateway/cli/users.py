"""`vericam users ...`: accounts and roles (add, list, disable), and API tokens (`users token ...`).

Passwords come from a prompt or stdin, never argv; a token is printed once, on stdout. A token
is created by a supervisor (`--by SUPERVISOR`), listed and revoked by the admin.

As in the console, accounts are the admin's: once the gateway has an active admin account,
every `users` command names one with `--by ADMIN` (the users table says who is one). Before
that (a new gateway), the OS user who runs the command sets up the first accounts and is
recorded as `cli:OSUSER`. Listing the accounts is a read of staff's personal data, audited.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(help="User accounts and roles (operator, supervisor, auditor, admin) and console logins.",
                  no_args_is_help=True)

DATA_OPT = typer.Option(..., "--data", help="The gateway's data directory.")
BY_OPT = typer.Option(None, "--by", help="The admin who does this (required once the gateway has an active admin "
                      "account; recorded in the audit trail).")


def _store(data: Path):
    from gateway.storage.store import Store, is_initialised

    if not is_initialised(data):
        typer.echo(f"error: no gateway data in {data}: run `vericam gateway init --data {data}`", err=True)
        raise typer.Exit(2)
    return Store.open(data)


def _os_user() -> str:
    return f"cli:{os.environ.get('USER') or getpass.getuser() or 'unknown'}"


def _by(store, by: str | None) -> str:
    """Who manages accounts: `by`, an active admin; or, while the gateway has no active admin yet,
    the OS user setting it up (whatever --by says). Exit 3 otherwise."""
    from gateway.governance.users import UserError, act_as

    admins = [u for u in store.users.list() if u["role"] == "admin" and not u["disabled"]]
    if not admins:  # a new gateway: whoever runs the command as the gateway's OS user sets it up
        return _os_user()
    try:
        act_as(store, by, "users")
    except UserError as exc:
        typer.echo(f"error: {exc}" + (" (accounts are managed by an admin: --by ADMIN)" if by is None else ""),
                   err=True)
        raise typer.Exit(3)
    return by


@app.command()
def add(name: str = typer.Argument(..., help="User name, 1-64 letters, digits or ._@-"),
        role: str = typer.Option(..., "--role", help="operator, supervisor, auditor or admin."),
        data: Path = DATA_OPT,
        password_stdin: bool = typer.Option(False, "--password-stdin",
                                            help="Read the password from the first line of stdin."),
        no_password: bool = typer.Option(False, "--no-password",
                                         help="A role without a console login (e.g. a supervisor who places "
                                              "holds from the command line); an existing password is kept."),
        by: str = BY_OPT) -> None:
    """Create an account, or reset its role (and password)."""
    from gateway.storage.store import now_ms
    from gateway.governance.users import UserError, add_user

    if no_password and password_stdin:
        typer.echo("error: --no-password and --password-stdin exclude each other", err=True)
        raise typer.Exit(2)
    if no_password:
        password = None
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with _store(data) as store:
        who = _by(store, by)
        try:
            add_user(store, name, role, password, who, now_ms())
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
    if password is None:
        typer.echo(f"{name} has the role {role} (no console login unless a password is set)")
    else:
        del password
        typer.echo(f"{name} can log in to the console as {role}")


@app.command("list")
def list_cmd(data: Path = DATA_OPT, by: str = BY_OPT) -> None:
    """List the accounts (never their password hashes). Audited."""
    from gateway.governance.need_to_know import record_read
    from gateway.governance.users import list_users
    from gateway.storage.store import now_ms

    with _store(data) as store:
        who = _by(store, by)
        rows = list_users(store)
        record_read(store, who, "admin", "view users", "account management", now_ms(), detail={"users": len(rows)})
        for u in rows:
            state = "disabled" if u["disabled"] else ("active" if u["can_log_in"] else "no password")
            typer.echo(f"{u['name']:24} {u['role']:11} {state}")


@app.command()
def disable(name: str = typer.Argument(...), data: Path = DATA_OPT, by: str = BY_OPT) -> None:
    """Disable an account: its open console sessions end at their next request."""
    from gateway.storage.store import now_ms
    from gateway.governance.users import UserError, disable_user

    with _store(data) as store:
        try:
            disable_user(store, name, _by(store, by), now_ms())
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
    typer.echo(f"{name} disabled")


token_app = typer.Typer(help="API tokens of service accounts (machine clients such as the ARC's alarm software). "
                             "Scopes: alarms:read (the alarm queue and one alarm), photos:read (an alarm's photos, "
                             "audited). A token is sent as `Authorization: Bearer ...` to the console's JSON API.",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(name: str = typer.Argument(..., help="The service account's name, 1-64 letters, digits or ._@-"),
                 scope: list[str] = typer.Option(..., "--scope",
                                                 help="alarms:read or photos:read; repeat it, or separate by commas."),
                 data: Path = DATA_OPT,
                 by: str = typer.Option(None, "--by", help="The supervisor who creates it (recorded in the audit "
                                        "trail).")) -> None:
    """Create an API token and print it once: only its hash is kept, so it cannot be shown again.

    A supervisor creates it (--by SUPERVISOR): a token is never given a scope its creator's role
    does not hold, so the admin, who sees no photos, cannot create one."""
    from gateway.storage.store import now_ms
    from gateway.governance.users import NotAllowed, UserError, create_token

    with _store(data) as store:
        account = store.users.get(by) if by else None
        if account is None or account["disabled"]:
            typer.echo("error: API tokens are created by a supervisor: --by SUPERVISOR (an active account of this "
                       "gateway; see `vericam users list`)", err=True)
            raise typer.Exit(3)
        try:
            token = create_token(store, name, scope, by, now_ms(), account["role"])
        except NotAllowed as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
    typer.echo(token)
    typer.echo(f"token {name} created; it is shown only this once (send it as Authorization: Bearer)", err=True)


@token_app.command("revoke")
def token_revoke(name: str = typer.Argument(...), data: Path = DATA_OPT, by: str = BY_OPT) -> None:
    """Revoke an API token: its next request is refused (401)."""
    from gateway.storage.store import now_ms
    from gateway.governance.users import UserError, revoke_token

    with _store(data) as store:
        try:
            revoke_token(store, name, _by(store, by), now_ms())
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
    typer.echo(f"token {name} revoked")


@token_app.command("list")
def token_list(data: Path = DATA_OPT, by: str = BY_OPT) -> None:
    """List the API tokens: name, scopes, state (never the token or its hash)."""
    from gateway.governance.alarms import fmt_ms
    from gateway.governance.users import list_tokens

    with _store(data) as store:
        _by(store, by)
        for t in list_tokens(store):
            if t["revoked_at_ms"] is not None:
                state = f"revoked {fmt_ms(t['revoked_at_ms'])}"
            else:
                state = "active, last used " + (fmt_ms(t["last_used_ms"]) if t["last_used_ms"] else "never")
            typer.echo(f"{t['name']:24} {','.join(t['scopes']):24} {state}")
