"""The DC-09 outbox in the gateway's database: what several workers on one database can count on.

On SQLite and on a real PostgreSQL: a report commits with the event that caused it or not at
all; two workers racing for the same reports take each exactly once; a worker that restarts
after a crash takes back at once what it held, while another worker keeps off it until the
lease runs out; numbers come from the row and wrap after 9999; a route configured later gets
what is in flight, not history; and what every route acknowledged is dropped a day later.
"""

from __future__ import annotations

import dataclasses

import threading

import pytest

from gateway.forward.outbox import Report
from gateway.forward.stored import KEEP_ACKED_S, StoredOutbox
from gateway.storage.store import Store

REPORT = Report(event="intrusion", account="1234", zone=3, alarm_id="5f1c", device="dev-1", at=1_795_300_000.0)
ROUTES = ("arc", "second-arc")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    db = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with Store.open(tmp_path / "gw", db=db) as s:
        yield s


def worker(store, owner="gw-a", routes=ROUTES) -> StoredOutbox:
    """A gateway worker's transmitters' outbox, on a connection of its own."""
    return StoredOutbox.open(store.db_target, routes, owner=owner)


def test_a_report_commits_with_the_event_that_caused_it_or_not_at_all(store):
    intake = StoredOutbox(store.dc09_outbox, ROUTES)       # the ingest's, on the ingest's connection
    transmitters = worker(store)
    try:
        with pytest.raises(RuntimeError):
            with store.transaction():
                intake.put(REPORT, now=1.0)
                raise RuntimeError("the disk filled up before the commit")
        assert transmitters.backlog("arc") == 0              # rolled back with the batch: nothing to send

        with store.transaction():
            entry = intake.put(REPORT, now=2.0)
            assert transmitters.backlog("arc") == 0           # not committed: not there yet
        (due,) = transmitters.pending("arc", now=3.0)
        assert (due.id, due.seq, due.report) == (entry.id, entry.seq, REPORT)
    finally:
        transmitters.close()


