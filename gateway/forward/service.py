"""Forwarding in a running gateway: the Forwarder over the gateway's store, started with it.

`start(store, settings, owner)` is what `gateway.ingest.service.Gateway` calls once its store
is open, when `vericam gateway run` was given `--dc09`. It builds the route from the settings
(`gateway.forward.config.Settings`), and a `Forwarder` whose
- intake is the ingest's `StoredOutbox` on the store's own connection: reports commit with the
  events that caused them (`gateway.forward.stored`);
- outbox is a `StoredOutbox` on a connection of its own, shared by the transmitters' threads,
  whose leases carry `owner` (the gateway's stable MQTT client id);
- sites come from `store.dc09_accounts`, and whether a device's customer restricted processing
  from `customers`, both read in the ingest's transaction (only the ingest's writer thread calls
  `Forwarder.alarm` and `verification`).
`stop(forwarder)` ends the threads and closes the transmitters' connection; what was not
acknowledged stays in the outbox for the next start.
"""

from __future__ import annotations

from typing import Callable

from gateway.forward.config import Settings
from gateway.forward.forwarder import Forwarder, Site
from gateway.forward.stored import StoredOutbox
from gateway.storage.access_report import AccessQueries
from gateway.storage.store import Store


def site_of(row: dict | None) -> Site | None:
    """A device's `Site` from its `dc09_accounts` row (None: it is not reported over DC-09)."""
    if row is None:
        return None
    return Site(account=row["account"], prefix=row["prefix"], receiver=row["receiver"], area=row["area"],
                zone=row["zone"])


def start(store: Store, settings: Settings, owner: str, log: Callable[[str], None]) -> Forwarder:
    """Start forwarding (raises `config.ConfigError` for settings that cannot be used)."""
    route = settings.build_route()
    names = [route.name]
    intake = StoredOutbox(store.dc09_outbox, names, owner=owner)
    outbox = StoredOutbox.open(store.db_target, names, owner=owner).start()
    try:
        restriction = AccessQueries(store.db)
        fwd = Forwarder(outbox, [route], lambda device: site_of(store.dc09_accounts.get(device)),
                        console_url=settings.console_url, log=log, intake=intake,
                        restricted=restriction.is_restricted).start()
    except BaseException:
        outbox.close()
        raise
    where = ", ".join(r.where for r in route.receivers)
    keys = "encrypted" if route.keys or route.default_key else "NOT encrypted (no --dc09-key-file)"
    log(f"dc09: forwarding alarms as {route.format} to {where}, {keys}; backlog "
        f"{outbox.backlog(route.name)}; verification links "
        + (f"under {settings.console_url}" if settings.console_url else "off (no --dc09-console-url)"))
    return fwd


def stop(fwd: Forwarder, timeout: float = 5.0) -> None:
    fwd.stop(timeout)
    if isinstance(fwd.outbox, StoredOutbox):
        fwd.outbox.close()


def prometheus(fwd: Forwarder) -> list[str]:
    """The forwarder's counters and each route's backlog, as Prometheus text lines."""
    lines = ["# TYPE vericam_dc09_backlog gauge"]
    for t in fwd.transmitters:
        try:
            lines.append(f'vericam_dc09_backlog{{route="{t.route.name}"}} {fwd.outbox.backlog(t.route.name)}')
        except Exception:
            pass       # the database cannot be read right now: left out, not faked
    names = sorted({key[0] for key in fwd.counters.snapshot()})
    for name in names:
        lines.append(f"# TYPE vericam_dc09_{name}_total counter")
        lines += [line for line in fwd.counters.prometheus() if line.startswith(f"vericam_dc09_{name}_total{{")]
    return lines

