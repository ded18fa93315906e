"""The audit trail is hash-chained and anchored in the key store: editing, removing, truncating or
rewriting records is detected by `vericam audit verify`."""

import sqlite3

import pytest

from gateway.governance import audit
from gateway.provisioning.devices import revoke_device
from gateway.storage.store import Store

from support.cli import vericam
from support.retention import ALARM
from support.seeding import make_gateway_dir


@pytest.fixture
def data(tmp_path):
    data = make_gateway_dir(tmp_path / "gw")
    with Store.open(data) as store:
        for n in range(1, 9):
            with store.transaction():
                audit.append(store, f"op-{n % 3}", "view image", "verifying alarm", at_ms=ALARM + n,
                             subject=f"img-{n}", detail={"alarm": "a1"})
    return data


def verify_cli(data):
    return vericam("audit", "verify", "--data", str(data))


def attacker(data):
    """Someone with write access to the database file: drops the append-only triggers first."""
    db = sqlite3.connect(data / "vericam.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER audit_append_only_update")
    db.execute("DROP TRIGGER audit_append_only_delete")
    return db


def test_an_untouched_log_verifies(data):
    out = verify_cli(data)
    assert out.returncode == 0, out.stderr
    assert "9 records" in out.stdout and "anchored at record 9" in out.stdout


def test_every_record_says_who_what_when_why_and_links_to_the_one_before(data):
    with Store.open(data) as store:
        recs = audit.records(store)
    assert [r["seq"] for r in recs] == list(range(1, 10))
    assert recs[0]["prev_hash"] == audit.GENESIS
    for a, b in zip(recs, recs[1:]):
        assert b["prev_hash"] == a["hash"]
    assert all(r["who"] and r["what"] and r["why"] and r["at_ms"] for r in recs)


def test_editing_one_record_and_removing_another_are_both_detected(data):
    db = attacker(data)
    db.execute("UPDATE audit SET who = 'nobody' WHERE seq = 3")
    db.execute("DELETE FROM audit WHERE seq = 6")
    db.close()
    out = verify_cli(data)
    assert out.returncode == 1
    assert "record 3 was edited" in out.stderr
    assert "records 6..6 are missing" in out.stderr


def test_removing_the_newest_records_is_detected_by_the_head_in_the_key_store(data):
    db = attacker(data)
    db.execute("DELETE FROM audit WHERE seq >= 7")  # the chain 1..6 alone is valid
    db.close()
    out = verify_cli(data)
    assert out.returncode == 1 and "records were removed from the end" in out.stderr


def test_rewriting_the_whole_chain_is_detected(data):
    with Store.open(data) as store:
        recs = audit.records(store)
    db = attacker(data)
    prev = audit.GENESIS
    for r in recs:  # recompute a self-consistent chain in which op-1 never viewed img-4
        r = dict(r, detail=r["detail"] and '{"alarm":"a1"}')
        if r["seq"] == 4:
            r["who"] = "op-2"
        r["prev_hash"] = prev
        r["hash"] = audit.record_hash(prev, r)
        db.execute("UPDATE audit SET who = ?, prev_hash = ?, hash = ?, detail = ? WHERE seq = ?",
                   (r["who"], r["prev_hash"], r["hash"], r["detail"], r["seq"]))
        prev = r["hash"]
    db.close()
    out = verify_cli(data)
    assert out.returncode == 1 and "the log was rewritten" in out.stderr


def test_the_log_refuses_updates_and_deletes_through_sql(data):
    db = sqlite3.connect(data / "vericam.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET why = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 1")


def test_a_record_rolled_back_with_its_change_leaves_no_trace(data):
    with Store.open(data) as store:
        with pytest.raises(RuntimeError):
            with store.transaction():
                audit.append(store, "op", "view image", "x", at_ms=1)
                raise RuntimeError("the change failed")
        assert audit.verify(store).ok and audit.verify(store).records == 9
        with pytest.raises(RuntimeError, match="inside store.transaction"):
            audit.append(store, "op", "view image", "x", at_ms=1)


def test_provisioning_and_revoking_a_device_are_audited(data):
    with Store.open(data) as store:
        recs = audit.records(store, what="configure device")
        assert [(r["subject"], r["why"]) for r in recs] == [("cam-1", "device provisioned")]
        assert recs[0]["who"].startswith("os:")
        revoke_device(store, "cam-1")
        assert audit.records(store, what="configure device")[-1]["why"] == "device revoked"
        assert audit.verify(store).ok
