"""What every command group of the gateway's CLI shares: the --data, --by and --role options, acting as a user, opening a store, errors.

A command that reads or changes personal data acts as a named user (`--by USER`), checked
against the users table with the console's own role table (`acting_as`, over
`gateway.governance.users.act_as`). The command line runs as the gateway's OS user, who can
read the database anyway: the check is not a security boundary but accountability (each audit
record names an active account whose role allows the act) and a guard against mistakes
(docs/OPERATING.md, "Roles on the command line").
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from pathlib import Path
from typing import Iterator, NoReturn

import typer

DATA_OPT = typer.Option(..., "--data", help="The gateway's data directory (database, blobs, keys).")
BY_OPT = typer.Option(..., "--by", help="Who does this: an active user of this gateway whose role allows it "
                      "(recorded in the audit log).")
ROLE_OPT = typer.Option(None, "--role", help="Only while no user accounts exist: state the role (recorded as "
                        "asserted, not checked).")


def now_ms() -> int:
    return int(time.time() * 1000)


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print `error: MSG` on stderr and exit with CODE (2: bad input, 3: refused by a rule)."""
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def open_store(data: Path) -> Iterator:
    """The data directory's store, or a clear error if `vericam gateway init` never ran there."""
    from gateway.storage.store import Store, is_initialised

    if not is_initialised(data):
        fail(f"no gateway data in {data}: run `vericam gateway init --data {data}`")
    with Store.open(data) as store:
        yield store


def load_policy(data: Path):
    """The retention rules in force for DATA (defaults + DATA/retention.toml), or a clear error."""
    from gateway.governance.retention import RetentionConfigError, RetentionPolicy

    try:
        return RetentionPolicy.load(data)
    except RetentionConfigError as exc:
        fail(str(exc))


def parse_ms(when: str | None) -> int:
    """An ISO date or time (UTC unless it says otherwise) as epoch ms; now when empty."""
    if not when:
        return now_ms()
    d = _dt.datetime.fromisoformat(when)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return int(d.timestamp() * 1000)


def acting_as(store, by: str | None, permission: str, role: str | None = None) -> str:
    """Check that `by` may do `permission` (gateway.governance.users.PERMISSIONS) and return the role
    they act in: the account's, or while no account exists the asserted `role`. Exit 3 with the
    reason when the users table (or, with no accounts, --role) says no."""
    from gateway.governance.users import UserError, act_as

    try:
        act_as(store, by, permission, role)
    except UserError as exc:
        fail(str(exc), 3)
    account = store.users.get(by)
    return account["role"] if account is not None else role
