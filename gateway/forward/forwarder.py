"""What the ingest calls to forward an alarm: the event becomes an outbox entry, and the transmitters wake.

`Forwarder.alarm(device, event, alarm_id)` is called as soon as an alarm or technical event is
stored, before its photos arrive: the report is made durable in the outbox and every route's
transmitter is woken, so the alarm goes out at once. `Forwarder.verification(device, event,
alarm_id)` is called when the alarm's photos are stored: a follow-up report with the link to the
alarm's console page (`[V...]`, see `gateway.forward.codes`). Both return the outbox entry, or
None for an event that is not forwarded (no row in the code table, or a device with no site).

Neither call touches the network: the ingest is never held up by a receiver.

A device whose customer restricted processing (GDPR art. 18, `restricted`) still has its
alarms of a person in danger forwarded (`FORWARDED_UNDER_RESTRICTION`: intrusion, fire and
smoke, duress, panic, SOS, the silent alarm, and the cancellation that follows one), since
restriction allows processing to protect a person's vital interests and rights; they go out
without the link to the photos, and no verification follow-up is sent. Everything else of such
a device (troubles, tamper, supervision) is stored but not forwarded (docs/OPERATING.md).

In a running gateway the reports go into `intake`, the ingest's own `StoredOutbox`, inside the
transaction that stores the event (`gateway.forward.stored`); the transmitters read them from
`outbox`, on a connection of their own. The ingest calls `wake()` once that transaction has
committed, since a report is not there for the transmitters to see before. Such a report is
put already leased to this gateway on every route (`Outbox.put(..., lease_s)`), and `wake()`
hands its id straight to the transmitters (`Transmitter.hand`): the alarm goes out without a
poll or a lease transaction in its way, and the outbox is still its record. One alarm is
reported once: its report is put with the key `alarm/DEVICE/ALARM_ID/EVENT`, its follow-up with
`verification/DEVICE/ALARM_ID`, so a second call for either (another capture of the alarm
stored, another worker) returns the entry already queued.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping
from urllib.parse import quote

from gateway.forward import codes, dc09
from gateway.forward.outbox import Entry, Outbox, Report
from gateway.forward.transmitter import Counters, Route, Transmitter

_log = logging.getLogger("vericam.forward")

# What goes to the ARC's alarm software for a customer who restricted processing: a person may be in danger.
FORWARDED_UNDER_RESTRICTION = frozenset({"intrusion", "fire", "smoke", "duress", "panic", "sos", "silent",
                                         "alarm_cancelled"})


@dataclass(frozen=True)
class Site:
    """How a device's site is known at the ARC's receiver: the panel's own account and line.

    `account` (3-16 hex digits), `prefix` (L) and `receiver` (R) are what the panel reports
    under, so that the ARC software files the gateway's report with the panel's. `area` is the
    panel's area (partition) and `zone` the zone the device is installed as.
    """
    account: str
    prefix: str = "0"
    receiver: str | None = None
    area: int = 1
    zone: int = 1

    def __post_init__(self):
        dc09.Account(self.account, self.prefix, self.receiver)    # validates
        if not 0 <= self.area <= 99 or not 0 <= self.zone <= 999:
            raise dc09.DC09Error(f"site {self.account}: area {self.area} must be 0-99 and zone {self.zone} "
                                 "0-999 (the Contact ID partition and zone fields)")


class Forwarder:
    """Puts reports in the outbox and wakes the transmitters of every route.

    `sites` maps a device id to its `Site` (a mapping or a function). `console_url` is the
    console's external base address (`https://arc.example/console`); the verification link of
    an alarm is `{console_url}/alarms/{device}/{alarm_id}`, which opens only after login.
    `intake` is where `alarm` and `verification` put reports, when not in `outbox` itself; then
    the caller wakes the transmitters (`wake()`) once the reports are committed. `restricted`
    says whether a device's customer restricted processing (see the module docstring).
    """

    def __init__(self, outbox: Outbox, routes: Iterable[Route], sites: Mapping[str, Site] | Callable[[str], Site | None],
                 console_url: str | None = None, clock: Callable[[], float] = time.time,
                 log: Callable[[str], None] | None = None, counters: Counters | None = None,
                 on_ack: Callable[[Entry, str, float], None] | None = None, intake: Outbox | None = None,
                 restricted: Callable[[str], bool] | None = None):
        self.outbox = outbox
        self.intake = outbox if intake is None else intake
        self.clock = clock
        self.log = log or _log.info
        self.counters = counters or Counters()
        self.console_url = console_url.rstrip("/") if console_url else None
        self._sites = sites.get if isinstance(sites, Mapping) else sites
        self._restricted = restricted or (lambda device: False)
        self.transmitters = [Transmitter(r, outbox, self.counters, self.log, clock, on_ack) for r in routes]
        # Reports put leased to us in the caller's transaction, handed to the transmitters on wake();
        # an id whose transaction rolled back is simply not found by `claimed`.
        self._lease_s = max((t.lease_s for t in self.transmitters), default=60.0) \
            if self.intake is not outbox and hasattr(outbox, "claimed") else None
        self._handed: list[str] = []

    def start(self) -> "Forwarder":
        for t in self.transmitters:
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        for t in self.transmitters:
            t.stop(timeout)

    def wake(self) -> None:
        """Tell every transmitter that reports were put (the ingest: after its commit), and hand
        them the reports put leased to them."""
        handed, self._handed = self._handed, []
        for t in self.transmitters:
            t.hand(handed)

    def link(self, device: str, alarm_id: str) -> str | None:
        if not self.console_url:
            return None
        return f"{self.console_url}/alarms/{quote(device, safe='')}/{quote(alarm_id, safe='')}"

    def alarm(self, device: str, event: str, alarm_id: str | None = None, at: float | None = None) -> Entry | None:
        """Forward an alarm or technical event of `device` (a `codes.CODES` key) at once."""
        return self._put(device, event, alarm_id, at, follow_up=False)

    def verification(self, device: str, event: str, alarm_id: str, at: float | None = None) -> Entry | None:
        """Tell the ARC software that the photos of the alarm `alarm_id` are there to look at."""
        if not self.console_url:
            return None
        return self._put(device, event, alarm_id, at, follow_up=True)

    def _put(self, device: str, event: str, alarm_id: str | None, at: float | None, follow_up: bool) -> Entry | None:
        if event not in codes.CODES:
            return None
        site = self._sites(device)
        if site is None:
            self.counters.add("unrouted", "*", reason="no_site")
            self.log(f"dc09: {event} of a device with no account configured is not forwarded; "
                     "give the device its panel's account to have it reported")
            return None
        restricted = self._restricted(device)
        if restricted and (follow_up or event not in FORWARDED_UNDER_RESTRICTION):
            self.counters.add("unrouted", "*", reason="restricted")
            self.log(f"dc09: {'the verification link' if follow_up else event} of a device whose customer "
                     "restricted processing is stored, not forwarded")
            return None
        report = Report(event=event, account=site.account, prefix=site.prefix, receiver=site.receiver,
                        area=site.area, zone=site.zone,
                        link=self.link(device, alarm_id) if alarm_id and not restricted else None,
                        follow_up=follow_up,
                        alarm_id=alarm_id, device=device, at=self.clock() if at is None else at)
        key = None
        if alarm_id:
            key = f"verification/{device}/{alarm_id}" if follow_up else f"alarm/{device}/{alarm_id}/{event}"
        entry = self.intake.put(report, self.clock(), key=key, lease_s=self._lease_s)
        if entry.leased:
            self._handed.append(entry.id)
        self.counters.add("queued", "*", reason="follow_up" if follow_up else event)
        if self.intake is self.outbox:
            self.wake()
        # else the report is in the caller's transaction, not there for the transmitters to see
        # yet: the caller wakes them after its commit (a wake before it would only send them
        # into the database's write lock, to sleep there while the report commits)
        return entry
