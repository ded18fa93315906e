"""Need-to-know (issue 15): every read of personal data is on the audit trail, a restricted customer's data is
stored but not shown, a household can learn who saw its photos and why, and the command line checks roles."""

import json
import os
import time

import pytest
from fastapi.testclient import TestClient

from gateway.console import create_app
from gateway.forward.forwarder import Forwarder
from gateway.forward.service import site_of
from gateway.forward.stored import StoredOutbox
from gateway.forward.transmitter import Receiver, Route
from gateway.governance import audit, subject
from gateway.governance.users import add_user, create_token, disable_user
from gateway.ingest.pipeline import Ingest, Message
from gateway.provisioning.dc09 import set_account
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.access_report import AccessQueries
from gateway.storage.store import Store
from simulator.fake_device import FakeDevice

from support.cli import vericam
from support.console_seed import PASSWORDS, ingest_alarm, init

SECRET = "test-secret-0123456789"
NOW = int(time.time() * 1000)


@pytest.fixture
def gw(tmp_path):
    """Two households: Anna's (cam-1) with one alarm, Bo's (cam-2) with one alarm."""
    data = init(tmp_path / "gw")
    anna = ingest_alarm(data, "cam-1", "Storgatan 12")
    bo = ingest_alarm(data, "cam-2", "Lillgatan 3", frames=2)
    with Store.open(data) as s:
        subject.add_customer(s, "anna", "Anna Andersson", "adam", NOW)
        subject.link_device(s, "cam-1", "anna", "adam", NOW)
        subject.add_customer(s, "bo", "Bo Berg", "adam", NOW)
        subject.link_device(s, "cam-2", "bo", "adam", NOW)
    app = create_app(data, SECRET, secure_cookies=False)
    yield data, app, anna, bo
    app.state.store.close()