def test_two_workers_racing_for_the_same_reports_take_each_exactly_once(store):
    intake = StoredOutbox(store.dc09_outbox, ROUTES)
    entries = [intake.put(REPORT, now=1.0) for _ in range(60)]
    workers = [worker(store, owner) for owner in ("gw-a", "gw-b")]
    taken: dict[str, list[str]] = {w.owner: [] for w in workers}
    start = threading.Barrier(len(workers))

    def deliver(box: StoredOutbox) -> None:
        start.wait()
        while True:
            batch = box.pending("arc", now=10.0, limit=3, lease_s=600)
            if not batch:
                if box.backlog("arc") == 0:
                    return
                continue                          # the rest is leased to the other worker
            for entry in batch:
                taken[box.owner].append(entry.id)
                box.mark_acked(entry.id, "arc", "primary", at=11.0)

    threads = [threading.Thread(target=deliver, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        everything = taken["gw-a"] + taken["gw-b"]
        assert sorted(everything) == sorted(e.id for e in entries)    # each once: none twice, none lost
        assert workers[0].backlog("arc") == 0 and workers[0].backlog("second-arc") == 60
    finally:
        for w in workers:
            w.close()


def test_a_worker_restarting_after_a_crash_takes_back_at_once_what_it_held(store):
    intake = StoredOutbox(store.dc09_outbox, ROUTES)
    held = [intake.put(dataclasses.replace(REPORT, alarm_id=f"a{i}"), now=1.0) for i in range(2)]   # two alarms
    crashed = worker(store, "gw-a")
    assert len(crashed.pending("arc", now=10.0, lease_s=600)) == 2
    crashed.close()                                        # killed mid-delivery: no outcome written

    other = worker(store, "gw-b").start(now=20.0)
    assert other.pending("arc", now=20.0) == []           # still leased to gw-a: not sent twice
    again = worker(store, "gw-a").start(now=20.0)          # gw-a comes back
    try:
        assert [e.id for e in again.pending("arc", now=20.0)] == [e.id for e in held]
    finally:
        other.close()
        again.close()


def test_a_restart_makes_what_waits_for_a_retry_due_at_once(store):
    box = worker(store)
    entry = box.put(REPORT, now=1.0)
    box.pending("arc", now=1.0)
    box.mark_attempt(entry.id, "arc", "primary: refused", retry_at=500.0)
    box.close()
    restarted = worker(store).start(now=2.0)
    try:
        (due,) = restarted.pending("arc", now=2.0)
        assert (due.id, due.attempts, due.last_outcome) == (entry.id, 1, "primary: refused")
    finally:
        restarted.close()


def test_numbers_come_from_the_row_and_wrap_after_9999(store):
    if store.db.engine == "postgresql":
        store.db.execute("ALTER TABLE dc09_outbox ALTER COLUMN id RESTART WITH 9998")
    else:
        store.db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('dc09_outbox', 9997)")
    box = worker(store)
    try:
        first, second, third = (box.put(dataclasses.replace(REPORT, alarm_id=f"a{i}")) for i in range(3))
        assert [first.seq, second.seq, third.seq] == [9998, 9999, 1]
        assert [e.seq for e in box.pending("arc", now=1e10)] == [9998, 9999, 1]   # as they were given
    finally:
        box.close()


def test_a_route_configured_later_gets_what_is_in_flight_not_history(store):
    box = worker(store, routes=("arc",))
    history, in_flight = box.put(REPORT, now=1.0), box.put(REPORT, now=2.0)
    box.pending("arc", now=3.0)
    box.mark_acked(history.id, "arc", "primary", at=3.0)
    box.close()

    with_new_route = worker(store, routes=("arc", "new-arc")).start(now=4.0)
    try:
        assert [e.id for e in with_new_route.pending("new-arc", now=4.0)] == [in_flight.id]
    finally:
        with_new_route.close()


def test_what_every_route_acknowledged_is_dropped_a_day_later(store):
    box = worker(store)
    done, half = box.put(REPORT, now=1.0), box.put(REPORT, now=1.0)
    for route in ROUTES:
        box.mark_acked(done.id, route, "primary", at=2.0)
    box.mark_acked(half.id, "arc", "primary", at=2.0)
    box.pending("arc", now=3.0)                             # a day has not passed: both kept
    assert [e.id for e in box.entries()] == [done.id, half.id]
    box._next_purge = 0.0
    box.pending("arc", now=2.0 + KEEP_ACKED_S + 1)
    try:
        assert [e.id for e in box.entries()] == [half.id]
        assert box.acked_by(half.id, "arc") == "primary" and box.backlog("second-arc") == 1
    finally:
        box.close()


def test_an_alarm_put_leased_is_sent_by_its_worker_alone_and_a_crash_does_not_lose_it(store):
    """The handoff (`put(..., lease_s)`, then `claimed`): the worker that stores an alarm holds it
    on every route from its commit on, so no other worker's poll takes it; a rolled-back put is
    never found; a second put of the same key is not handed again; and if the worker dies
    before the ACK, the report goes out again, with its number, once the lease is given back."""
    intake = StoredOutbox(store.dc09_outbox, ROUTES, owner="gw-a")
    mine, other = worker(store, "gw-a"), worker(store, "gw-b")
    try:
        with pytest.raises(RuntimeError):
            with store.transaction():
                lost = intake.put(REPORT, now=1.0, key="alarm/dev-1/5f1c/intrusion", lease_s=60)
                raise RuntimeError("the batch failed before its commit")
        assert lost.leased and mine.claimed("arc", [lost.id], now=2.0) == []    # never committed: nothing

        with store.transaction():
            entry = intake.put(REPORT, now=1.0, key="alarm/dev-1/5f1c/intrusion", lease_s=60)
            again = intake.put(REPORT, now=1.0, key="alarm/dev-1/5f1c/intrusion", lease_s=60)
        assert entry.leased and not again.leased and again.id == entry.id       # handed once
        assert other.pending("arc", now=2.0) == [] and mine.pending("arc", now=2.0) == []
        assert other.claimed("arc", [entry.id], now=2.0) == []                 # not gw-b's
        (claimed,) = mine.claimed("arc", [entry.id], now=2.0)
        assert (claimed.id, claimed.seq, claimed.report) == (entry.id, entry.seq, REPORT)

        mine.mark_acked(entry.id, "arc", "primary", at=3.0)
        assert mine.claimed("arc", [entry.id], now=3.0) == []                   # ACKed: never sent again
        mine.close()                                     # gw-a dies before the second route's ACK
        assert other.pending("second-arc", now=30.0) == []                      # its lease still runs
        (resent,) = other.pending("second-arc", now=62.0)                       # until it runs out
        assert (resent.id, resent.seq) == (entry.id, entry.seq)
    finally:
        mine.close()
        other.close()
