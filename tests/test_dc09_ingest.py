"""The ingest queues a DC-09 report for every alarm it stores, in the same commit, and never loses an event to it.

Without a broker or a receiver: the real Ingest and Store, the real Forwarder over the
database outbox (its transmitters not started, so nothing leaves), and a fake device that
seals what the firmware would send. What is checked is what the ARC's receiver would be sent
(read on the transmitters' own connection, so only what is committed): one report per alarm,
under the panel's account and zone, with the link to the alarm's page; one follow-up once its
photos are stored, whichever came first; technical events and cancellations too; nothing for
a device that has no account; and a failure to queue a report never costs the event.
"""

from __future__ import annotations

import os
import time

import pytest

from gateway.forward.forwarder import Forwarder
from gateway.forward.service import site_of
from gateway.forward.stored import StoredOutbox
from gateway.forward.transmitter import Receiver, Route
from gateway.ingest.pipeline import Ingest, Message
from gateway.provisioning.dc09 import remove_account, set_account
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from simulator.fake_device import FakeDevice

# A recent alarm on the device clock: its photos' retention counts from it (issue 15).
T_ALARM = int(time.time()) - 600
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(3000) + b"\xff\xd9"
CONSOLE = "https://arc.example/vericam"


class Gateway:
    """An ingest with DC-09 forwarding, as `vericam gateway run --dc09` wires it."""

    def __init__(self, data):
        init_arc(data)
        self.device = FakeDevice(add_device(data, "cam-1", "site-a"), chunk_size=1024)
        self.store = Store.open(data)
        set_account(self.store, "cam-1", "1234", zone=3)
        self.lines: list[str] = []
        self.intake = StoredOutbox(self.store.dc09_outbox, ["arc"])
        self.sent = StoredOutbox.open(self.store.db_target, ["arc"])        # the transmitters' connection
        route = Route("arc", (Receiver("primary", "127.0.0.1", 9),))       # never started: nothing is sent
        self.forwarder = Forwarder(self.sent, [route], lambda d: site_of(self.store.dc09_accounts.get(d)),
                                   console_url=CONSOLE, log=self.lines.append, intake=self.intake)
        self.ingest = Ingest(self.store, log=self.lines.append, forward=self.forwarder)

    def send(self, *messages):
        return self.ingest.process_batch([Message(t, p) for t, p in messages])

    def alarm(self, code: str, alarm_id: str, event_id: str | None = None):
        event = {"kind": "alarm", "code": code, "alarm_id": alarm_id, "t": T_ALARM,
                 "event_id": event_id or os.urandom(8).hex()}
        return self.device.event(event)

    def photos(self, alarm_id: str):
        cid, delivery = self.device.seal([JPEG])
        return self.device.chunk_messages(cid, delivery, bytes.fromhex(alarm_id))

    def reports(self) -> list[tuple[str, bool, str | None]]:
        """(event, follow_up, link) of every report queued and committed, oldest first."""
        return [(e.report.event, e.report.follow_up, e.report.link) for e in self.sent.entries()]

    def close(self):
        self.sent.close()
        self.store.close()


@pytest.fixture
def gw(tmp_path):
    g = Gateway(tmp_path / "gw")
    yield g
    g.close()


AID = "5f1c00aa11bb22cc"
LINK = f"{CONSOLE}/alarms/cam-1/{AID}"


def test_an_alarm_is_queued_under_the_panels_account_in_the_commit_that_stores_it(gw):
    woken_with = []
    gw.forwarder.wake = lambda: woken_with.append(gw.reports())    # what the transmitters would find
    gw.send(gw.alarm("intrusion", AID, event_id="e1"))
    gw.send(gw.alarm("intrusion", AID, event_id="e1"))              # the same event sealed again
    (entry,) = gw.sent.entries()
    assert (entry.report.event, entry.report.account, entry.report.zone, entry.report.area) == ("intrusion", "1234", 3, 1)
    assert (entry.report.link, entry.report.follow_up, entry.report.device) == (LINK, False, "cam-1")
    assert woken_with == [[("intrusion", False, LINK)]]              # woken once, after the commit
    assert [a["code"] for a in gw.store.alarms.list("cam-1")] == ["intrusion"]


def test_stored_photos_queue_one_follow_up_per_alarm_however_many_captures(gw):
    gw.send(gw.alarm("smoke", AID))
    gw.send(*gw.photos(AID))
    gw.send(*gw.photos(AID))                      # a second capture of the same alarm
    assert gw.reports() == [("smoke", False, LINK), ("smoke", True, LINK)]


def test_photos_that_arrive_before_their_alarm_event_follow_up_right_after_it(gw):
    gw.send(*gw.photos(AID))                       # the capture came first: no follow-up for an unknown alarm
    assert gw.reports() == []
    gw.send(gw.alarm("duress", AID))
    assert gw.reports() == [("duress", False, LINK), ("duress", True, LINK)]


