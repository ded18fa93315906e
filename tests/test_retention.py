"""Retention: images go on their deletion day and not before, held ones at 30 days, never for space;
the sweeper survives SIGKILL, its cost follows what expired, and reconciliation finds the debris."""

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.governance import audit
from gateway.storage.keystore import KeyDestroyed
from gateway.governance.retention import LEGAL_MAX_HOLD_DAYS, RetentionConfigError, RetentionPolicy, reconcile
from gateway.storage.retention import DUE_SQL
from gateway.storage.store import Store

from support.cli import VERICAM, vericam
from support.retention import ALARM, DAY, DUE, ms, stored_ids, sweeper
from support.seeding import intact, make_gateway_dir, seed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path):
    return make_gateway_dir(tmp_path / "gw")


# The rules as configuration -------------------------------------------------------------------
def test_defaults_are_the_promises_made_to_households():
    p = RetentionPolicy()
    assert (p.image_days, p.hold_days, p.activity_years) == (7, 30, 3)
    assert LEGAL_MAX_HOLD_DAYS == 30


@pytest.mark.parametrize("bad", [dict(hold_days=31), dict(hold_days=365), dict(image_days=40),
                                 dict(image_days=0), dict(batch=0), dict(sweep_interval_s=0),
                                 dict(activity_years="3")])
def test_a_retention_config_beyond_the_rules_is_refused(bad):
    with pytest.raises(RetentionConfigError):
        RetentionPolicy(**bad)


def test_a_config_file_asking_for_a_longer_hold_is_refused_by_the_cli_and_the_gateway(data):
    (data / "retention.toml").write_text("[retention]\nhold_days = 45\n")
    out = vericam("retention", "show", "--data", str(data))
    assert out.returncode == 2 and "legal maximum of 30" in out.stderr
    from gateway.ingest.service import Gateway
    with pytest.raises(RetentionConfigError):
        Gateway(data, "127.0.0.1", 1).start(connect_timeout=0.1)
    (data / "retention.toml").write_text("[retention]\nhold_days = 20\nsweep_interval_s = 5\n")
    out = vericam("retention", "show", "--data", str(data))
    assert out.returncode == 0 and json.loads(out.stdout)["hold_days"] == 20


# The sweeper ---------------------------------------------------------------------------------
def test_an_image_is_kept_until_its_deletion_day_and_then_deleted_with_its_key(data):
    with Store.open(data) as store:
        ids = seed(store, "cam-1", ALARM)
        later = seed(store, "cam-1", ALARM + DAY)  # the next day's alarm: due a day later
        day = store.images.list()[0]["kek_day"]
        assert day == "2026-01-17"

        rep = sweeper(store, DUE - 1).sweep()
        assert rep.images_deleted == 0 and stored_ids(store) == set(ids + later)

        rep = sweeper(store, DUE).sweep()
        assert rep.images_deleted == 2 and rep.keks_destroyed == [day]
        assert stored_ids(store) == set(later)
        assert not list((data / "blobs").glob(f"{day}/*")), "the blob files are gone"
        with pytest.raises(KeyDestroyed):
            store.keys.kek(day, create=False)
        for i in later:
            assert intact(store, i)  # the next day's images are untouched

        deletions = audit.records(store, what="delete image")
        assert {r["subject"] for r in deletions} == set(ids)
        for r in deletions:
            assert r["who"] == "retention-sweeper" and r["why"] and r["key_id"] == f"kek:{day}"
            assert len(r["content_hash"]) == 64
        assert [r["subject"] for r in audit.records(store, what="destroy kek")] == [day]
        assert audit.verify(store).ok


def test_no_image_is_older_than_seven_days_after_any_sweep(data):
    """An hourly sweep over three weeks of alarms: the oldest unheld image never passes 7 days."""
    with Store.open(data) as store:
        start = ms(2026, 3, 1)
        worst = 0
        for hour in range(21 * 24):
            now = start + hour * 3_600_000
            if hour % 5 == 0:
                seed(store, "cam-1", now, frames=1)
            sweeper(store, now).sweep()
            oldest = store.db.execute("SELECT min(a.received_at_ms) FROM images i JOIN alarms a "
                                      "ON a.device = i.device AND a.alarm_id = i.alarm_id").fetchone()[0]
            if oldest is not None:
                worst = max(worst, now - oldest)
        assert 6 * DAY < worst <= 7 * DAY


