"""`vericam audit`: verify, checkpoint and show the keyed, tamper-evident audit trail."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from gateway.cli.common import BY_OPT, DATA_OPT, ROLE_OPT, acting_as, fail, now_ms, open_store

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(data: Path = DATA_OPT, as_json: bool = typer.Option(False, "--json"),
                 checkpoint_files: list[Path] = typer.Option(
                     [], "--checkpoints", help="A file of checkpoints exported by `vericam audit checkpoint "
                     "--out` (from write-once storage); may be given more than once.")) -> None:
    """Check every link under the audit key, the head in the key store and every signed checkpoint.
    Exit 1 if the trail was tampered with."""
    from gateway.governance import audit

    exported = []
    for path in checkpoint_files:
        try:
            exported += audit.read_checkpoints(path)
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the checkpoint file {path}: {exc}")
    with open_store(data) as store:
        v = audit.verify(store, exported)
    if as_json:
        typer.echo(json.dumps(v.as_json()))
    elif v.ok:
        keyed = f"keyed from record {v.keyed_from}" if v.keyed_from else "not keyed yet (no audited action since the upgrade)"
        cps = (f"{v.checkpoints} signed checkpoints match (newest: record {v.checkpoint_seq})" if v.checkpoints
               else "no signed checkpoint yet")
        extra = f"; {v.unanchored} newest not yet anchored (a crash between commit and anchor)" if v.unanchored else ""
        if v.trimmed_through:
            extra += (f"; records 1..{v.trimmed_through} deleted by retention, the chain verified from the signed "
                      "checkpoint of the last of them")
        typer.echo(f"audit log intact: {v.records} records, head anchored at record {v.anchored_seq}, {keyed}; "
                   f"{cps}{extra}")
    else:
        for p in v.problems:
            typer.echo(f"TAMPERED: {p}", err=True)
    if not v.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(data: Path = DATA_OPT,
                     out: Path = typer.Option(None, "--out", help="Append to this file every checkpoint it does "
                                              "not hold yet (then copy it to write-once storage).")) -> None:
    """Sign a checkpoint of the audit chain's head now and print it as a JSON line.

    With --out, every checkpoint kept in the key store that FILE lacks (the periodic ones and
    this one) is appended to FILE, fsynced, and printed."""
    from gateway.governance import audit

    with open_store(data) as store:
        try:
            line = audit.checkpoint(store)
        except audit.AuditError as exc:
            fail(str(exc), 1)
        kept = audit.checkpoints(store)
    if line is None:
        typer.echo("the audit trail is empty: nothing to checkpoint", err=True)
        return
    if out is None:
        typer.echo(line)
        return
    try:
        have = [text.strip() for _, text in audit.read_checkpoints(out)] if out.exists() else []
        for text in have:
            audit.parse_checkpoint(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail(f"{out} is not a checkpoint file this command wrote ({exc}): name another --out")
    new = [text for text in kept if text not in set(have)]
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview("".join(text + "\n" for text in new).encode())
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    for text in new:
        typer.echo(text)
    typer.echo(f"appended {len(new)} checkpoints to {out} (newest: record {json.loads(line)['seq']})", err=True)


@audit_app.command("show")
def audit_show(data: Path = DATA_OPT, what: str = typer.Option(None, "--what"),
               subject: str = typer.Option(None, "--subject"), by: str = BY_OPT, role: str = ROLE_OPT) -> None:
    """Print audit records as JSON lines (an auditor, as in the console; the reading is audited)."""
    from gateway.governance import audit
    from gateway.governance.need_to_know import record_read

    with open_store(data) as store:
        acting = acting_as(store, by, "audit", role)
        rows = audit.records(store, what, subject)
        record_read(store, by, acting, "view audit trail", "audit", now_ms(),
                    detail={"filters": {"what": what, "subject": subject}, "rows": len(rows)})
        for r in rows:
            typer.echo(json.dumps(r, sort_keys=True))
