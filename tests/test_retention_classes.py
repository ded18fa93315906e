"""Every class of personal data has a rule, a clock that starts at the right moment, and a sweeper that keeps it.

Each test runs on SQLite and on a real PostgreSQL (the `engine` fixture). The calendar is
`support.retention`: an alarm at noon on 2026-01-10, its images due 2026-01-17 00:00 UTC.
"""

import pytest

from gateway.governance import audit
from gateway.governance.retention import RetentionConfigError, RetentionPolicy
from gateway.ingest.pipeline import Ingest, Message
from gateway.storage import sqldb
from gateway.storage.store import Store

from support.retention import ALARM, DAY, DUE, stored_ids, sweeper
from support.seeding import device_of, make_gateway_dir


@pytest.fixture
def data(tmp_path, engine):
    """A provisioned gateway data directory (cam-1, cam-2) on the engine under test."""
    path = tmp_path / "gw"
    if engine:
        sqldb.bind(path, engine)
    return make_gateway_dir(path, devices=("cam-1", "cam-2"))


def deliver_late(store, device, alarm_ms, late_ms, clock_set=True):
    """An alarm and its photos, sent `late_ms` after the alarm (the device was offline); image ids."""
    dev = device_of(store, device)
    t = alarm_ms // 1000 if clock_set else 0
    sent = (alarm_ms + late_ms) // 1000
    cid, sealed = dev.seal([b"\xff\xd8\xff\xe0" + bytes(500) + b"\xff\xd9"], captured_at=t)
    aid = bytes(8)
    msgs = [dev.event({"kind": "alarm", "code": "intrusion", "alarm_id": aid.hex(), "t": t,
                       "captures": [cid.hex()]}, time_s=sent if clock_set else 0)]
    msgs += dev.chunk_messages(cid, sealed, aid, time_s=sent if clock_set else 0)
    result = Ingest(store, log=lambda line: None, clock=lambda: (alarm_ms + late_ms) / 1000).process_batch(
        [Message(topic, payload) for topic, payload in msgs])
    assert not result.rejected and len(result.stored) == 1, result.rejected
    return {i["id"] for i in store.images.list(device)}


# The image clock -------------------------------------------------------------------------------
def test_an_alarm_received_three_days_late_is_deleted_seven_days_after_the_alarm(data):
    with Store.open(data) as store:
        ids = deliver_late(store, "cam-1", ALARM, 3 * DAY)
        sweeper(store, DUE - 1).sweep()
        assert stored_ids(store) == ids  # not a moment early
        report = sweeper(store, DUE).sweep()
        assert report.images_deleted == 1 and stored_ids(store) == set()  # not 7 days after receipt (01-20)


def test_with_the_device_clock_unset_the_clock_starts_at_receipt(data):
    with Store.open(data) as store:
        ids = deliver_late(store, "cam-1", ALARM, 3 * DAY, clock_set=False)
        sweeper(store, DUE + 2 * DAY).sweep()
        assert stored_ids(store) == ids  # received on 01-13: due 01-20
        sweeper(store, DUE + 3 * DAY).sweep()
        assert stored_ids(store) == set()


