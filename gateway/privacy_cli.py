"""Commands for retention, police holds, the audit trail and data-subject rights.

`vericam audit`, `vericam hold`, `vericam retention` and `vericam subject`, each a typer app
joined through the `vericam.commands` entry points (pyproject.toml).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import time
from pathlib import Path
from typing import Iterator

import typer

DATA_OPT = typer.Option(..., "--data", help="The gateway's data directory (database, blobs, keys).")
BY_OPT = typer.Option(..., "--by", help="Who does this (a user name; recorded in the audit log).")

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
hold_app = typer.Typer(help="Police holds: keep an alarm's images up to 30 days after it.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention rules, the sweeper and reconciliation.", no_args_is_help=True)
subject_app = typer.Typer(help="Customers and their data-subject rights: export, erase, restrict.",
                          no_args_is_help=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fail(msg: str, code: int = 2):
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _store(data: Path) -> Iterator:
    from .store import Store, is_initialised

    if not is_initialised(data):
        _fail(f"no gateway data in {data}: run `vericam gateway init --data {data}`")
    with Store.open(data) as store:
        yield store


def _policy(data: Path):
    from .retention import RetentionConfigError, RetentionPolicy

    try:
        return RetentionPolicy.load(data)
    except RetentionConfigError as exc:
        _fail(str(exc))


# audit ---------------------------------------------------------------------------------------
@audit_app.command("verify")
def audit_verify(data: Path = DATA_OPT, as_json: bool = typer.Option(False, "--json")) -> None:
    """Check the hash chain and its head in the key store. Exit 1 if it was tampered with."""
    from . import audit

    with _store(data) as store:
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
    from . import audit

    with _store(data) as store:
        for r in audit.records(store, what, subject):
            typer.echo(json.dumps(r, sort_keys=True))


# hold ----------------------------------------------------------------------------------------
@hold_app.command("place")
def hold_place(target: str = typer.Argument(..., help="Image id, ALARM_ID or DEVICE/ALARM_ID."),
               data: Path = DATA_OPT, by: str = BY_OPT,
               reason: str = typer.Option(..., "--reason", help="Why the police need it."),
               case: str = typer.Option(..., "--case", help="The police case reference."),
               role: str = typer.Option(None, "--role", help="Only while no user accounts exist: "
                                        "state 'supervisor' (recorded as asserted, not checked).")) -> None:
    """Place a police hold: keep the images until 30 days after the alarm, never longer."""
    from . import hold

    with _store(data) as store:
        try:
            r = hold.place(store, target, by, reason, case, _now_ms(), role=role, policy=_policy(data))
        except hold.HoldError as exc:
            _fail(str(exc), 3)
    typer.echo(f"hold #{r['hold']} on {r['images']} images for case {r['case']}; they are deleted on "
               f"{', '.join(r['delete_on'])} unless released earlier (role: {r['role_source']})")


@hold_app.command("release")
def hold_release(hold_ref: str = typer.Argument(..., metavar="HOLD|IMAGE|ALARM"), data: Path = DATA_OPT,
                 by: str = BY_OPT, reason: str = typer.Option(..., "--reason"),
                 role: str = typer.Option(None, "--role")) -> None:
    """Release a hold: its images go back on the 7-day schedule (deleted at once if past it)."""
    from . import hold

    with _store(data) as store:
        try:
            r = hold.release(store, hold_ref, by, reason, _now_ms(), role=role, policy=_policy(data))
        except hold.HoldError as exc:
            _fail(str(exc), 3)
    typer.echo(f"released hold #{r['hold']} (case {r['case']}): {r['back_on_schedule']} images back on the "
               f"7-day schedule, {r['deleted_now']} deleted now")


@hold_app.command("list")
def hold_list(data: Path = DATA_OPT, active: bool = typer.Option(False, "--active")) -> None:
    """List holds as JSON lines."""
    from . import hold

    with _store(data) as store:
        for h in hold.list_holds(store, active):
            typer.echo(json.dumps(h, sort_keys=True))


@hold_app.command("add-user")
def hold_add_user(name: str, data: Path = DATA_OPT, role: str = typer.Option(..., "--role"),
                  by: str = BY_OPT) -> None:
    """Create or change a user account (operator, supervisor, auditor, admin). Audited."""
    from . import hold

    with _store(data) as store:
        try:
            hold.add_user(store, name, role, by, _now_ms())
        except hold.HoldError as exc:
            _fail(str(exc))
    typer.echo(f"user {name} has the role {role}")


# retention -----------------------------------------------------------------------------------
@retention_app.command("show")
def retention_show(data: Path = DATA_OPT) -> None:
    """Print the retention rules in force (defaults + DATA/retention.toml), validated."""
    typer.echo(json.dumps(_policy(data).as_dict(), indent=2))


@retention_app.command("sweep")
def retention_sweep(data: Path = DATA_OPT, as_json: bool = typer.Option(False, "--json")) -> None:
    """Run one sweep now (the gateway also sweeps on its own schedule)."""
    from .retention import Sweeper

    with _store(data) as store:
        rep = Sweeper(store, _policy(data)).sweep()
    typer.echo(json.dumps(rep.as_dict()) if as_json else
               f"{rep.images_deleted} images deleted, KEKs destroyed: {', '.join(rep.keks_destroyed) or 'none'}, "
               f"{rep.activity_purged} activity records purged")


@retention_app.command("reconcile")
def retention_reconcile(data: Path = DATA_OPT, repair: bool = typer.Option(False, "--repair"),
                        min_age: float = typer.Option(60.0, "--min-age", help="Ignore files younger than "
                                                      "this many seconds (an ingest in progress)."),
                        as_json: bool = typer.Option(False, "--json")) -> None:
    """Find blob files without rows and rows without files; --repair removes them (audited)."""
    from .retention import reconcile

    with _store(data) as store:
        rec = reconcile(store, repair=repair, min_file_age_s=min_age)
    if as_json:
        typer.echo(json.dumps(rec.as_dict()))
    else:
        typer.echo(f"{len(rec.files_without_rows)} files without rows, {len(rec.rows_without_files)} rows "
                   f"without files, {len(rec.due_rows_without_files)} due rows without files "
                   f"(an interrupted sweep){'; repaired ' + str(rec.repaired) if repair else ''}")
    if not rec.clean and not repair:
        raise typer.Exit(1)


# subject -------------------------------------------------------------------------------------
def _parse_ms(when: str | None) -> int:
    if not when:
        return _now_ms()
    d = _dt.datetime.fromisoformat(when)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return int(d.timestamp() * 1000)


@subject_app.command("add-customer")
def subject_add(customer: str, data: Path = DATA_OPT, name: str = typer.Option(None, "--name"),
                by: str = BY_OPT) -> None:
    """Record a customer relationship (open until `end`)."""
    from .subject import SubjectError, add_customer

    with _store(data) as store:
        try:
            add_customer(store, customer, name, by, _now_ms())
        except SubjectError as exc:
            _fail(str(exc))
    typer.echo(f"customer {customer} recorded")


@subject_app.command("link")
def subject_link(device: str, customer: str, data: Path = DATA_OPT, by: str = BY_OPT) -> None:
    """Link a device to the customer whose premises it watches."""
    from .subject import SubjectError, link_device

    with _store(data) as store:
        try:
            link_device(store, device, customer, by, _now_ms())
        except SubjectError as exc:
            _fail(str(exc))
    typer.echo(f"device {device} belongs to customer {customer}")


@subject_app.command("end")
def subject_end(customer: str, data: Path = DATA_OPT, by: str = BY_OPT,
                on: str = typer.Option(None, "--on", help="End date (ISO, UTC); default now.")) -> None:
    """Record the end of the customer relationship (starts the activity log's 3 years)."""
    from .subject import SubjectError, end_relationship

    with _store(data) as store:
        try:
            end_relationship(store, customer, _parse_ms(on), by, _now_ms())
        except SubjectError as exc:
            _fail(str(exc))
    typer.echo(f"relationship with {customer} ended")


@subject_app.command("export")
def subject_export(customer: str, data: Path = DATA_OPT,
                   out: Path = typer.Option(..., "--out", help="A new directory for the export."),
                   by: str = BY_OPT, why: str = typer.Option("data-subject access request", "--why")) -> None:
    """Export the customer's data: export.json, retained images, MANIFEST.sha256. Audited."""
    from .subject import SubjectError, export

    with _store(data) as store:
        try:
            s = export(store, customer, out, by, why, _now_ms())
        except SubjectError as exc:
            _fail(str(exc))
    typer.echo(f"exported {customer}: {s['devices']} devices, {s['events']} events, {s['alarms']} alarms, "
               f"{s['images']} images to {out} (manifest {s['manifest_sha256'][:16]})")


@subject_app.command("erase")
def subject_erase(customer: str, data: Path = DATA_OPT, by: str = BY_OPT,
                  why: str = typer.Option("data-subject erasure request", "--why"),
                  restrict: bool = typer.Option(False, "--restrict", help="Also restrict processing of "
                                                "what is kept."),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Erase what may be erased; report what a police hold or a legal duty keeps. Audited.

    Exit 3 if nothing could be erased because everything is kept."""
    from .subject import SubjectError, erase

    with _store(data) as store:
        try:
            r = erase(store, customer, by, why, _now_ms(), restrict=restrict, policy=_policy(data))
        except SubjectError as exc:
            _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(r))
    else:
        typer.echo(f"erased {r['images_erased']} images and {r['uploads_dropped']} unfinished uploads of {customer}")
        for k in r["kept"]:
            typer.echo(f"kept {k['what']}: {k['why']}, until {k['until']}")
    if r["refused"]:
        raise typer.Exit(3)


@subject_app.command("restrict")
def subject_restrict(customer: str, data: Path = DATA_OPT, by: str = BY_OPT,
                     why: str = typer.Option(..., "--why"), lift: bool = typer.Option(False, "--lift")) -> None:
    """Set (or --lift) the restriction-of-processing flag. Audited."""
    from .subject import SubjectError, set_restricted

    with _store(data) as store:
        try:
            set_restricted(store, customer, not lift, by, why, _now_ms())
        except SubjectError as exc:
            _fail(str(exc))
    typer.echo(f"processing of {customer} {'no longer ' if lift else ''}restricted")


@retention_app.command("simulate")
def retention_simulate(days: int = typer.Option(40, "--days", help="Simulated days."),
                       seed: int = typer.Option(1, "--seed"),
                       data: Path = typer.Option(None, "--data", help="Keep the simulated gateway's data here "
                                                 "(default: a temporary directory)."),
                       as_json: bool = typer.Option(False, "--json", help="End with one JSON line.")) -> None:
    """Time travel: the real store, sweeper, holds and key store under a simulated clock.

    Checks every simulated hour: image ages against the rules, orphans, and whether anything
    deleted still decrypts from a nightly backup with the live key store. Exit 1 on a violation."""
    from .retention_sim import simulate

    if data is not None and data.exists() and any(data.iterdir()):
        _fail(f"{data} is not empty: the simulation needs a fresh data directory")
    r = simulate(days=days, seed=seed, data_dir=data, progress=typer.echo)
    if as_json:
        typer.echo(json.dumps(r, sort_keys=True))
    else:
        typer.echo(f"{r['violations']} violations; oldest unheld image {r['max_age_days_unheld']} days, held "
                   f"{r['max_age_days_held']} days; {r['orphans']} orphans; {r['decryptable_after_expiry']} "
                   "deleted images decryptable from backups")
    if r["violations"]:
        raise typer.Exit(1)


@retention_app.command("bench")
def retention_bench(stored: int = typer.Option(1_000_000, "--stored"),
                    expired: int = typer.Option(100_000, "--expired"),
                    batch: int = typer.Option(1000, "--batch"),
                    workdir: Path = typer.Option(None, "--workdir", help="Where to build the store (a real disk)."),
                    as_json: bool = typer.Option(False, "--json")) -> None:
    """Time a sweep of EXPIRED images out of STORED and an empty sweep, against raw unlink."""
    from .retention_bench import bench

    if not 0 < expired <= stored:
        _fail("need 0 < --expired <= --stored")
    r = bench(stored, expired, batch, str(workdir) if workdir else None, progress=lambda l: typer.echo(l, err=True))
    if as_json:
        typer.echo(json.dumps(r, sort_keys=True))
    else:
        typer.echo(f"swept {expired} of {stored} images in {r['sweep_s']} s ({r['sweep_per_image_us']} us each), "
                   f"{r['sweep_vs_raw_unlink']}x a raw unlink of the same files ({r['raw_unlink_s']} s); "
                   f"a sweep with nothing expired: {r['empty_sweep_ms']} ms")