def test_a_duress_disarm_is_forwarded_as_todays_duress_alarm_and_a_normal_disarm_not_at_all(gw):
    # On the wire both are `disarmed` events (issue 13); the ARC's receiver gets the duress
    # alarm's code (HA, Contact ID 121) as before, and its follow-up once the photos are stored.
    for duress, aid in ((False, "0000111122223333"), (True, AID)):
        gw.send(gw.device.event({"kind": "disarmed", "slot": 2, "duress": duress, "alarm_id": aid, "t": T_ALARM,
                                 "event_id": os.urandom(8).hex()}))
    gw.send(*gw.photos(AID))
    assert gw.reports() == [("duress", False, LINK), ("duress", True, LINK)]
    (entry, _follow_up) = gw.sent.entries()
    assert (entry.report.account, entry.report.zone) == ("1234", 3)
    assert [a["code"] for a in gw.store.alarms.list("cam-1")] == ["duress"]


def test_technical_events_and_a_cancel_are_reported_and_other_activity_is_not(gw):
    for event in ({"kind": "technical", "code": "flash_full", "t": 1}, {"kind": "technical", "code": "flash_low", "t": 1},
                  {"kind": "armed", "mode": "away", "slot": 2, "t": 1}, {"kind": "alarm_cancelled", "slot": 2, "t": 1}):
        gw.send(gw.device.event(dict(event, event_id=os.urandom(8).hex())))
    assert gw.reports() == [("flash_full", False, None), ("alarm_cancelled", False, None)]


def test_a_device_silent_too_long_is_reported_lost_and_then_restored(gw):
    gw.send(gw.device.event({"kind": "armed", "mode": "away", "slot": 2, "t": 1}))     # heard once: installed
    assert gw.ingest.supervise(window_ms=-1) == [("cam-1", "supervision_lost")]
    gw.send(gw.device.event({"kind": "disarmed", "slot": 2, "t": 2}))
    gw.ingest.supervise()
    assert gw.reports() == [("supervision_lost", False, None), ("supervision_restored", False, None)]


def test_a_device_with_no_account_is_not_reported_but_its_alarm_is_stored(gw):
    remove_account(gw.store, "cam-1")
    gw.send(gw.alarm("intrusion", AID))
    assert gw.reports() == []
    assert any("no account configured" in line for line in gw.lines)
    assert [a["alarm_id"] for a in gw.store.alarms.list("cam-1")] == [AID]


def test_a_failure_to_queue_a_report_never_costs_the_event(gw):
    def broken(device):
        raise RuntimeError("a bug in the site lookup")

    gw.forwarder._sites = broken
    result = gw.send(gw.alarm("intrusion", AID))
    assert result.rejected == {} and gw.reports() == []
    assert [a["alarm_id"] for a in gw.store.alarms.list("cam-1")] == [AID]      # the alarm is stored
    assert any("could not queue intrusion of device cam-1" in line and "gateway bug" in line for line in gw.lines)
    gw.forwarder._sites = lambda d: site_of(gw.store.dc09_accounts.get(d))
    gw.send(gw.alarm("tamper", "77aa"))                                        # and the next one goes out
    assert gw.reports() == [("tamper", False, f"{CONSOLE}/alarms/cam-1/77aa")]


def test_setting_an_account_is_audited_and_checked(gw):
    from gateway.forward.dc09 import DC09Error
    from gateway.storage.store import StoreError

    with pytest.raises(DC09Error, match="not 3 to 16 hex digits"):
        set_account(gw.store, "cam-1", "12G4")
    with pytest.raises(StoreError, match="not provisioned here"):
        set_account(gw.store, "cam-9", "1234")
    records = gw.store.audit.records("configure device", "cam-1")
    assert [r["why"] for r in records][-1] == "DC-09 account set"
    assert records[-1]["detail"]["account"] == "1234" and records[-1]["detail"]["zone"] == 3


def test_an_alarm_behind_a_burst_of_photo_chunks_is_committed_and_handed_over_before_them(gw):
    # The gateway's writer takes what is queued as one batch; an alarm event queued behind the
    # chunks of a capture is committed first, in a transaction of its own (`events_first`), and
    # its report handed to the transmitters, leased to them, before a chunk is written.
    import time

    from gateway.ingest.service import events_first

    earlier = "0a0b0c0d0e0f1011"
    batch = [Message(t, p) for t, p in (*gw.photos(earlier), gw.alarm("intrusion", AID))]
    at_wake = []
    gw.forwarder.wake = lambda: at_wake.append((gw.reports(), gw.store.captures.stored_of_alarm("cam-1", earlier),
                                                gw.sent.claimed("arc", gw.forwarder._handed, time.time())))
    parts = events_first(batch)
    assert [len(p) for p in parts] == [1, len(batch) - 1] and parts[0][0] is batch[-1]
    for part in parts:
        gw.ingest.process_batch(part)
    ((reports, photos_stored, (handed,)),) = at_wake
    assert reports == [("intrusion", False, LINK)] and not photos_stored
    assert (handed.report.event, handed.report.alarm_id) == ("intrusion", AID)
    assert gw.sent.pending("arc", time.time()) == []            # leased to this gateway: no poll takes it
    assert gw.store.captures.stored_of_alarm("cam-1", earlier)   # and the photos were stored after it
