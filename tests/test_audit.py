"""The audit trail is chained under the key store's audit key, anchored there and checkpointed:
editing, removing, truncating or rewriting records is detected by `vericam audit verify`.

The attacks of a database-only attacker on both engines are in tests/test_audit_attackers.py."""

import hashlib
import json
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


def test_a_record_undone_with_its_savepoint_is_neither_anchored_nor_checkpointed(data, monkeypatch):
    monkeypatch.setattr(audit, "CHECKPOINT_EVERY_MS", 0)  # every record appended is checkpointed
    with Store.open(data) as store:
        with store.transaction():
            audit.append(store, "op-1", "view image", "kept", at_ms=ALARM + 40)
            with pytest.raises(RuntimeError):
                with store.savepoint():
                    audit.append(store, "op-1", "view image", "undone", at_ms=ALARM + 41)
                    raise RuntimeError("handling this message failed")
        assert store.keys.audit_anchor()[0] == 10
        assert max(json.loads(line)["seq"] for line in audit.checkpoints(store)) == 10
        v = audit.verify(store)
        assert v.ok and v.records == 10, v.problems


def test_provisioning_and_revoking_a_device_are_audited(data):
    with Store.open(data) as store:
        recs = audit.records(store, what="configure device")
        assert [(r["subject"], r["why"]) for r in recs] == [("cam-1", "device provisioned")]
        assert recs[0]["who"].startswith("os:")
        # the site is an address, kept 12 months after the relationship ends: the trail (3 years) says it was set
        assert recs[0]["detail"] == {"site": "set"} and "site-cam-1" not in str(recs[0])
        revoke_device(store, "cam-1")
        assert audit.records(store, what="configure device")[-1]["why"] == "device revoked"
        assert audit.verify(store).ok


def test_gateway_init_keys_the_trail_from_its_first_record(data):
    with Store.open(data) as store:
        keys = audit.keys_of(store)
        recs = store.audit.chain()
    assert keys is not None and keys.keyed_from == 1
    prev = audit.GENESIS
    for r in recs:  # every link is the MAC under the key store's key, none the plain hash anyone can compute
        assert r["hash"] == audit.record_mac(keys.mac_key, prev, r) != audit.record_hash(prev, r)
        prev = r["hash"]


def legacy_data_dir(path, n=5):
    """A data directory as the gateway left it before the audit key: `n` hash-chained records, anchored."""
    with Store.open(path) as store:
        for seq in range(1, n + 1):
            with store.transaction():
                last = store.audit.lock_head()
                rec = {"seq": seq, "at_ms": ALARM + seq, "who": "op-1", "what": "view image", "why": "verifying alarm",
                       "subject": f"img-{seq}", "key_id": None, "content_hash": None, "detail": '{"alarm":"a1"}',
                       "prev_hash": last[1] if last else audit.GENESIS}
                rec["hash"] = audit.record_hash(rec["prev_hash"], rec)
                store.audit.insert(rec)
        assert store.keys.audit_key() is None
        v = audit.verify(store)
        assert v.ok and v.keyed_from is None and v.records == n
    return path


def test_an_older_data_directory_is_keyed_at_its_next_audited_action_by_a_switch_over_record(tmp_path):
    data = legacy_data_dir(tmp_path / "old")
    with Store.open(data) as store:
        with store.transaction():
            audit.append(store, "sup-1", "view image", "verifying alarm", at_ms=ALARM + 10, subject="img-9")
        recs = audit.records(store)
        v = audit.verify(store)
    assert v.ok and v.keyed_from == 6 and v.records == 7, v.problems
    switch = recs[5]
    assert (switch["seq"], switch["who"], switch["what"]) == (6, "gateway", audit.SWITCH_OVER)
    assert switch["detail"] == {"hash_chained_until": 5, "last_hash": recs[4]["hash"]}
    assert (recs[6]["who"], recs[6]["subject"]) == ("sup-1", "img-9")
    out = vericam("audit", "verify", "--data", data)
    assert out.returncode == 0 and "keyed from record 6" in out.stdout


