"""The police export from the command line: `vericam export CASE` writes the bundles, `vericam export verify BUNDLE` checks one.

A bundle is the zip the operator console also gives a supervisor
(`gateway.governance.police_export.build_bundle`): the photos of one alarm under an active
police hold, `case.json`, `chain-of-custody.json` and `MANIFEST.sha256`. Writing one is
audited, with the SHA-256 of its manifest, so a bundle handed to the police can later be
matched to the audit log.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

import typer

from gateway.governance.hold import HoldError, check_role


def export(
    case: str = typer.Argument(..., help="The police case reference of an active hold, or `verify`."),
    bundle: Path = typer.Argument(None, help="With `verify`: the bundle (zip) to check."),
    data: Path = typer.Option(None, "--data", help="The gateway's data directory."),
    by: str = typer.Option(None, "--by", help="Who exports (a supervisor; recorded in the audit log)."),
    role: str = typer.Option(None, "--role", help="Only while no user accounts exist: state `supervisor`."),
    out: Path = typer.Option(Path("."), "--out", help="Directory for the bundles."),
    handed_to: str = typer.Option(None, "--requested-by", help="Who at the police asked for the material: "
                                  "records the handover, which ends or shortens the hold if retention.toml says so."),
    police_ref: str = typer.Option(None, "--police-ref", help="With --requested-by: the police's reference."),
) -> None:
    """Write the police export bundles of a case, or `verify BUNDLE` to check one."""
    if case == "verify":
        if bundle is None:
            typer.echo("error: `vericam export verify BUNDLE` needs the bundle", err=True)
            raise typer.Exit(2)
        problems = verify_bundle(bundle)
        for p in problems:
            typer.echo(f"FAIL {p}", err=True)
        if problems:
            raise typer.Exit(1)
        typer.echo(f"{bundle}: every file matches MANIFEST.sha256; case.json lists every photo")
        return
    if data is None or by is None:
        typer.echo("error: exporting needs --data DIR and --by USER", err=True)
        raise typer.Exit(2)
    if (handed_to is None) != (police_ref is None):
        typer.echo("error: a handover needs both --requested-by and --police-ref", err=True)
        raise typer.Exit(2)
    from gateway.governance import hold as holds
    from gateway.governance.retention import RetentionConfigError, RetentionPolicy, register_export
    from gateway.governance.alarms import Conflict
    from gateway.governance.police_export import build_bundle
    from gateway.storage.store import Store

    with Store.open(data) as store:
        try:
            check_role(store, by, role)
        except HoldError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        alarms = store.holds.alarms_of_case(case)
        if not alarms:
            typer.echo(f"error: no images under an active police hold for case {case!r}", err=True)
            raise typer.Exit(1)
        out.mkdir(parents=True, exist_ok=True)
        for device, alarm_id in alarms:
            try:
                name, blob, info = build_bundle(store, device, alarm_id, by, int(time.time() * 1000))
            except Conflict as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1)
            path = out / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            # The gateway deletes its copy `export_days` after writing it (retention).
            register_export(store, "police bundle", path, f"case:{info['case']}", by, int(time.time() * 1000),
                            info["manifest_sha256"])
            typer.echo(f"{path}: {info['images']} photos, manifest sha256 {info['manifest_sha256']}")
        if handed_to is not None:
            try:
                policy = RetentionPolicy.load(data)
                held = sorted({i["hold_id"] for d, a in alarms for i in store.images.of_alarm(d, a)
                               if i["hold_id"] is not None})
                for hold_id in held:
                    r = holds.hand_over(store, str(hold_id), by, handed_to, police_ref, int(time.time() * 1000),
                                        role=role, policy=policy)
                    typer.echo(f"hold #{hold_id} handed over to the police ({police_ref}); rule: {r['rule']}")
            except (HoldError, RetentionConfigError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(3)


def verify_bundle(path: Path) -> list[str]:
    """Every problem found in a bundle; an empty list means it is whole."""
    problems: list[str] = []
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"not a readable zip: {exc}"]
    with z:
        names = set(z.namelist())
        if "MANIFEST.sha256" not in names:
            return ["no MANIFEST.sha256"]
        listed = {}
        for line in z.read("MANIFEST.sha256").decode(errors="replace").splitlines():
            digest, _, name = line.partition("  ")
            listed[name] = digest
        for name in sorted(names - {"MANIFEST.sha256"}):
            if name not in listed:
                problems.append(f"{name} is not in the manifest")
            elif hashlib.sha256(z.read(name)).hexdigest() != listed[name]:
                problems.append(f"{name} does not match its SHA-256 in the manifest")
        for name in sorted(set(listed) - names):
            problems.append(f"{name} is in the manifest but not in the bundle")
        if "case.json" in names:
            try:
                case = json.loads(z.read("case.json"))
                for photo in case.get("photos", []):
                    f = photo.get("file")
                    if f not in names:
                        problems.append(f"case.json names {f}, which is missing")
                    elif hashlib.sha256(z.read(f)).hexdigest() != photo.get("sha256"):
                        problems.append(f"{f} does not match the image hash recorded at the ARC")
            except ValueError:
                problems.append("case.json is not JSON")
        else:
            problems.append("no case.json")
        if "chain-of-custody.json" not in names:
            problems.append("no chain-of-custody.json")
    return problems
