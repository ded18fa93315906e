"""What the console's pages list, shaped for the templates: devices, sites, the activity log and the audit trail.

Read-only and web-only: the rows come from the store's repositories, the alarm queue and
alarm handling from `gateway.governance.alarms`, the police export from
`gateway.governance.police_export`. This module only adds what a page shows (times as text,
device states in words).
"""

from __future__ import annotations

from gateway.governance.alarms import device_time_ms, fmt_ms
from gateway.governance.need_to_know import RESTRICTED_SITE
from gateway.storage.store import Store


def devices(store: Store, restricted: set[str] = frozenset()) -> list[dict]:
    """Every device; the site of one in `restricted` (its customer restricted processing) is hidden."""
    out = []
    for d in store.devices.list():
        if d["id"] in restricted:
            d["site"] = RESTRICTED_SITE
        if d["online"] is None:
            state = "never seen"
        elif d["online"]:
            state = "online"
        else:
            state = f"offline since {fmt_ms(d['last_seen_ms'])}"
        out.append({"id": d["id"], "site": d["site"], "revoked": bool(d["revoked"]), "online": d["online"],
                    "state": state, "fw": d["fw"], "last_heartbeat_ms": d["last_seen_ms"],
                    "last_heartbeat": fmt_ms(d["last_seen_ms"])})
    return out


def sites(store: Store, restricted: set[str] = frozenset()) -> list[str]:
    """The sites to filter the activity log by; a site only restricted customers' devices watch is left out."""
    if not restricted:
        return store.devices.sites()
    return sorted({d["site"] for d in store.devices.list() if d["id"] not in restricted})


def activity(store: Store, site: str | None, from_ms: int | None, to_ms: int | None, limit: int = 500,
             restricted: set[str] = frozenset()) -> list[dict]:
    """The activity log, newest first; the events of devices in `restricted` are left out."""
    out = []
    for d in store.events.activity(site, from_ms, to_ms, limit):
        if d["device"] in restricted:
            continue
        d["at"] = fmt_ms(device_time_ms(d["t"]) or d["received_at_ms"])
        out.append(d)
    return out


def audit_trail(store: Store, what: str | None, who: str | None, subject: str | None,
                from_ms: int | None, to_ms: int | None, limit: int = 500) -> list[dict]:
    out = []
    for d in store.audit.trail(what, who, subject, from_ms, to_ms, limit):
        d["at"] = fmt_ms(d["at_ms"])
        out.append(d)
    return out


def audit_kinds(store: Store) -> list[str]:
    return store.audit.kinds()
