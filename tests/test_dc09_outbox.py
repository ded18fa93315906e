"""The DC-09 outbox keeps every report until a receiver of each route has acknowledged it.

The promises of `gateway.forward.outbox.Outbox`, checked on every implementation (in memory,
the JSON-lines file, and the gateway's database on SQLite and on PostgreSQL): numbers that
never change and wrap after 9999, leases that keep two workers off the same entry, retry
times, acknowledgements per route, one entry per key; and for the file outbox, a restart that
forgets nothing acknowledged or not, a torn last line, and compaction. What only the database
outbox does (workers racing, a report that commits with its event) is tests/test_dc09_stored_outbox.py.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from gateway.forward.outbox import FileOutbox, MemoryOutbox, Outbox, Report
from gateway.forward.stored import StoredOutbox
from gateway.storage.store import Store

REPORT = Report(event="intrusion", account="1234", zone=3, alarm_id="5f1c", device="dev-1", at=1_795_300_000.0)


ROUTES = ("arc", "backup-arc", "other", "second-arc")   # a database outbox is told its routes


@pytest.fixture(params=["memory", "file", "sqlite", "postgresql"])
def outbox(request, tmp_path):
    if request.param == "memory":
        yield MemoryOutbox()
        return
    if request.param == "file":
        box = FileOutbox(tmp_path / "outbox.jsonl")
    else:
        db = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
        with Store.open(tmp_path / "gw", db=db) as store:        # the schema, as a gateway's start makes it
            target = store.db_target
        box = StoredOutbox.open(target, ROUTES)
    yield box
    box.close()


def test_both_outboxes_are_outboxes(outbox):
    assert isinstance(outbox, Outbox)


def test_numbers_follow_each_other_and_wrap_after_9999():
    box = MemoryOutbox(first_seq=9998)
    assert [box.put(REPORT).seq for _ in range(3)] == [9998, 9999, 1]


def test_a_leased_entry_is_not_handed_to_a_second_worker(outbox):
    entry = outbox.put(REPORT, now=100.0)
    assert [e.id for e in outbox.pending("arc", now=100.0, lease_s=30)] == [entry.id]
    assert outbox.pending("arc", now=110.0) == []                 # leased to the first worker
    assert [e.id for e in outbox.pending("backup-arc", now=110.0)] == [entry.id]   # another route
    assert [e.id for e in outbox.pending("arc", now=131.0)] == [entry.id]   # a worker that died


def test_a_failed_attempt_waits_for_its_retry_time_and_is_counted(outbox):
    entry = outbox.put(REPORT, now=100.0)
    outbox.pending("arc", now=100.0)
    outbox.mark_attempt(entry.id, "arc", "primary: timeout", retry_at=105.0)
    assert outbox.pending("arc", now=104.0) == []
    (again,) = outbox.pending("arc", now=105.0)
    assert (again.seq, again.attempts, again.last_outcome) == (entry.seq, 1, "primary: timeout")


def test_a_follow_up_never_overtakes_its_alarm_when_the_alarm_waits_longer(outbox):
    alarm = outbox.put(REPORT, now=100.0)
    follow_up = outbox.put(dataclasses.replace(REPORT, follow_up=True), now=101.0)
    other = outbox.put(dataclasses.replace(REPORT, alarm_id="77aa", event="smoke"), now=102.0)
    assert [e.id for e in outbox.pending("arc", now=102.0)] == [alarm.id, other.id]   # not the follow-up
    assert outbox.waits_for_its_alarm(follow_up.id, "arc") and not outbox.waits_for_its_alarm(alarm.id, "arc")
    outbox.mark_attempt(alarm.id, "arc", "primary: NAK", retry_at=130.0)   # refused: a long wait
    outbox.mark_acked(other.id, "arc", "primary", at=102.5)
    assert outbox.pending("arc", now=110.0) == []                          # the follow-up waits with it
    assert [e.id for e in outbox.pending("backup-arc", now=110.0)] == [alarm.id, other.id]  # per route
    assert [e.id for e in outbox.pending("arc", now=130.0)] == [alarm.id]
    outbox.mark_acked(alarm.id, "arc", "primary", at=130.5)
    assert not outbox.waits_for_its_alarm(follow_up.id, "arc")
    assert [e.id for e in outbox.pending("arc", now=131.0)] == [follow_up.id]


def test_a_report_put_again_under_its_key_is_the_entry_already_there(outbox):
    follow_up = outbox.put(REPORT, now=1.0, key="verification/dev-1/5f1c")
    other = outbox.put(dataclasses.replace(REPORT, alarm_id="77aa"), now=1.5)   # another alarm's report
    assert outbox.put(REPORT, now=2.0, key="verification/dev-1/5f1c") == follow_up
    assert [e.id for e in outbox.pending("arc", now=3.0)] == [follow_up.id, other.id]


def test_an_acknowledged_entry_leaves_that_route_only(outbox):
    first, second = outbox.put(REPORT, now=1.0), outbox.put(REPORT, now=2.0)
    outbox.pending("arc", now=3.0)
    outbox.mark_acked(first.id, "arc", "backup", at=3.5)
    assert outbox.backlog("arc") == 1 and outbox.backlog("other") == 2
    assert [e.id for e in outbox.pending("arc", now=100.0)] == [second.id]


def test_a_restart_keeps_numbers_acks_and_unacked_entries(tmp_path):
    path = tmp_path / "outbox.jsonl"
    box = FileOutbox(path)
    done, waiting = box.put(REPORT, now=1.0), box.put(REPORT, now=2.0)
    box.pending("arc", now=3.0)
    box.mark_acked(done.id, "arc", "primary", at=3.0)
    box.mark_attempt(waiting.id, "arc", "primary: refused", retry_at=10_000.0)
    box.close()

    again = FileOutbox(path)
    assert again.acked_by(done.id, "arc") == "primary"
    (due,) = again.pending("arc", now=4.0)                 # due at once after a restart
    assert (due.id, due.seq, due.report, due.attempts) == (waiting.id, waiting.seq, REPORT, 1)
    assert again.put(REPORT).seq == waiting.seq + 1
    again.close()


def test_a_torn_last_line_is_ignored_and_a_damaged_journal_is_refused(tmp_path):
    path = tmp_path / "outbox.jsonl"
    box = FileOutbox(path)
    kept = box.put(REPORT)
    box.close()
    with open(path, "a") as f:
        f.write('{"op":"put","id":"abc')               # the crash came mid-write
    again = FileOutbox(path)
    assert [e.id for e in again.entries()] == [kept.id]
    again.close()

    path.write_text("not json\n" + path.read_text())
    with pytest.raises(ValueError, match="outbox journal line is not JSON"):
        FileOutbox(path)


def test_compaction_drops_what_every_route_acknowledged(tmp_path):
    path = tmp_path / "outbox.jsonl"
    box = FileOutbox(path)
    both, one = box.put(REPORT), box.put(REPORT)
    for route in ("arc", "second-arc"):
        box.mark_acked(both.id, route, "primary", at=5.0)
    box.mark_acked(one.id, "arc", "primary", at=5.0)
    box.close()

    compacted = FileOutbox(path, routes=["arc", "second-arc"])
    assert [e.id for e in compacted.entries()] == [one.id]
    assert compacted.acked_by(one.id, "arc") == "primary" and compacted.backlog("second-arc") == 1
    assert compacted.put(REPORT).seq == one.seq + 1
    compacted.close()
    ops = [json.loads(line)["op"] for line in path.read_text().splitlines()]
    assert ops == ["seq", "put", "ack", "put"]
