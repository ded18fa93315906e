"""What every command group of the gateway's CLI shares: the --data and --by options, opening a store, errors."""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from pathlib import Path
from typing import Iterator, NoReturn

import typer

DATA_OPT = typer.Option(..., "--data", help="The gateway's data directory (database, blobs, keys).")
BY_OPT = typer.Option(..., "--by", help="Who does this (a user name; recorded in the audit log).")


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