def test_the_hash_chained_records_before_the_switch_over_cannot_be_rewritten_unseen(tmp_path):
    data = legacy_data_dir(tmp_path / "old")
    with Store.open(data) as store:
        assert audit.key_the_trail(store) == 6
    db = attacker(data)
    prev = audit.GENESIS
    for row in db.execute("SELECT seq, at_ms, who, what, why, subject, key_id, content_hash, detail FROM audit "
                          "WHERE seq <= 5 ORDER BY seq").fetchall():
        rec = dict(zip(audit.FIELDS, row), prev_hash=prev)
        if rec["seq"] == 2:
            rec["who"] = "op-2"  # op-1 never viewed img-2
        rec["hash"] = audit.record_hash(prev, rec)
        db.execute("UPDATE audit SET who = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                   (rec["who"], rec["prev_hash"], rec["hash"], rec["seq"]))
        prev = rec["hash"]
    db.execute("UPDATE audit SET prev_hash = ? WHERE seq = 6", (prev,))  # relink the switch-over record
    db.close()
    out = vericam("audit", "verify", "--data", data)
    assert out.returncode == 1
    assert "record 6 was edited or forged: it does not verify under the audit key" in out.stderr


def test_checkpoints_are_signed_every_n_records_and_kept_in_the_key_store(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "CHECKPOINT_EVERY", 4)
    data = make_gateway_dir(tmp_path / "gw")  # record 1: cam-1 provisioned, the first checkpoint
    with Store.open(data) as store:
        for n in range(2, 12):
            with store.transaction():
                audit.append(store, "op-1", "view image", "verifying alarm", at_ms=ALARM + n, subject=f"img-{n}")
        kept = [json.loads(line) for line in audit.checkpoints(store)]
        v = audit.verify(store)
    assert [(c["seq"], c["count"]) for c in kept] == [(1, 1), (5, 5), (9, 9)]
    assert v.ok and v.checkpoints == 3 and v.checkpoint_seq == 9


def test_a_checkpoint_is_also_due_after_its_interval_when_a_record_is_appended(data, monkeypatch):
    monkeypatch.setattr(audit, "CHECKPOINT_EVERY_MS", 0)
    with Store.open(data) as store:
        before = len(audit.checkpoints(store))
        for n in range(2):
            with store.transaction():
                audit.append(store, "op-1", "view image", "verifying alarm", at_ms=ALARM + 20 + n)
        assert len(audit.checkpoints(store)) == before + 2


def test_a_sweep_of_many_records_in_one_transaction_after_a_quiet_spell_signs_one_checkpoint(data, monkeypatch):
    later = audit._now_ms() + audit.CHECKPOINT_EVERY_MS
    monkeypatch.setattr(audit, "_now_ms", lambda: later)
    with Store.open(data) as store:
        before = len(audit.checkpoints(store))
        with store.transaction():
            for n in range(20):
                audit.append(store, "retention", "delete image", "retention: 7 days after the alarm",
                             at_ms=ALARM + 50 + n, subject=f"img-{n}")
        assert len(audit.checkpoints(store)) == before + 1
        assert audit.verify(store).ok


def test_checkpoint_out_appends_what_the_file_lacks_and_verify_checks_every_line(data, tmp_path):
    worm = tmp_path / "checkpoints.jsonl"
    out = vericam("audit", "checkpoint", "--data", data, "--out", worm)
    assert out.returncode == 0, out.stderr
    first = worm.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in first] == [1, 9]  # the periodic one of record 1, and now
    assert out.stdout.splitlines() == first
    with Store.open(data) as store:
        with store.transaction():
            audit.append(store, "op-1", "view image", "verifying alarm", at_ms=ALARM + 30)
    assert vericam("audit", "checkpoint", "--data", data, "--out", worm).returncode == 0
    lines = worm.read_text().splitlines()
    assert lines[:2] == first and [json.loads(line)["seq"] for line in lines[2:]] == [10]

    out = vericam("audit", "verify", "--data", data, "--json", "--checkpoints", worm)
    v = json.loads(out.stdout)
    assert out.returncode == 0 and v["ok"]
    assert set(v) >= {"ok", "records", "anchored_seq", "unanchored", "problems", "keyed_from", "checkpoints",
                      "checkpoint_seq"}
    assert (v["records"], v["anchored_seq"], v["keyed_from"], v["checkpoints"], v["checkpoint_seq"]) == (10, 10, 1, 3, 10)


def test_an_altered_or_foreign_checkpoint_line_is_reported(data, tmp_path):
    worm = tmp_path / "checkpoints.jsonl"
    assert vericam("audit", "checkpoint", "--data", data, "--out", worm).returncode == 0
    good = json.loads(worm.read_text().splitlines()[-1])
    altered = dict(good, seq=8, count=8)  # moved onto an earlier record: the signature no longer holds
    other = make_gateway_dir(tmp_path / "other")
    foreign = vericam("audit", "checkpoint", "--data", other).stdout.strip()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(altered) + "\n" + foreign + "\nnot json\n")
    out = vericam("audit", "verify", "--data", data, "--checkpoints", bad)
    assert out.returncode == 1
    assert "bad.jsonl line 1: the checkpoint of record 8 has a bad signature" in out.stderr
    assert "bad.jsonl line 2: the checkpoint of record 1 was signed by another key" in out.stderr
    assert "bad.jsonl line 3: not an audit checkpoint" in out.stderr


def test_no_checkpoint_is_signed_over_a_forged_head(data):
    db = sqlite3.connect(data / "vericam.sqlite", isolation_level=None)
    head = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()[0]
    rec = {"seq": 10, "at_ms": ALARM + 99, "who": "sup-1", "what": "view image", "why": "verifying alarm",
           "subject": "img-x", "key_id": None, "content_hash": None, "detail": "{}"}
    db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (*rec.values(), head, audit.record_hash(head, rec)))
    db.close()
    out = vericam("audit", "checkpoint", "--data", data)
    assert out.returncode == 1 and "the newest audit record (10) does not verify" in out.stderr
    with Store.open(data) as store:
        assert max(json.loads(line)["seq"] for line in audit.checkpoints(store)) < 10


def test_free_text_goes_into_a_record_as_its_length_and_keyed_hash_only(data):
    with Store.open(data) as store:
        with store.transaction():
            rec = audit.append(store, "olivia", "close alarm", "outcome: false alarm", at_ms=ALARM + 100,
                               subject="alarm:cam-1/a1", detail={"outcome": "false-user-error"},
                               texts={"note": "the cat again"})
        [kept] = [r for r in audit.records(store, what="close alarm")]
        assert kept["detail"]["outcome"] == "false-user-error" and "cat" not in rec["detail"] + str(kept)
        assert kept["detail"]["note"]["length"] == 13 and len(kept["detail"]["note"]["hmac_sha256"]) == 64
        assert kept["detail"]["note"]["hmac_sha256"] != hashlib.sha256(b"the cat again").hexdigest()  # keyed
        assert audit.text_matches(store, kept, "note", "the cat again")
        assert not audit.text_matches(store, kept, "note", "the dog again")
        assert not audit.text_matches(store, kept, "outcome", "false-user-error")
        assert audit.verify(store).ok