def test_the_due_query_uses_the_deletion_time_index(data):
    with Store.open(data) as store:
        plan = " ".join(r[3] for r in store.db.execute("EXPLAIN QUERY PLAN " + DUE_SQL, (0, 10)))
        assert "USING INDEX images_by_delete_at" in plan, plan
        assert "SCAN images" not in plan.replace("SCAN images USING INDEX", "")


def test_a_sweep_costs_what_expired_not_what_is_stored(data):
    """SQLite VM steps of a sweep with nothing expired, at 200 and at 4000 stored images."""
    def steps(store):
        counter = [0]
        store.db.set_progress_handler(lambda: counter.__setitem__(0, counter[0] + 1) or 0, 1)
        sweeper(store, ALARM).sweep()
        store.db.set_progress_handler(None, 1)
        return counter[0]

    with Store.open(data) as store:
        def fill(n):
            with store.transaction():
                for _ in range(n):
                    store.db.execute(
                        "INSERT INTO images (id, device, capture_id, alarm_id, frame_index, frame_t, sha256, size, "
                        "blob_path, kek_day, wrapped_key, stored_at_ms, delete_at_ms) VALUES "
                        "(?, 'cam-1', 'c', 'a', 0, 0, '', 0, 'x', '2026-02-01', x'00', 0, ?)",
                        (secrets.token_hex(16), ms(2026, 2, 1)))
        fill(200)
        small = steps(store)
        fill(3800)
        big = steps(store)
    print(f"sweep with nothing expired: {small} VM steps at 200 images, {big} at 4000 "
          f"(ratio {big / small:.2f} for 20x the images)")
    assert big < small * 1.5


def test_held_images_are_never_purged_early_and_never_kept_beyond_thirty_days(data):
    from gateway.governance import hold
    with Store.open(data) as store:
        held = seed(store, "cam-1", ALARM)
        other = seed(store, "cam-1", ALARM)
        hold.place(store, held[0], "sue", "burglary investigation", "K-2026-17", ALARM + DAY, role="supervisor")
        sweeper(store, DUE).sweep()
        assert stored_ids(store) == {held[0]}
        assert intact(store, held[0])  # re-wrapped: readable after the 7-day KEK is gone
        sweeper(store, ms(2026, 2, 9) - 1).sweep()
        assert stored_ids(store) == {held[0]}
        rep = sweeper(store, ms(2026, 2, 9)).sweep()  # alarm day + 30
        assert stored_ids(store) == set() and "2026-02-09/hold-1" in rep.keks_destroyed
        assert set(other) <= {r["subject"] for r in audit.records(store, what="delete image")}


# Crash safety ----------------------------------------------------------------------------------
CRASHER = r"""
import sys, time
sys.path.insert(0, {root!r})
from gateway.governance.retention import RetentionPolicy, Sweeper
from gateway.storage.store import Store
store = Store.open({data!r})
sw = Sweeper(store, RetentionPolicy(batch=25), clock=lambda: {now} / 1000)
n = [0]
def window():
    n[0] += 1
    print("files gone", n[0], flush=True)
    if n[0] == 3:
        time.sleep(60)   # killed here: files of batch 3 gone, their rows not yet deleted
sw.on_files_gone = window
sw.sweep()
print("finished", flush=True)
"""