def test_photos_arriving_after_their_alarms_deletion_day_are_refused(data):
    with Store.open(data) as store:
        dev = device_of(store, "cam-1")
        t = ALARM // 1000
        cid, sealed = dev.seal([b"\xff\xd8\xff\xe0" + bytes(500) + b"\xff\xd9"], captured_at=t)
        late = ALARM + 8 * DAY
        msgs = dev.chunk_messages(cid, sealed, bytes(8), time_s=late // 1000)
        result = Ingest(store, log=lambda line: None, clock=lambda: late / 1000).process_batch(
            [Message(topic, payload) for topic, payload in msgs])
        assert result.stored == [] and stored_ids(store) == set()


# The rules as configuration --------------------------------------------------------------------
@pytest.mark.parametrize("setting, value, rule", [
    ("identity_days", 366, "customer_identity"), ("activity_years", 4, "activity"),
    ("image_days", 8, "image_unheld"), ("backup_days", 731, "backup"), ("export_days", 31, "export"),
    ("audit_days", 1827, "audit"), ("note_days", 366, "alarm_note"), ("hold_record_days", 1097, "hold_record")])
def test_a_setting_above_its_legal_maximum_is_refused_naming_the_rule(setting, value, rule):
    with pytest.raises(RetentionConfigError, match=f"{setting} = {value} is above the legal maximum.*for {rule}"):
        RetentionPolicy(**{setting: value})


# The customer relationship's end ----------------------------------------------------------------
def customer(store, cid="C-1", devices=("cam-1",), started=ALARM - 400 * DAY):
    from gateway.governance import subject

    subject.add_customer(store, cid, "Anna Andersson", "admin", started, started_at_ms=started)
    for d in devices:
        subject.link_device(store, d, cid, "admin", started)
    return cid


def test_customer_end_is_audited_and_a_future_date_or_a_second_end_is_refused(data):
    from support.cli import vericam

    with Store.open(data) as store:
        customer(store)
    future = vericam("customer", "end", "C-1", "--on", "2999-01-01", "--data", data, "--by", "ann", "--role", "admin",
                     "--reason", "moved")
    assert future.returncode == 3 and "in the future" in future.stderr
    asserted = vericam("customer", "end", "C-1", "--on", "2026-01-31", "--data", data, "--by", "ann",
                       "--reason", "moved")
    assert asserted.returncode == 3 and "--role supervisor" in asserted.stderr
    ok = vericam("customer", "end", "C-1", "--on", "2026-01-31", "--data", data, "--by", "ann", "--role", "admin",
                 "--reason", "contract terminated")
    assert ok.returncode == 0, ok.stderr
    again = vericam("customer", "end", "C-1", "--on", "2026-01-01", "--data", data, "--by", "ann", "--role", "admin",
                    "--reason", "oops")
    assert again.returncode == 3 and "already ended on 2026-01-31" in again.stderr
    bad = vericam("customer", "end", "C-1", "--on", "last tuesday", "--data", data, "--by", "ann", "--reason", "x")
    assert bad.returncode == 2 and "not a date" in bad.stderr
    with Store.open(data) as store:
        [rec] = audit.records(store, "end customer relationship")
        assert rec["subject"] == "C-1" and rec["detail"]["ended_on"] == "2026-01-31" and rec["who"] == "ann"
        assert store.customers.get("C-1")["ended_at_ms"] == ALARM + 21 * DAY - 12 * 3_600_000


def test_subject_end_is_customer_end_with_its_guards_and_its_audit_record(data):
    from support.cli import vericam

    with Store.open(data) as store:
        customer(store)

    def end(on, reason="moved"):
        return vericam("subject", "end", "C-1", "--on", on, "--data", data, "--by", "ann", "--role", "admin",
                       "--reason", reason)
    assert end("2999-01-01").returncode == 3
    assert "before the relationship began" in end("2020-01-01").stderr
    ok = end("2026-01-31", "contract terminated")
    assert ok.returncode == 0, ok.stderr
    again = end("2026-01-01")
    assert again.returncode == 3 and "already ended on 2026-01-31" in again.stderr
    with Store.open(data) as store:
        [rec] = audit.records(store, "end customer relationship")
        assert rec["subject"] == "C-1" and rec["detail"]["ended_on"] == "2026-01-31" and rec["why"] == "contract terminated"
        assert not [r for r in audit.records(store, "configure customer") if "ended" in r["why"]]


def test_a_relationship_may_end_on_the_day_it_began(data):
    from gateway.governance.retention import end_relationship

    began = ALARM  # noon
    with Store.open(data) as store:
        customer(store, started=began)
        r = end_relationship(store, "C-1", began - 12 * 3_600_000, "ann", began + 3_600_000, "cancelled",
                             role="admin")
        assert r["ended_on"] == "2026-01-10"
        assert store.customers.get("C-1")["ended_at_ms"] == began  # never before it began


# Police holds keep to the configured limits, from the console too ----------------------------------
def test_a_console_hold_keeps_to_the_configured_hold_days(tmp_path):
    import datetime as dt

    from fastapi.testclient import TestClient

    from gateway.console import create_app
    from support.console_seed import PASSWORDS, ingest_alarm, init

    data = init(tmp_path / "gw")
    alarm = ingest_alarm(data)
    (data / "retention.toml").write_text("[retention]\nhold_days = 10\n")
    app = create_app(data, "test-secret-0123456789", secure_cookies=False)
    try:
        sup = TestClient(app, base_url="http://testserver", follow_redirects=False)
        r = sup.post("/api/session", json={"name": "sam", "password": PASSWORDS["sam"]})
        sup.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        assert sup.post(f"/api/alarms/cam-1/{alarm}/hold", json={"reason": "burglary", "case": "K-9"}).status_code == 200
    finally:
        app.state.store.close()
    from gateway.governance.retention import alarm_ms

    with Store.open(data) as store:
        days = {r["kek_day"].split("/")[0] for r in store.images.list("cam-1")}
        alarm_day = dt.datetime.fromtimestamp(alarm_ms(store, "cam-1", alarm) / 1000, dt.timezone.utc).date()
        assert days == {(alarm_day + dt.timedelta(days=10)).isoformat()}  # counsel's 10, not the default 30


# The sweeper keeps every class ------------------------------------------------------------------
def activity(store, device, at_ms, n=2):
    with store.transaction():
        for i in range(n):
            store.events.add(device, {"kind": "armed", "slot": 1, "t": at_ms // 1000}, at_ms + i, clock_unset=False)
        store.alarms.note(device, f"a{at_ms}", at_ms, code="intrusion", t=at_ms // 1000)


def test_a_customers_identity_goes_a_year_after_the_end_and_the_activity_log_three_years_after(data):
    from gateway.governance.retention import end_relationship

    from gateway.provisioning.devices import revoke_device

    with Store.open(data) as store:
        customer(store, devices=("cam-1", "cam-2"))
        activity(store, "cam-1", ALARM)
        ended = ALARM + 10 * DAY
        end_relationship(store, "C-1", ended, "ann", ended, "contract terminated", role="admin")
        revoke_device(store, "cam-1")  # cam-2 stays provisioned: it keeps its row (it may still connect)
        sweeper(store, ended + 364 * DAY).sweep()
        assert store.customers.get("C-1")["name"] == "Anna Andersson"
        rep = sweeper(store, ended + 365 * DAY).sweep()
        assert rep.identities_erased == 1 and store.customers.get("C-1") is None
        dev = store.db.execute("SELECT site, customer_id FROM devices WHERE id = 'cam-1'").fetchone()
        assert dev[0] == "" and dev[1].startswith("ended-")  # the activity log keeps a pseudonym, no name, no site
        assert "Anna" not in str([dict(r) for r in store.db.execute("SELECT * FROM customers")])
        assert len(store.events.list("cam-1")) == 2  # the activity log is kept on
        [rec] = audit.records(store, "erase customer identity")
        assert rec["subject"] == dev[1]
        sweeper(store, ended + 1095 * DAY).sweep()
        assert len(store.events.list("cam-1")) == 2
        rep = sweeper(store, ended + 1096 * DAY).sweep()  # three calendar years, one of them with 29 February
        assert rep.activity_purged >= 3 and store.events.list("cam-1") == [] and store.alarms.list("cam-1") == []
        assert store.db.execute("SELECT count(*) FROM customers").fetchone()[0] == 0
        assert [tuple(r) for r in store.db.execute("SELECT id, site, customer_id FROM devices ORDER BY id")] == \
            [("cam-2", "", None)]  # the revoked device's row went with the customer's last record
        assert audit.records(store, "delete customer record")[0]["detail"]["devices_deleted"] == ["cam-1"]
        assert audit.verify(store).ok


def test_activity_of_a_device_without_a_customer_goes_three_years_after_each_record(data):
    with Store.open(data) as store:
        activity(store, "cam-2", ALARM)
        activity(store, "cam-2", ALARM + 100 * DAY)
        rep = sweeper(store, ALARM + 1096 * DAY + DAY).sweep()
        assert rep.activity_purged == 3  # two events and the alarm of the first day
        assert [a["received_at_ms"] for a in store.alarms.list("cam-2")] == [ALARM + 100 * DAY]
        assert len(store.events.list("cam-2")) == 2


def test_an_alarm_note_is_erased_ninety_days_after_the_alarm_was_closed(data):
    from gateway.governance import alarms

    with Store.open(data) as store:
        activity(store, "cam-1", ALARM)
        aid = f"a{ALARM}"
        alarms.close(store, "cam-1", aid, "olle", "false-user-error", "the neighbour Bo Berg let the cat in", ALARM)
        sweeper(store, ALARM + 89 * DAY).sweep()
        assert store.alarms.handling("cam-1", aid)["note"].startswith("the neighbour")
        rep = sweeper(store, ALARM + 90 * DAY).sweep()
        h = store.alarms.handling("cam-1", aid)
        assert rep.notes_erased == 1 and h["note"] is None and h["outcome"] == "false-user-error" and h["closed_by"] == "olle"
        assert [r["subject"] for r in audit.records(store, "erase alarm note")] == [f"alarm:cam-1/{aid}"]


def test_a_hold_record_goes_a_year_after_the_hold_ran_out(data):
    from gateway.governance import hold
    from support.seeding import seed

    with Store.open(data) as store:
        seed(store, "cam-1", ALARM)
        placed = hold.place(store, store.images.list("cam-1")[0]["alarm_id"], "sue", "suspect", "K-1", ALARM + DAY,
                            role="supervisor", policy=RetentionPolicy())
        thirty = DUE + 23 * DAY  # 2026-02-09 00:00: the hold's day
        rep = sweeper(store, thirty).sweep()
        assert rep.images_deleted == 2 and rep.holds_ended == 1 and store.holds.get(placed["hold"])["ended_at_ms"] == thirty
        sweeper(store, thirty + 364 * DAY).sweep()
        assert store.holds.get(placed["hold"]) is not None
        rep = sweeper(store, thirty + 365 * DAY).sweep()
        assert rep.hold_records_deleted == 1 and store.holds.get(placed["hold"]) is None
        assert [r["subject"] for r in audit.records(store, "delete hold record")] == [f"hold:{placed['hold']}"]


def test_an_export_the_gateway_wrote_is_deleted_thirty_days_later(data, tmp_path):
    from gateway.governance.retention import register_export

    bundle = tmp_path / "out" / "bundle.zip"
    export_dir = tmp_path / "out" / "subject-C-1"
    bundle.parent.mkdir()
    bundle.write_bytes(b"PK" + bytes(100))
    (export_dir / "photos").mkdir(parents=True)
    (export_dir / "export.json").write_text("{}")
    (export_dir / "photos" / "a.jpg").write_bytes(b"\xff\xd8")
    with Store.open(data) as store:
        register_export(store, "police bundle", bundle, "hold:1", "sue", ALARM, "ab" * 32)
        register_export(store, "subject export", export_dir, "C-1", "ann", ALARM + DAY)
        rep = sweeper(store, ALARM + 30 * DAY).sweep()
        assert rep.exports_deleted == 1 and not bundle.exists() and export_dir.exists()
        rep = sweeper(store, ALARM + 31 * DAY).sweep()
        assert rep.exports_deleted == 1 and not export_dir.exists()
        recs = audit.records(store, "delete export")
        assert [r["subject"] for r in recs] == ["hold:1", "C-1"] and recs[0]["content_hash"] == "ab" * 32


def test_the_export_sweeper_never_follows_a_symbolic_link_and_refuses_what_is_not_a_file(data, tmp_path):
    import os

    from gateway.governance.retention import register_export

    victim = tmp_path / "elsewhere" / "gateway.db-copy"
    victim.parent.mkdir()
    victim.write_bytes(b"precious" * 10)
    (tmp_path / "elsewhere" / "keep.txt").write_text("keep")
    bundle = tmp_path / "out" / "bundle.zip"
    bundle.parent.mkdir()
    bundle.write_bytes(b"PK" + bytes(10))
    export_dir = tmp_path / "out" / "subject-C-1"
    export_dir.mkdir()
    (export_dir / "export.json").write_text("{}")
    (export_dir / "photos").symlink_to(victim.parent, target_is_directory=True)
    fifo_dir = tmp_path / "out" / "subject-C-2"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "pipe")
    lines = []
    with Store.open(data) as store:
        register_export(store, "police bundle", bundle, "hold:1", "sue", ALARM)
        register_export(store, "subject export", export_dir, "C-1", "ann", ALARM)
        register_export(store, "subject export", fifo_dir, "C-2", "ann", ALARM)
        bundle.unlink()
        bundle.symlink_to(victim)  # after it was written, the .zip replaced by a link to another file
        sw = sweeper(store, ALARM + 30 * DAY)
        sw.log = lines.append
        rep = sw.sweep()
        assert rep.exports_deleted == 2
        assert victim.read_bytes() == b"precious" * 10 and (victim.parent / "keep.txt").read_text() == "keep"
        assert not os.path.lexists(bundle) and not os.path.lexists(export_dir)
        assert sum("symbolic link" in line and "its target is not touched" in line for line in lines) == 2, lines
        assert any("pipe" in line and "neither a regular file nor a directory" in line for line in lines), lines
        assert (fifo_dir / "pipe").exists() and len(store.exports.due(ALARM, 10)) == 1  # kept, tried again


def test_the_audit_trail_is_trimmed_at_a_signed_checkpoint_and_still_verifies(data):
    import time

    start = int(time.time() * 1000)  # after the records `gateway init` wrote
    with Store.open(data) as store:
        for i in range(5):
            with store.transaction():
                audit.append(store, "olle", "view image", "handling the alarm", at_ms=start + i, subject=f"img{i}")
        line = audit.checkpoint(store)  # a checkpoint at the fifth record or so
        through = audit.parse_checkpoint(line)["seq"]
        with store.transaction():
            audit.append(store, "olle", "view image", "handling the alarm", at_ms=start + 2000 * DAY, subject="new")
        rep = sweeper(store, start + 1096 * DAY + DAY).sweep()
        assert rep.audit_trimmed == through
        assert store.db.execute("SELECT min(seq) FROM audit").fetchone()[0] == through + 1
        v = audit.verify(store, [("exported", line)])
        assert v.ok, v.problems
        assert v.trimmed_through == through and v.records == store.db.execute("SELECT count(*) FROM audit").fetchone()[0]
        # Whoever deletes one more record, or rewrites the first kept one, is seen as before.
        with pytest.raises(Exception, match="append-only"):
            store.db.execute("DELETE FROM audit WHERE seq = ?", (through + 1,))
        store.db.execute("INSERT INTO audit_trims (through_seq, head, at_ms) VALUES (?, 'x', 0)", (through + 1,))
        store.db.execute("DELETE FROM audit WHERE seq = ?", (through + 1,))
        bad = audit.verify(store)
        assert not bad.ok and any("missing" in p or "broken" in p for p in bad.problems), bad.problems


# Police handover --------------------------------------------------------------------------------
@pytest.mark.parametrize("rule, kept", [("end", "back on the 7-day schedule"), ("shorten", "gone at once"),
                                        ("keep", "held to day 30")])
def test_a_handover_records_who_at_the_police_asked_and_ends_or_shortens_the_hold_as_configured(data, rule, kept):
    from gateway.governance import hold
    from support.seeding import seed

    policy = RetentionPolicy(handover=rule, handover_days=0)
    with Store.open(data) as store:
        ids = set(seed(store, "cam-1", ALARM))
        placed = hold.place(store, store.images.list("cam-1")[0]["alarm_id"], "sue", "suspect", "K-1", ALARM + DAY,
                            role="supervisor", policy=policy)
        r = hold.hand_over(store, str(placed["hold"]), "sue", "Insp. Eva Ek, Polisen Syd", "5000-K123-26",
                           ALARM + 3 * DAY, role="supervisor", policy=policy)
        h = store.holds.get(placed["hold"])
        assert (h["police_requester"], h["police_reference"], h["handed_over_at_ms"]) == \
            ("Insp. Eva Ek, Polisen Syd", "5000-K123-26", ALARM + 3 * DAY)
        [rec] = audit.records(store, "hand over to police")
        assert rec["detail"]["requested_by"] == "Insp. Eva Ek, Polisen Syd" and rec["detail"]["rule"] == rule
        if rule == "end":
            assert r["back_on_schedule"] == 2 and h["released_at_ms"] == ALARM + 3 * DAY
            sweeper(store, DUE).sweep()
            assert stored_ids(store) == set()
        elif rule == "shorten":
            assert r["deleted_now"] == 2 and stored_ids(store) == set()
        else:
            sweeper(store, DUE + 22 * DAY).sweep()
            assert stored_ids(store) == ids
        with pytest.raises(hold.HoldError):
            hold.hand_over(store, str(placed["hold"]), "sue", "someone", "ref", ALARM + 4 * DAY, role="supervisor",
                           policy=policy)
        assert audit.verify(store).ok


def test_a_handover_needs_the_requester_and_the_police_reference(data):
    from gateway.governance import hold
    from support.seeding import seed

    with Store.open(data) as store:
        seed(store, "cam-1", ALARM)
        placed = hold.place(store, store.images.list("cam-1")[0]["alarm_id"], "sue", "suspect", "K-1", ALARM + DAY,
                            role="supervisor", policy=RetentionPolicy())
        for requester, ref, msg in (("", "R-1", "who at the police"), ("Eva Ek", " ", "reference")):
            with pytest.raises(hold.HoldError, match=msg):
                hold.hand_over(store, str(placed["hold"]), "sue", requester, ref, ALARM + DAY, role="supervisor",
                               policy=RetentionPolicy())
        assert store.holds.get(placed["hold"])["handed_over_at_ms"] is None


def test_a_crash_between_noting_the_trim_and_deleting_leaves_a_chain_that_verifies_and_the_next_sweep_trims(
        data, monkeypatch):
    import time

    start = int(time.time() * 1000)
    with Store.open(data) as store:
        for i in range(3):
            with store.transaction():
                audit.append(store, "olle", "view image", "handling the alarm", at_ms=start + i, subject=f"img{i}")
        later = start + 1100 * DAY
        with monkeypatch.context() as m:
            m.setattr(type(store.audit), "trim", lambda self, *a: (_ for _ in ()).throw(OSError("power cut")))
            with pytest.raises(OSError):
                sweeper(store, later).sweep()
        assert store.keys.audit_trim() is not None and store.db.execute("SELECT min(seq) FROM audit").fetchone()[0] == 1
        assert audit.verify(store).ok
        rep = sweeper(store, later).sweep()
        assert rep.audit_trimmed > 0 and audit.verify(store).ok


def test_an_export_whose_files_went_before_a_crash_is_finished_by_the_next_sweep(data, tmp_path, monkeypatch):
    from gateway.governance.retention import register_export

    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(b"PK" + bytes(10))
    with Store.open(data) as store:
        register_export(store, "police bundle", bundle, "hold:1", "sue", ALARM)
        with monkeypatch.context() as m:
            m.setattr(type(store.exports), "mark_deleted", lambda self, *a: (_ for _ in ()).throw(OSError("crash")))
            with pytest.raises(OSError):
                sweeper(store, ALARM + 30 * DAY).sweep()
        assert not bundle.exists() and audit.records(store, "delete export") == []
        assert sweeper(store, ALARM + 30 * DAY).sweep().exports_deleted == 1
        assert len(audit.records(store, "delete export")) == 1


def test_a_retention_toml_above_a_maximum_stops_the_gateway_at_start_naming_the_rule(tmp_path):
    from gateway.ingest.service import Gateway
    from support.cli import vericam

    data = make_gateway_dir(tmp_path / "gw")
    (data / "retention.toml").write_text("[retention]\nidentity_days = 400\n")
    out = vericam("retention", "show", "--data", data, "--table")
    assert out.returncode == 2 and "identity_days = 400 is above the legal maximum of 365 days for " \
        "customer_identity" in out.stderr
    with pytest.raises(RetentionConfigError, match="customer_identity"):
        Gateway(data, "127.0.0.1", 1).start(connect_timeout=0.1)
    (data / "retention.toml").write_text("[retention]\nidentity_days = 200\nhandover = \"shorten\"\n")
    out = vericam("retention", "show", "--data", data, "--table")
    assert out.returncode == 0 and "identity_days = 200 days (maximum 365)" in out.stdout


def test_a_failed_login_keeps_no_typed_name_that_is_not_an_account(tmp_path):
    from gateway.governance.users import record_failed_login
    from support.console_seed import init

    data = init(tmp_path / "gw")
    with Store.open(data) as store:
        record_failed_login(store, "Hunter2-summer", "10.0.0.7", ALARM)  # a password typed as the name
        record_failed_login(store, "olivia", "10.0.0.7", ALARM)
        subjects = [r["subject"] for r in audit.records(store, "login failed")]
        assert subjects == ["(not a user of this gateway)", "olivia"]
        assert "Hunter2" not in str(audit.records(store))


def test_a_subject_export_is_registered_and_expires_and_subject_end_refuses_a_future_date(data, tmp_path):
    from gateway.governance import subject
    from gateway.governance.retention import CustomerError, end_relationship

    with Store.open(data) as store:
        customer(store)
        out = tmp_path / "export-C-1"
        subject.export(store, "C-1", out, "dpo", "access request", ALARM)
        [e] = store.exports.list()
        assert (e["kind"], e["subject"], e["path"]) == ("subject export", "C-1", str(out.resolve()))
        sweeper(store, ALARM + 30 * DAY).sweep()
        assert not out.exists()
        with pytest.raises(CustomerError, match="future"):
            end_relationship(store, "C-1", ALARM + DAY, "ann", ALARM, "moved", role="admin")


# End to end, through the command an operator runs, on both engines ------------------------------------
def test_end_to_end_customer_end_police_handover_export_and_sweep_by_the_command_line(data, tmp_path):
    import datetime as dt
    import json
    import time

    from gateway.governance import hold, subject
    from support.cli import vericam
    from support.seeding import seed

    now = int(time.time() * 1000)
    with Store.open(data) as store:
        subject.add_customer(store, "C-7", "Bo Berg", "admin", now - 400 * DAY, started_at_ms=now - 400 * DAY)
        subject.link_device(store, "cam-1", "C-7", "admin", now)
        seed(store, "cam-1", now - 3_600_000, code="intrusion")
        alarm = store.images.list("cam-1")[0]["alarm_id"]
        hold.place(store, f"cam-1/{alarm}", "sue", "burglary", "K-77", now, role="supervisor",
                   policy=RetentionPolicy())
    (data / "retention.toml").write_text('[retention]\nhandover = "shorten"\nhandover_days = 0\n')
    run = lambda *args: vericam(*args, "--data", data)  # noqa: E731
    yesterday = (dt.datetime.fromtimestamp(now / 1000, dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    ended = run("customer", "end", "C-7", "--on", yesterday, "--by", "ann", "--role", "admin",
                "--reason", "contract terminated")
    assert ended.returncode == 0, ended.stderr
    out = tmp_path / "bundles"
    exported = run("export", "K-77", "--by", "sue", "--role", "supervisor", "--out", out,
                   "--requested-by", "Insp. Eva Ek", "--police-ref", "5000-K77")
    assert exported.returncode == 0, exported.stderr
    assert "handed over" in exported.stdout and len(list(out.glob("*.zip"))) == 1
    swept = run("retention", "sweep", "--json")
    assert swept.returncode == 0, swept.stderr
    report = json.loads(swept.stdout)
    assert {"images_deleted", "keks_destroyed", "activity_purged", "identities_erased", "exports_deleted",
            "audit_trimmed"} <= set(report)
    with Store.open(data) as store:
        assert store.images.list("cam-1") == []  # shortened to the handover day: gone
        [h] = store.holds.list()
        assert (h["police_requester"], h["police_reference"]) == ("Insp. Eva Ek", "5000-K77")
        assert store.customers.get("C-7")["ended_at_ms"] is not None
        assert [e["kind"] for e in store.exports.list()] == ["police bundle"]
    verified = run("audit", "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stdout


def test_two_sweepers_racing_over_every_class_erase_and_audit_each_item_once(data, tmp_path):
    """Two gateway workers' sweepers wake at once over identities, notes, hold records and exports."""
    from gateway.governance import alarms
    from gateway.governance.retention import end_relationship, register_export
    from support.scaleout import race

    with Store.open(data) as store:
        for n in range(3):
            customer(store, f"C-{n}", devices=())
            end_relationship(store, f"C-{n}", ALARM, "ann", ALARM, "moved", role="admin")
        for n in range(4):
            store.alarms.note("cam-1", f"a{n}", ALARM)
            alarms.close(store, "cam-1", f"a{n}", "olle", "false-user-error", f"note {n}", ALARM)
            bundle = tmp_path / f"b{n}.zip"
            bundle.write_bytes(b"PK")
            register_export(store, "police bundle", bundle, f"hold:{n}", "sue", ALARM)
    later = ALARM + 400 * DAY
    with Store.open(data) as a, Store.open(data) as b:
        reports = race(sweeper(a, later).sweep, sweeper(b, later).sweep)
        assert sum(r.identities_erased for r in reports) == 3 and sum(r.notes_erased for r in reports) == 4
        assert sum(r.exports_deleted for r in reports) == 4
        for what, count in (("erase customer identity", 3), ("erase alarm note", 4), ("delete export", 4)):
            assert len(audit.records(a, what)) == count, what
        assert audit.verify(a).ok
