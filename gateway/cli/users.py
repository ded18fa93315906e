"""`vericam users ...`: user accounts and their roles (add, list, disable). Passwords come from a prompt or stdin, never argv."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(help="User accounts and roles (operator, supervisor, auditor, admin) and console logins.",
                  no_args_is_help=True)

DATA_OPT = typer.Option(..., "--data", help="The gateway's data directory.")


def _store(data: Path):
    from gateway.storage.store import Store, is_initialised

    if not is_initialised(data):
        typer.echo(f"error: no gateway data in {data}: run `vericam gateway init --data {data}`", err=True)
        raise typer.Exit(2)
    return Store.open(data)


def _by() -> str:
    return f"cli:{os.environ.get('USER') or getpass.getuser() or 'unknown'}"


@app.command()
def add(name: str = typer.Argument(..., help="User name, 1-64 letters, digits or ._@-"),
        role: str = typer.Option(..., "--role", help="operator, supervisor, auditor or admin."),
        data: Path = DATA_OPT,
        password_stdin: bool = typer.Option(False, "--password-stdin",
                                            help="Read the password from the first line of stdin."),
        no_password: bool = typer.Option(False, "--no-password",
                                         help="A role without a console login (e.g. a supervisor who places "
                                              "holds from the command line); an existing password is kept.")) -> None:
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
        try:
            add_user(store, name, role, password, _by(), now_ms())
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
    if password is None:
        typer.echo(f"{name} has the role {role} (no console login unless a password is set)")
    else:
        del password
        typer.echo(f"{name} can log in to the console as {role}")


@app.command("list")
def list_cmd(data: Path = DATA_OPT) -> None:
    """List the accounts (never their password hashes)."""
    from gateway.governance.users import list_users

    with _store(data) as store:
        for u in list_users(store):
            state = "disabled" if u["disabled"] else ("active" if u["can_log_in"] else "no password")
            typer.echo(f"{u['name']:24} {u['role']:11} {state}")


@app.command()
def disable(name: str = typer.Argument(...), data: Path = DATA_OPT) -> None:
    """Disable an account: its open console sessions end at their next request."""
    from gateway.storage.store import now_ms
    from gateway.governance.users import UserError, disable_user

    with _store(data) as store:
        try:
            disable_user(store, name, _by(), now_ms())
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
    typer.echo(f"{name} disabled")
