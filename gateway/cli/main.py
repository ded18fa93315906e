"""The one `vericam` command, assembled from the sub-commands that installed packages register.

Packages join through the `vericam.commands` entry-point group (see pyproject.toml). An entry
point names either a typer app, which becomes a command group (`vericam gateway ...`), or a
plain function, which becomes a command (`vericam demo`). A package may also add one command
to a group another package owns, through `vericam.subcommands` named GROUP.COMMAND
(`vericam retention bench` is simulator code). This keeps the gateway free of any import of
the simulator.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

app = typer.Typer(
    name="vericam",
    help="Vericam: privacy-first photo verification for home alarm systems.\n\n"
    "Photos are sealed on the device and leave it only when an alarm fires; the gateway at the "
    "alarm receiving centre verifies, stores and later destroys them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _load(ep):
    try:
        return ep.load()
    except Exception as exc:  # a broken plug-in must not take the whole CLI down
        print(f"vericam: could not load command {ep.name!r}: {exc}", file=sys.stderr)
        return None


def _load_commands() -> None:
    groups: dict[str, typer.Typer] = {}
    for ep in sorted(entry_points(group="vericam.commands"), key=lambda e: e.name):
        target = _load(ep)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=ep.name)
            groups[ep.name] = target
        elif target is not None:
            app.command(name=ep.name)(target)
    for ep in sorted(entry_points(group="vericam.subcommands"), key=lambda e: e.name):
        group, _, command = ep.name.partition(".")
        if group not in groups:
            print(f"vericam: no command group {group!r} for {ep.name!r}", file=sys.stderr)
            continue
        target = _load(ep)
        if target is not None:
            registered = {c.name for c in groups[group].registered_commands}
            if command not in registered:  # tests may assemble the app twice in one process
                groups[group].command(command)(target)


def main() -> None:
    from gateway.storage.sqldb import DatabaseError

    _load_commands()
    try:
        app()
    except DatabaseError as exc:  # unreachable or misconfigured metadata database: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