def test_sigkill_mid_sweep_then_restart_leaves_no_orphans_and_no_rows_without_files(data):
    with Store.open(data) as store:
        expired = [i for _ in range(50) for i in seed(store, "cam-1", ALARM, frames=3)]
        kept = seed(store, "cam-1", ALARM + 3 * DAY)
    code = CRASHER.format(root=str(ROOT), data=str(data), now=DUE)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "files gone 3":
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    with Store.open(data) as store:
        mid = reconcile(store, now_ms=DUE, min_file_age_s=0)
        assert mid.files_without_rows == [] and mid.rows_without_files == []
        assert len(mid.due_rows_without_files) == 25, "the killed batch: due rows whose files are already gone"
        assert 0 < len(stored_ids(store) & set(expired)) < len(expired)

        rep = sweeper(store, DUE).sweep()  # the gateway sweeps at start
        assert stored_ids(store) == set(kept)
        after = reconcile(store, now_ms=DUE, min_file_age_s=0)
        assert after.clean, after
        assert "2026-01-17" in rep.keks_destroyed
        assert {r["subject"] for r in audit.records(store, what="delete image")} == set(expired)
        assert audit.verify(store).ok


# Reconciliation ------------------------------------------------------------------------------
def test_reconcile_finds_files_without_rows_and_rows_without_files_and_repairs_them(data):
    with Store.open(data) as store:
        ids = seed(store, "cam-1", int(time.time() * 1000))  # not due for days
        row = store.db.execute("SELECT blob_path FROM images WHERE id = ?", (ids[0],)).fetchone()
        (data / row[0]).unlink()  # evidence lost from the disk
        (data / "blobs" / "2026-01-17").mkdir()
        orphan = data / "blobs" / "2026-01-17" / ("ab" * 16 + ".vcb")
        orphan.write_bytes(b"VCB1" + os.urandom(40))
        old = time.time() - 3600
        os.utime(orphan, (old, old))
        young = data / "blobs" / "2026-01-17" / ("cd" * 16 + ".vcb")
        young.write_bytes(b"VCB1")  # an ingest between its blob and its row: not an orphan yet

    out = vericam("retention", "reconcile", "--data", str(data), "--json")
    assert out.returncode == 1, out.stderr
    rep = json.loads(out.stdout)
    assert rep["files_without_rows"] == ["blobs/2026-01-17/" + "ab" * 16 + ".vcb"]
    assert rep["rows_without_files"] == [ids[0]]

    out = vericam("retention", "reconcile", "--data", str(data), "--repair")
    assert out.returncode == 0, out.stderr
    with Store.open(data) as store:
        assert reconcile(store).clean
        assert not orphan.exists() and young.exists()
        assert stored_ids(store) == {ids[1]}
        whats = [r["what"] for r in audit.records(store)]
        assert "delete orphan file" in whats and "delete image" in whats


# Crypto-shredding ------------------------------------------------------------------------------
def test_a_backup_restored_after_the_sweep_decrypts_no_expired_image(data, tmp_path):
    with Store.open(data) as store:
        expired = [i for _ in range(10) for i in seed(store, "cam-1", ALARM, frames=2)]
        live = seed(store, "cam-1", ALARM + 2 * DAY)
        plain = {i: store.images.read(i) for i in expired}
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backup = tmp_path / "backup"
    shutil.copytree(data, backup)  # a full copy: database, blob store and key store

    with Store.open(data) as store:
        rep = sweeper(store, DUE).sweep()
        assert rep.images_deleted == len(expired) and rep.keks_destroyed == ["2026-01-17"]

    # The attack: restore the database and blobs from the backup, next to the current key store.
    restored = tmp_path / "restored"
    restored.mkdir()
    for name in os.listdir(backup):
        if name != "keys":
            src = backup / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, restored / name)
    shutil.copytree(data / "keys", restored / "keys")
    decryptable = 0
    with Store.open(restored) as store:
        assert set(expired) <= stored_ids(store), "the restored rows and blobs are all there"
        for i in expired:
            try:
                store.images.read(i)
                decryptable += 1
            except KeyDestroyed:
                pass
        assert all(intact(store, i) for i in live)
    print(f"expired images in the restored backup: {len(expired)}, decryptable: {decryptable}")
    assert decryptable == 0

    # The control: with the key store of the backup they would all come back. That is why the key
    # store's backups must never be kept longer than the retention period (OPERATING.md).
    with Store.open(backup) as store:
        assert all(store.images.read(i) == plain[i] for i in expired)


