"""`vericam audit`: verify and show the tamper-evident audit trail."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gateway.cli.common import DATA_OPT, open_store

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(data: Path = DATA_OPT, as_json: bool = typer.Option(False, "--json")) -> None:
    """Check the hash chain and its head in the key store. Exit 1 if it was tampered with."""
    from gateway.governance import audit

    with open_store(data) as store:
        v = audit.verify(store)
    if as_json:
        typer.echo(json.dumps({"ok": v.ok, "records": v.records, "anchored_seq": v.anchored_seq,
                               "unanchored": v.unanchored, "problems": v.problems}))
    elif v.ok:
        extra = f"; {v.unanchored} newest not yet anchored (a crash between commit and anchor)" if v.unanchored else ""
        typer.echo(f"audit log intact: {v.records} records, head anchored at record {v.anchored_seq}{extra}")
    else:
        for p in v.problems:
            typer.echo(f"TAMPERED: {p}", err=True)
    if not v.ok:
        raise typer.Exit(1)


@audit_app.command("show")
def audit_show(data: Path = DATA_OPT, what: str = typer.Option(None, "--what"),
               subject: str = typer.Option(None, "--subject")) -> None:
    """Print audit records as JSON lines."""
    from gateway.governance import audit

    with open_store(data) as store:
        for r in audit.records(store, what, subject):
            typer.echo(json.dumps(r, sort_keys=True))
