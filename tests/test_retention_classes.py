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
    assert asserted.returncode == 3 and "--role admin" in asserted.stderr
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
    with Store.open(data) as store:
        days = {r["kek_day"].split("/")[0] for r in store.images.list("cam-1")}
        alarm_day = dt.datetime.fromtimestamp(store.alarms.get("cam-1", alarm)["received_at_ms"] / 1000,
                                              dt.timezone.utc).date()
        assert days == {(alarm_day + dt.timedelta(days=10)).isoformat()}  # counsel's 10, not the default 30
