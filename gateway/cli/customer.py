"""`vericam customer`: the customer relationship's end, from which the activity and identity retention clocks run."""

from __future__ import annotations

from pathlib import Path

import typer

from gateway.cli.common import BY_OPT, DATA_OPT, fail, now_ms, open_store, parse_ms

customer_app = typer.Typer(help="Customer relationships: their end starts the retention clocks.",
                           no_args_is_help=True)


@customer_app.command("end")
def customer_end(customer: str = typer.Argument(..., help="The customer id."),
                 on: str = typer.Option(..., "--on", metavar="DATE", help="The day the relationship ended "
                                        "(YYYY-MM-DD, UTC); today or earlier."),
                 data: Path = DATA_OPT, by: str = BY_OPT,
                 reason: str = typer.Option(..., "--reason", help="Why it ended (recorded in the audit trail)."),
                 role: str = typer.Option(None, "--role", help="Only while no user accounts exist: state 'supervisor' "
                                          "or 'admin' (recorded as asserted, not checked).")) -> None:
    """Record that a customer relationship ended: the activity log is kept 3 years from that day,
    the customer's name, address and id at most 12 months (retention.toml may say less)."""
    from gateway.governance.retention import CustomerError, end_relationship

    try:
        when = parse_ms(on)
    except ValueError:
        fail(f"--on {on!r} is not a date: write it as YYYY-MM-DD")
    with open_store(data) as store:
        try:
            r = end_relationship(store, customer, when, by, now_ms(), reason, role=role)
        except CustomerError as exc:
            fail(str(exc), 3)
    typer.echo(f"the relationship with {r['customer']} ended on {r['ended_on']}; its retention clocks run from "
               f"that day (role: {r['role_source']})")