# Activity log ----------------------------------------------------------------------------------
def test_activity_log_is_kept_until_three_years_after_the_relationship_ends(tmp_path):
    from gateway.governance import subject
    from gateway.governance.retention import end_relationship
    data = make_gateway_dir(tmp_path / "gw", devices=("cam-1", "cam-2", "cam-3"))
    now = ms(2030, 6, 1)
    with Store.open(data) as store:
        for cust, dev, ended in (("gone", "cam-1", ms(2027, 5, 31)), ("recent", "cam-2", ms(2027, 6, 2)),
                                 ("open", "cam-3", None)):
            subject.add_customer(store, cust, None, "admin", ms(2025, 1, 1), started_at_ms=ms(2025, 1, 1))
            subject.link_device(store, dev, cust, "admin", ms(2025, 1, 1))
            if ended:
                end_relationship(store, cust, ended, "admin", ended, "contract terminated", role="admin")
            with store.transaction():
                for k in range(3):
                    store.events.add(dev, {"kind": "disarm", "slot": 2, "t": k}, ms(2027, 1, 1) + k, False)
            seed(store, dev, ms(2027, 1, 1))
        sweeper(store, now).sweep()
        left = {d: store.db.execute("SELECT count(*) FROM events WHERE device = ?", (d,)).fetchone()[0]
                for d in ("cam-1", "cam-2", "cam-3")}
        assert left == {"cam-1": 0, "cam-2": 3, "cam-3": 3}
        assert store.db.execute("SELECT count(*) FROM alarms WHERE device = 'cam-1'").fetchone()[0] == 0
        assert [r["subject"] for r in audit.records(store, what="purge activity log")] == ["gone"]


# Inside the gateway --------------------------------------------------------------------------
def test_the_gateway_sweeps_on_its_own_schedule(data, broker):
    from gateway.ingest.service import Gateway
    with Store.open(data) as store:
        old = seed(store, "cam-1", int(time.time() * 1000) - 9 * DAY)
        fresh = seed(store, "cam-1", int(time.time() * 1000))
    with Gateway(data, "127.0.0.1", broker.port, sweep_interval_s=0.2) as gw:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and gw.sweeper.sweeps < 2:
            time.sleep(0.05)
        assert gw.sweeper.sweeps >= 2
    with Store.open(data) as store:
        assert stored_ids(store) == set(fresh)
        assert {r["subject"] for r in audit.records(store, what="delete image")} == set(old)
        (config,) = audit.records(store, what="configure retention")
        assert config["detail"]["hold_days"] == 30 and config["detail"]["sweep_interval_s"] == 0.2
    with Gateway(data, "127.0.0.1", broker.port, sweep_interval_s=0.2):
        pass  # same rules: not recorded again
    (data / "retention.toml").write_text("[retention]\nimage_days = 5\n")
    with Gateway(data, "127.0.0.1", broker.port, sweep_interval_s=0.2) as gw:
        assert gw.ingest.image_days == 5
    with Store.open(data) as store:
        assert [r["detail"]["image_days"] for r in audit.records(store, what="configure retention")] == [7, 5]


def test_a_running_vericam_gateway_deletes_what_is_due_and_leaves_the_rest(data, broker):
    """Checked from outside: a `vericam gateway run` process, its files and its audit log."""
    with Store.open(data) as store:
        old = seed(store, "cam-1", int(time.time() * 1000) - 8 * DAY)
        fresh = seed(store, "cam-1", int(time.time() * 1000) - 5 * DAY)
    proc = subprocess.Popen([VERICAM, "gateway", "run", "--data", str(data), "--broker", f"127.0.0.1:{broker.port}",
                             "--sweep-interval", "0.3"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with Store.open(data) as store:
                if not stored_ids(store) & set(old):
                    break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=20)[1]
    assert "retention sweep: 2 images deleted" in err, err
    with Store.open(data) as store:
        assert stored_ids(store) == set(fresh)
        assert all(intact(store, i) for i in fresh)
        assert reconcile(store, min_file_age_s=0).clean
        assert audit.verify(store).ok
