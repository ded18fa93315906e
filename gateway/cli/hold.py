"""`vericam hold`: police holds that keep an alarm's images up to 30 days after it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gateway.cli.common import BY_OPT, DATA_OPT, fail, load_policy, now_ms, open_store

hold_app = typer.Typer(help="Police holds: keep an alarm's images up to 30 days after it.", no_args_is_help=True)


@hold_app.command("place")
def hold_place(target: str = typer.Argument(..., help="Image id, ALARM_ID or DEVICE/ALARM_ID."),
               data: Path = DATA_OPT, by: str = BY_OPT,
               reason: str = typer.Option(..., "--reason", help="Why the police need it."),
               case: str = typer.Option(..., "--case", help="The police case reference."),
               role: str = typer.Option(None, "--role", help="Only while no user accounts exist: "
                                        "state 'supervisor' (recorded as asserted, not checked).")) -> None:
    """Place a police hold: keep the images until 30 days after the alarm, never longer."""
    from gateway.governance import hold

    with open_store(data) as store:
        try:
            r = hold.place(store, target, by, reason, case, now_ms(), role=role, policy=load_policy(data))
        except hold.HoldError as exc:
            fail(str(exc), 3)
    typer.echo(f"hold #{r['hold']} on {r['images']} images for case {r['case']}; they are deleted on "
               f"{', '.join(r['delete_on'])} unless released earlier (role: {r['role_source']})")


@hold_app.command("release")
def hold_release(hold_ref: str = typer.Argument(..., metavar="HOLD|IMAGE|ALARM"), data: Path = DATA_OPT,
                 by: str = BY_OPT, reason: str = typer.Option(..., "--reason"),
                 role: str = typer.Option(None, "--role")) -> None:
    """Release a hold: its images go back on the 7-day schedule (deleted at once if past it)."""
    from gateway.governance import hold

    with open_store(data) as store:
        try:
            r = hold.release(store, hold_ref, by, reason, now_ms(), role=role, policy=load_policy(data))
        except hold.HoldError as exc:
            fail(str(exc), 3)
    typer.echo(f"released hold #{r['hold']} (case {r['case']}): {r['back_on_schedule']} images back on the "
               f"7-day schedule, {r['deleted_now']} deleted now")


@hold_app.command("handover")
def hold_handover(hold_ref: str = typer.Argument(..., metavar="HOLD|IMAGE|ALARM"), data: Path = DATA_OPT,
                  by: str = BY_OPT,
                  requested_by: str = typer.Option(..., "--requested-by", help="Who at the police asked for the "
                                                   "material (name, unit)."),
                  police_ref: str = typer.Option(..., "--police-ref", help="The police's reference for the request."),
                  role: str = typer.Option(None, "--role")) -> None:
    """Record the handover of a hold's material to the police; the hold then ends, shortens or runs
    on, as `handover` in retention.toml says (default: it ends)."""
    from gateway.governance import hold

    with open_store(data) as store:
        try:
            r = hold.hand_over(store, hold_ref, by, requested_by, police_ref, now_ms(), role=role,
                               policy=load_policy(data))
        except hold.HoldError as exc:
            fail(str(exc), 3)
    what = {"end": f"the hold ended: {r['back_on_schedule']} images back on the 7-day schedule, "
                   f"{r['deleted_now']} deleted now",
            "shorten": f"{r['shortened']} images kept at most until the handover rule's day, {r['deleted_now']} "
                       "deleted now",
            "keep": "the hold runs on to its day"}[r["rule"]]
    typer.echo(f"hold #{r['hold']} (case {r['case']}) handed over to the police; {what}")


@hold_app.command("list")
def hold_list(data: Path = DATA_OPT, active: bool = typer.Option(False, "--active"), by: str = BY_OPT,
              role: str = typer.Option(None, "--role", help="Only while no user accounts exist: state "
                                       "'supervisor' or 'auditor' (recorded as asserted, not checked).")) -> None:
    """List holds as JSON lines: their reasons, cases and who at the police asked. A supervisor (who
    places them) or an auditor (who reads them in the audit trail); the reading is audited."""
    from gateway.governance import hold
    from gateway.governance.need_to_know import record_read
    from gateway.governance.users import UserError, act_as

    with open_store(data) as store:
        try:
            act_as(store, by, "hold", role)
        except UserError as as_supervisor:
            try:
                act_as(store, by, "audit", role)
            except UserError:
                fail(f"listing holds needs the supervisor or auditor role: {as_supervisor}", 3)
        account = store.users.get(by)
        acting = account["role"] if account is not None else role
        rows = hold.list_holds(store, active)
        record_read(store, by, acting, "view holds", "police holds", now_ms(),
                    detail={"active_only": active, "holds": len(rows)})
        for h in rows:
            typer.echo(json.dumps(h, sort_keys=True))
