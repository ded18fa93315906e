"""Giving a device the DC-09 account its panel reports under, so the ARC software files both reports as one site.

An ARC's alarm software knows each site by the account (and account prefix, receiver number)
its panel reports under. The camera detector's alarms are forwarded under the same account,
with the panel's area and the zone the detector is installed as (`gateway.forward.forwarder.Site`
says what is valid). Setting and removing it are configuration changes: each is audited, with
the OS user who ran the command as who. A running gateway reads the account for each report.
"""

from __future__ import annotations

import getpass
import time

from gateway.forward.forwarder import Site
from gateway.governance import audit
from gateway.storage.store import Store, StoreError


def _audit(store: Store, why: str, device: str, detail: dict, now: int) -> None:
    audit.append(store, f"os:{getpass.getuser()}", "configure device", why, at_ms=now, subject=device, detail=detail)


def set_account(store: Store, device: str, account: str, prefix: str = "0", receiver: str | None = None,
                area: int = 1, zone: int = 1) -> Site:
    """Report `device` under this account from now on (audited). Raises DC09Error for a value the
    receiver would refuse, StoreError for a device that is not provisioned here."""
    site = Site(account.upper(), prefix.upper(), receiver.upper() if receiver is not None else None, area, zone)
    now = int(time.time() * 1000)
    with store.transaction():
        if store.devices.get(device) is None:
            raise StoreError(f"device {device} is not provisioned here: `vericam gateway add-device` it first")
        store.dc09_accounts.set(device, site.account, site.prefix, site.receiver, site.area, site.zone, now)
        _audit(store, "DC-09 account set", device,
                      {"account": site.account, "prefix": site.prefix, "receiver": site.receiver,
                       "area": site.area, "zone": site.zone}, now)
    return site


def remove_account(store: Store, device: str) -> bool:
    """Stop reporting `device` over DC-09 (audited); False if it had no account."""
    now = int(time.time() * 1000)
    with store.transaction():
        done = store.dc09_accounts.remove(device)
        if done:
            _audit(store, "DC-09 account removed", device, {}, now)
        return done