def login(app, name):
    c = TestClient(app, base_url="http://testserver", follow_redirects=False)
    r = c.post("/api/session", json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def records(data, what):
    with Store.open(data) as s:
        return audit.records(s, what=what)


def restrict(data, customer, on=True):
    with Store.open(data) as s:
        subject.set_restricted(s, customer, on, "sam", "accuracy contested", NOW)


def test_every_read_of_personal_data_is_audited_and_a_refresh_that_shows_nothing_new_is_not(gw):
    data, app, anna, bo = gw
    op = login(app, "olivia")
    for _ in range(3):                                   # the queue page's own 2-second refresh
        assert op.get("/alarms/rows").status_code == 200
    [q] = records(data, "view alarm queue")
    assert q["who"] == "olivia" and sorted(q["detail"]["alarms"]) == sorted([f"cam-1/{anna}", f"cam-2/{bo}"])
    third = ingest_alarm(data, "cam-1", "Storgatan 12")  # a new alarm shows: a new record
    assert len(op.get("/api/alarms").json()) == 3
    assert [f"cam-1/{third}" in r["detail"]["alarms"] for r in records(data, "view alarm queue")] == [False, True]

    op.get(f"/alarms/cam-1/{anna}")
    op.get("/api/devices")
    op.get("/api/activity", params={"site": "Storgatan 12"})
    login(app, "aud").get("/api/audit", params={"what": "view alarm"})
    with Store.open(data) as s:
        tok = create_token(s, "arc-sw", ["alarms:read"], "sam", NOW, "supervisor")
    bearer = TestClient(app, base_url="http://testserver", headers={"Authorization": f"Bearer {tok}"})
    assert bearer.get(f"/api/alarms/cam-2/{bo}").status_code == 200
    [view_anna, view_bo] = records(data, "view alarm")
    assert (view_anna["who"], view_anna["subject"]) == ("olivia", f"alarm:cam-1/{anna}")
    assert (view_bo["who"], view_bo["subject"], view_bo["detail"]["role"]) == ("token:arc-sw", f"alarm:cam-2/{bo}",
                                                                               "service")
    [devs] = records(data, "view devices")
    [act] = records(data, "view activity log")
    assert devs["who"] == "olivia" and (act["detail"]["site"], act["detail"]["devices"]) == ("Storgatan 12", ["cam-1"])
    [trail] = records(data, "view audit trail")
    assert trail["who"] == "aud" and trail["detail"]["filters"]["what"] == "view alarm"
    login(app, "adam").get("/users")
    [accounts] = records(data, "view users")
    assert (accounts["who"], accounts["detail"]["users"]) == ("adam", 4)
    with Store.open(data) as s:
        assert audit.verify(s).ok


def test_a_restricted_customers_data_is_stored_but_not_shown_until_a_supervisor_gives_a_reason(gw):
    data, app, anna, bo = gw
    restrict(data, "anna")
    later = ingest_alarm(data, "cam-1", "Storgatan 12")     # new data still arrives and is stored
    with Store.open(data) as s:
        assert len(s.images.photos_of_alarm("cam-1", later)) == 3
    op = login(app, "olivia")
    assert [a["device"] for a in op.get("/api/alarms").json()] == ["cam-2"]
    assert "Storgatan 12" not in op.get("/alarms").text
    assert op.get(f"/api/alarms/cam-1/{later}").status_code == 403
    assert op.get(f"/alarms/cam-1/{later}").status_code == 403
    with Store.open(data) as s:
        image = s.images.photos_of_alarm("cam-1", later)[0]["id"]
    url = f"/api/alarms/cam-1/{later}/photos/{image}"
    assert op.get(url).status_code == 403 and op.get(url, params={"reason": "x"}).status_code == 403
    assert op.post(f"/api/alarms/cam-1/{later}/acknowledge").status_code == 403  # not handled by operators either
    assert all(e["device"] != "cam-1" for e in op.get("/api/activity").json())
    assert {d["id"]: d["site"] for d in op.get("/api/devices").json()}["cam-1"] == "(restricted)"
    assert "Storgatan 12" not in op.get("/activity").text and "Lillgatan 3" in op.get("/activity").text

    sup = login(app, "sam")
    queue = {a["alarm_id"]: a for a in sup.get("/api/alarms").json()}
    assert queue[later]["restricted"] is True and queue[later]["site"] == "(restricted)"
    detail = sup.get(f"/api/alarms/cam-1/{later}").json()
    assert detail["restricted"] and detail["photos_need_reason"] and detail["site"] == "(restricted)"
    assert sup.get(url).status_code == 403
    assert sup.get(url, params={"reason": "police asked about the break-in, ref 5000-K1"}).status_code == 200
    assert sup.post(f"/api/alarms/cam-1/{later}/acknowledge").status_code == 200
    [seen] = [v for v in records(data, "view image") if v["who"] == "sam"]
    assert seen["why"] == "police asked about the break-in, ref 5000-K1" and seen["subject"] == image

    restrict(data, "anna", on=False)                          # lifted: shown again as before
    assert len(op.get("/api/alarms").json()) == 3
    assert op.get(url).status_code == 200


def test_a_restricted_customers_person_in_danger_alarms_still_reach_the_arc_without_photo_links(tmp_path):
    data = tmp_path / "gw"
    init_arc(data)
    device = FakeDevice(add_device(data, "cam-1", "site-a"), chunk_size=1024)
    with Store.open(data) as store:
        set_account(store, "cam-1", "1234", zone=3)
        subject.add_customer(store, "anna", None, "adam", NOW)
        subject.link_device(store, "cam-1", "anna", "adam", NOW)
        subject.set_restricted(store, "anna", True, "sam", "accuracy contested", NOW)
        intake = StoredOutbox(store.dc09_outbox, ["arc"])
        sent = StoredOutbox.open(store.db_target, ["arc"])
        lines = []
        try:
            fwd = Forwarder(sent, [Route("arc", (Receiver("primary", "127.0.0.1", 9),))],
                            lambda d: site_of(store.dc09_accounts.get(d)), console_url="https://arc.example",
                            log=lines.append, intake=intake, restricted=AccessQueries(store.db).is_restricted)
            ingest = Ingest(store, log=lines.append, forward=fwd)
            t = int(time.time()) - 60
            aid = "5f1c00aa11bb22cc"
            for event in ({"kind": "alarm", "code": "intrusion", "alarm_id": aid, "t": t},
                          {"kind": "technical", "code": "flash_full", "t": t},
                          {"kind": "alarm_cancelled", "slot": 2, "t": t}):
                ingest.process_batch([Message(*device.event(dict(event, event_id=os.urandom(8).hex())))])
            cid, delivery = device.seal([b"\xff\xd8\xff\xe0" + os.urandom(2000) + b"\xff\xd9"])
            ingest.process_batch([Message(t_, p) for t_, p in device.chunk_messages(cid, delivery, bytes.fromhex(aid))])
            reports = [(e.report.event, e.report.follow_up, e.report.link) for e in sent.entries()]
            # the intrusion and its cancellation go out, with no link to photos; the trouble and the
            # verification follow-up stay at the gateway, stored
            assert reports == [("intrusion", False, None), ("alarm_cancelled", False, None)]
            assert len(store.images.photos_of_alarm("cam-1", aid)) == 1
            assert [e["event"]["code"] for e in store.events.of_devices(["cam-1"])
                    if e["event"].get("kind") == "technical"] == ["flash_full"]
            assert any("restricted processing is stored, not forwarded" in line for line in lines)
        finally:
            sent.close()


def test_the_access_report_lists_who_saw_the_households_photos_and_why_and_nothing_else(gw):
    data, app, anna, bo = gw
    op = login(app, "olivia")
    for alarm, dev in ((anna, "cam-1"), (bo, "cam-2")):
        for p in op.get(f"/api/alarms/{dev}/{alarm}").json()["photos"]:
            assert op.get(p["url"]).status_code == 200
    op.post(f"/api/alarms/cam-1/{anna}/close", json={"outcome": "false-user-error"})
    sup = login(app, "sam")
    first = sup.get(f"/api/alarms/cam-1/{anna}").json()["photos"][0]
    assert sup.get(first["url"], params={"reason": "Anna asked what we saw"}).status_code == 200

    report = login(app, "aud").get("/api/customers/anna/access-report").json()
    assert report["devices"] == ["cam-1"] and report["readers"] == {"olivia": 3, "sam": 1}
    assert {r["what"] for r in report["reads"]} == {"view image"}
    assert all(r["device"] == "cam-1" and r["alarm"] == anna for r in report["reads"])
    assert [r["why"] for r in report["reads"] if r["who"] == "sam"] == ["Anna asked what we saw"]
    assert "cam-2" not in json.dumps(report) and bo not in json.dumps(report)  # no staff's other work

    # The command line gives the same, to the same roles; each report read is itself audited.
    cli = vericam("subject", "access-report", "anna", "--data", data, "--by", "sam", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["reads"] == report["reads"]
    text = vericam("subject", "access-report", "anna", "--data", data, "--by", "aud").stdout
    assert "Anna asked what we saw" in text and "olivia (operator)" in text
    assert login(app, "adam").get("/api/customers/anna/access-report").status_code == 403
    assert login(app, "olivia").get("/api/customers/anna/access-report").status_code == 403
    assert login(app, "aud").get("/api/customers/nobody/access-report").status_code == 404
    refused = vericam("subject", "access-report", "anna", "--data", data, "--by", "adam")
    assert refused.returncode == 3 and "adam has the role admin" in refused.stderr
    assert [(r["who"], r["subject"]) for r in records(data, "view access report")] == [
        ("aud", "anna"), ("sam", "anna"), ("aud", "anna")]


def test_the_command_line_acts_as_a_named_user_whose_role_allows_it(gw, tmp_path):
    data, app, anna, bo = gw
    with Store.open(data) as s:
        add_user(s, "ex-sup", "supervisor", None, "adam", NOW)
        disable_user(s, "ex-sup", "adam", NOW)
    out = tmp_path / "export"
    for by, why in (("olivia", "olivia has the role operator"), ("adam", "adam has the role admin"),
                    ("nobody", "nobody is not an active user"), ("ex-sup", "ex-sup is not an active user")):
        r = vericam("subject", "export", "anna", "--data", data, "--out", out, "--by", by)
        assert r.returncode == 3 and why in r.stderr, r.stderr
        assert not out.exists()
    r = vericam("subject", "export", "anna", "--data", data, "--out", out, "--by", "sam", "--role", "supervisor")
    assert r.returncode == 3 and "drop --role" in r.stderr
    r = vericam("subject", "restrict", "anna", "--data", data, "--by", "olivia", "--why", "x")
    assert r.returncode == 3
    assert vericam("subject", "export", "anna", "--data", data, "--out", out, "--by", "sam").returncode == 0
    assert [r["who"] for r in records(data, "export subject data")] == ["sam"]
    assert records(data, "restrict processing") == []


def test_without_accounts_the_command_line_takes_an_asserted_role_and_says_so(tmp_path):
    data = tmp_path / "gw"
    init_arc(data)
    r = vericam("subject", "add-customer", "anna", "--data", data, "--by", "setup")
    assert r.returncode == 3 and "--role supervisor" in r.stderr
    r = vericam("subject", "add-customer", "anna", "--data", data, "--by", "setup", "--role", "operator")
    assert r.returncode == 3
    assert vericam("subject", "add-customer", "anna", "--data", data, "--by", "setup", "--role", "admin").returncode == 0


def test_reading_the_audit_trail_or_the_image_list_on_the_command_line_needs_the_role_and_is_audited(gw):
    data, app, anna, bo = gw
    assert vericam("audit", "show", "--data", data, "--by", "adam").returncode == 3
    shown = vericam("audit", "show", "--data", data, "--by", "aud", "--what", "configure customer")
    assert shown.returncode == 0 and len(shown.stdout.splitlines()) == 2
    assert vericam("gateway", "images", "--data", data, "--json", "--by", "aud").returncode == 3
    listed = vericam("gateway", "images", "--data", data, "--json", "--by", "olivia")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 5
    [trail] = records(data, "view audit trail")
    [images] = records(data, "view image list")
    assert (trail["who"], trail["detail"]["rows"]) == ("aud", 2)
    assert (images["who"], images["detail"]["role"], images["detail"]["images"]) == ("olivia", "operator", 5)


def test_the_restriction_and_the_access_report_read_the_same_on_both_engines(tmp_path, engine):
    from gateway.governance.alarms import photo_of_alarm, record_view
    from gateway.storage import sqldb

    data = tmp_path / "gw"
    if engine:
        sqldb.bind(data, engine)
    init(data)
    a1 = ingest_alarm(data, "cam-1", "Storgatan 12", frames=1)
    a10 = ingest_alarm(data, "cam-10", "Storgatan 14", frames=1)   # a device id that cam-1 is a prefix of
    with Store.open(data) as s:
        subject.add_customer(s, "anna", None, "adam", NOW)
        subject.link_device(s, "cam-1", "anna", "adam", NOW)
        subject.add_customer(s, "cleo", None, "adam", NOW)
        subject.link_device(s, "cam-10", "cleo", "adam", NOW)
        subject.set_restricted(s, "cleo", True, "sam", "objection", NOW)
        assert AccessQueries(s.db).restricted_devices() == {"cam-10"}
        assert AccessQueries(s.db).is_restricted("cam-10") and not AccessQueries(s.db).is_restricted("cam-1")
        for device, alarm in (("cam-1", a1), ("cam-10", a10)):
            [p] = s.images.photos_of_alarm(device, alarm)
            record_view(s, "olivia", "operator", device, alarm, photo_of_alarm(s, device, alarm, p["id"]), NOW)
        report = subject.access_report(s, "anna", "aud", "auditor", NOW)
        assert [(r["who"], r["device"], r["alarm"]) for r in report["reads"]] == [("olivia", "cam-1", a1)]
        assert audit.verify(s).ok
