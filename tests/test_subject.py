"""Data-subject rights: a customer gets a verifiable export of their data, and erasure removes what
may go while a police hold and the legal activity-log duty keep the rest; all of it audited."""

import hashlib
import json
import time

import pytest

from gateway.governance import audit

from gateway.governance import hold

from gateway.governance import subject
from gateway.storage.store import Store

from support.cli import vericam
from support.retention import stored_ids
from support.seeding import make_gateway_dir, seed

NOW = int(time.time() * 1000)


@pytest.fixture
def data(tmp_path):
    data = make_gateway_dir(tmp_path / "gw", devices=("cam-1", "cam-2", "cam-9"))
    with Store.open(data) as store:
        subject.add_customer(store, "cust-1", "Anna Andersson", "admin", NOW)
        subject.link_device(store, "cam-1", "cust-1", "admin", NOW)
        subject.link_device(store, "cam-2", "cust-1", "admin", NOW)
        subject.add_customer(store, "cust-9", None, "admin", NOW)
        subject.link_device(store, "cam-9", "cust-9", "admin", NOW)
        with store.transaction():
            store.events.add("cam-1", {"kind": "disarm", "slot": 3, "t": 1}, NOW, False)
            store.events.add("cam-9", {"kind": "arm", "slot": 1, "t": 1}, NOW, False)
        seed(store, "cam-1", NOW - 3600_000, frames=2)
        seed(store, "cam-2", NOW - 7200_000, frames=1)
        seed(store, "cam-9", NOW, frames=2)  # another household's: never in cust-1's export
    return data


def test_devices_need_a_known_customer(data):
    with Store.open(data) as store:
        with pytest.raises(subject.SubjectError, match="no customer"):
            subject.link_device(store, "cam-1", "nobody", "admin", NOW)
        with pytest.raises(subject.SubjectError, match="no device"):
            subject.link_device(store, "cam-404", "cust-1", "admin", NOW)


def test_the_export_holds_the_customers_data_and_images_with_a_manifest(data, tmp_path):
    out = tmp_path / "export"
    r = vericam("subject", "export", "cust-1", "--data", str(data), "--out", str(out),
                "--by", "dpo", "--role", "supervisor")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "export.json").read_text())
    assert doc["customer"]["name"] == "Anna Andersson"
    assert [d["id"] for d in doc["devices"]] == ["cam-1", "cam-2"]
    assert all("device_key" not in d for d in doc["devices"])
    assert [e["event"]["kind"] for e in doc["events"]] == ["disarm"]
    assert len(doc["alarms"]) == 2 and len(doc["images"]) == 3
    for img in doc["images"]:
        jpeg = (out / img["file"]).read_bytes()
        assert jpeg[:2] == b"\xff\xd8" and hashlib.sha256(jpeg).hexdigest() == img["sha256"]
    assert subject.verify_manifest(out) == []
    (out / doc["images"][0]["file"]).write_bytes(b"tampered")
    assert subject.verify_manifest(out) == [f"{doc['images'][0]['file']} does not match its SHA-256"]
    with Store.open(data) as store:
        rec = audit.records(store, what="export subject data")
        assert len(rec) == 1 and rec[0]["who"] == "dpo" and rec[0]["subject"] == "cust-1"
        assert rec[0]["content_hash"] == hashlib.sha256((out / "MANIFEST.sha256").read_bytes()).hexdigest()


def test_erasure_removes_unheld_images_and_reports_what_a_hold_and_the_law_keep(data):
    with Store.open(data) as store:
        held = store.images.list("cam-1")[0]["id"]
        hold.place(store, held, "sue", "burglary", "K-55", NOW, role="supervisor")
        other = {i["id"] for i in store.images.list("cam-9")}
    r = vericam("subject", "erase", "cust-1", "--data", str(data), "--by", "dpo", "--role", "supervisor", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["images_erased"] == 2
    kept = {k["why"]: k for k in rep["kept"]}
    assert "police hold #1 (case K-55)" in kept
    assert any(w.startswith("legal duty") for w in kept)
    with Store.open(data) as store:
        assert stored_ids(store) == {held} | other
        assert store.db.execute("SELECT count(*) FROM events WHERE device = 'cam-1'").fetchone()[0] == 1
        rec = audit.records(store, what="erase subject data")[0]
        assert rec["who"] == "dpo" and rec["detail"]["images_erased"] == 2
        assert len([x for x in audit.records(store, what="delete image") if x["who"] == "dpo"]) == 2
        assert audit.verify(store).ok

    # Asked again: nothing more may go; the refusal is reported, exit 3, and audited too.
    r = vericam("subject", "erase", "cust-1", "--data", str(data), "--by", "dpo", "--role", "supervisor")
    assert r.returncode == 3 and "police hold #1" in r.stdout and "legal duty" in r.stdout
    with Store.open(data) as store:
        assert len(audit.records(store, what="erase subject data")) == 2


def test_restriction_is_a_flag_that_keeps_the_data(data):
    r = vericam("subject", "restrict", "cust-1", "--data", str(data), "--by", "dpo", "--role", "supervisor",
                "--why", "accuracy contested")
    assert r.returncode == 0, r.stderr
    with Store.open(data) as store:
        assert store.db.execute("SELECT restricted FROM customers WHERE id = 'cust-1'").fetchone()[0] == 1
        assert len(store.images.list("cam-1")) == 2
        assert audit.records(store, what="restrict processing")[0]["why"] == "accuracy contested"
