"""`vericam subject`: customers and their data-subject rights (access, portability, erasure, restriction, access report).

Every command acts as a named user (`--by`) whose role allows it, as in the console
(`gateway.governance.users.PERMISSIONS`): customers (add, link, end) the supervisor or admin;
export, erase and restrict the supervisor; the access report the supervisor or auditor.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gateway.cli.common import BY_OPT, DATA_OPT, ROLE_OPT, acting_as, fail, load_policy, now_ms, open_store
from gateway.cli.customer import customer_end

subject_app = typer.Typer(help="Customers and their data-subject rights: export, erase, restrict, access report.",
                          no_args_is_help=True)


@subject_app.command("add-customer")
def subject_add(customer: str, data: Path = DATA_OPT, name: str = typer.Option(None, "--name"),
                by: str = BY_OPT, role: str = ROLE_OPT) -> None:
    """Record a customer relationship (open until `end`)."""
    from gateway.governance.subject import SubjectError, add_customer

    with open_store(data) as store:
        acting_as(store, by, "customers", role)
        try:
            add_customer(store, customer, name, by, now_ms())
        except SubjectError as exc:
            fail(str(exc))
    typer.echo(f"customer {customer} recorded")


@subject_app.command("link")
def subject_link(device: str, customer: str, data: Path = DATA_OPT, by: str = BY_OPT, role: str = ROLE_OPT) -> None:
    """Link a device to the customer whose premises it watches."""
    from gateway.governance.subject import SubjectError, link_device

    with open_store(data) as store:
        acting_as(store, by, "customers", role)
        try:
            link_device(store, device, customer, by, now_ms())
        except SubjectError as exc:
            fail(str(exc))
    typer.echo(f"device {device} belongs to customer {customer}")


# `subject end` is `customer end` under another name: one function, the same guards and audit record.
subject_app.command("end", help="The same as `vericam customer end`: record that a customer relationship "
                    "ended (its retention clocks run from that day).")(customer_end)


@subject_app.command("export")
def subject_export(customer: str, data: Path = DATA_OPT,
                   out: Path = typer.Option(..., "--out", help="A new directory for the export."),
                   by: str = BY_OPT, role: str = ROLE_OPT,
                   why: str = typer.Option("data-subject access request", "--why")) -> None:
    """Export the customer's data: export.json, retained images, MANIFEST.sha256. Audited."""
    from gateway.governance.subject import SubjectError, export

    with open_store(data) as store:
        acting_as(store, by, "subject rights", role)
        try:
            s = export(store, customer, out, by, why, now_ms())
        except SubjectError as exc:
            fail(str(exc))
    typer.echo(f"exported {customer}: {s['devices']} devices, {s['events']} events, {s['alarms']} alarms, "
               f"{s['images']} images to {out} (manifest {s['manifest_sha256'][:16]})")


@subject_app.command("erase")
def subject_erase(customer: str, data: Path = DATA_OPT, by: str = BY_OPT, role: str = ROLE_OPT,
                  why: str = typer.Option("data-subject erasure request", "--why"),
                  restrict: bool = typer.Option(False, "--restrict", help="Also restrict processing of "
                                                "what is kept."),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Erase what may be erased; report what a police hold or a legal duty keeps. Audited.

    Exit 3 if nothing could be erased because everything is kept."""
    from gateway.governance.subject import SubjectError, erase

    with open_store(data) as store:
        acting_as(store, by, "subject rights", role)
        try:
            r = erase(store, customer, by, why, now_ms(), restrict=restrict, policy=load_policy(data))
        except SubjectError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps(r))
    else:
        typer.echo(f"erased {r['images_erased']} images and {r['uploads_dropped']} unfinished uploads of {customer}")
        for k in r["kept"]:
            typer.echo(f"kept {k['what']}: {k['why']}, until {k['until']}")
    if r["refused"]:
        raise typer.Exit(3)


@subject_app.command("restrict")
def subject_restrict(customer: str, data: Path = DATA_OPT, by: str = BY_OPT, role: str = ROLE_OPT,
                     why: str = typer.Option(..., "--why"), lift: bool = typer.Option(False, "--lift")) -> None:
    """Set (or --lift) the restriction-of-processing flag. Audited."""
    from gateway.governance.subject import SubjectError, set_restricted

    with open_store(data) as store:
        acting_as(store, by, "subject rights", role)
        try:
            set_restricted(store, customer, not lift, by, why, now_ms())
        except SubjectError as exc:
            fail(str(exc))
    typer.echo(f"processing of {customer} {'no longer ' if lift else ''}restricted")


@subject_app.command("access-report")
def subject_access_report(customer: str, data: Path = DATA_OPT, by: str = BY_OPT, role: str = ROLE_OPT,
                          as_json: bool = typer.Option(False, "--json")) -> None:
    """Who viewed which of the household's photos, when and why, from the audit trail; nothing
    else of any staff member. For the household (GDPR art. 15). Audited."""
    from gateway.governance.subject import SubjectError, access_report

    with open_store(data) as store:
        acting = acting_as(store, by, "access report", role)
        try:
            r = access_report(store, customer, by, acting, now_ms())
        except SubjectError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps(r, sort_keys=True))
        return
    typer.echo(f"photos of customer {customer} (devices: {', '.join(r['devices']) or 'none'}): "
               f"{len(r['reads'])} reads")
    for x in r["reads"]:
        where = f"{x['device']}/{x['alarm']}" if x["device"] else "-"
        photos = f"{len(x['photos'])} photos" if len(x["photos"]) != 1 else f"photo {x['photos'][0][:12]}"
        typer.echo(f"{x['at']}  {x['who']} ({x['role'] or '-'})  {x['what']}  {where}  {photos}  why: {x['why']}")
