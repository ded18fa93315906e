"""`vericam retention`: the retention rules in force, one sweep now, reconciliation of blobs and rows."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gateway.cli.common import DATA_OPT, load_policy, open_store

retention_app = typer.Typer(help="Retention rules, the sweeper and reconciliation.", no_args_is_help=True)


@retention_app.command("show")
def retention_show(data: Path = DATA_OPT, table: bool = typer.Option(False, "--table", help="Print the retention "
                                                                      "table: each data class, its rule in force, its "
                                                                      "maximum and when its clock starts.")) -> None:
    """Print the retention rules in force (defaults + DATA/retention.toml), validated."""
    policy = load_policy(data)
    if not table:
        typer.echo(json.dumps(policy.as_dict(), indent=2))
        return
    from gateway.governance.retention_rules import RULES

    for r in RULES:
        typer.echo(f"{r.data_class:18} {r.setting} = {getattr(policy, r.setting)} {r.unit} (maximum {r.maximum}); "
                   f"from {r.clock}; then: {r.action}")


@retention_app.command("sweep")
def retention_sweep(data: Path = DATA_OPT, as_json: bool = typer.Option(False, "--json")) -> None:
    """Run one sweep now (the gateway also sweeps on its own schedule)."""
    from gateway.governance.retention import Sweeper

    with open_store(data) as store:
        rep = Sweeper(store, load_policy(data)).sweep()
    typer.echo(json.dumps(rep.as_dict()) if as_json else
               f"{rep.images_deleted} images deleted, KEKs destroyed: {', '.join(rep.keks_destroyed) or 'none'}, "
               f"{rep.activity_purged} activity records purged, {rep.identities_erased} customer identities "
               f"erased, {rep.notes_erased} alarm notes erased, {rep.holds_ended} holds ended, "
               f"{rep.hold_records_deleted} hold records deleted, {rep.exports_deleted} exports deleted, "
               f"{rep.audit_trimmed} audit records trimmed")


@retention_app.command("reconcile")
def retention_reconcile(data: Path = DATA_OPT, repair: bool = typer.Option(False, "--repair"),
                        min_age: float = typer.Option(60.0, "--min-age", help="Ignore files younger than "
                                                      "this many seconds (an ingest in progress)."),
                        as_json: bool = typer.Option(False, "--json")) -> None:
    """Find blob files without rows and rows without files; --repair removes them (audited)."""
    from gateway.governance.retention import reconcile

    with open_store(data) as store:
        rec = reconcile(store, repair=repair, min_file_age_s=min_age)
    if as_json:
        typer.echo(json.dumps(rec.as_dict()))
    else:
        typer.echo(f"{len(rec.files_without_rows)} files without rows, {len(rec.rows_without_files)} rows "
                   f"without files, {len(rec.due_rows_without_files)} due rows without files "
                   f"(an interrupted sweep){'; repaired ' + str(rec.repaired) if repair else ''}")
    if not rec.clean and not repair:
        raise typer.Exit(1)
