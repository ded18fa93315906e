"""Retention and reconciliation with the images in an S3 bucket (moto and SeaweedFS, over HTTP)."""

import pytest

from gateway.governance import audit
from gateway.storage.blobstore import BlobConfig, BlobStoreError, key_of
from gateway.storage.keystore import KeyDestroyed
from gateway.provisioning.devices import configure_blobs
from gateway.governance.retention import RetentionPolicy, Sweeper, reconcile
from gateway.storage.store import Store
from support.retention import ALARM, DAY, DUE
from support.s3server import MotoS3
from support.seeding import intact, make_gateway_dir, seed

PREFIX = "arc-1"


def s3_gateway_dir(tmp_path, server) -> tuple:
    bucket = server.new_bucket()
    data = make_gateway_dir(tmp_path / "gw")
    configure_blobs(data, BlobConfig(f"s3://{bucket}/{PREFIX}", server.endpoint))
    return data, bucket


def sweep_at(store, at_ms):
    return Sweeper(store, RetentionPolicy(), clock=lambda: at_ms / 1000).sweep()


def test_a_due_days_objects_are_deleted_its_kek_destroyed_and_stray_objects_of_the_day_go_too(
        tmp_path, any_s3, s3_env):
    s3_server = any_s3
    data, bucket = s3_gateway_dir(tmp_path, s3_server)
    with Store.open(data) as store:
        due = seed(store, "cam-1", ALARM, frames=3)
        later = seed(store, "cam-1", ALARM + DAY)
        # A blob whose row was rolled back while the store was down (its delete failed too).
        store.blobs.put("2026-01-17/" + "ab" * 16 + ".vcb", b"VCB1" + bytes(40))
        objects = s3_server.objects(bucket)
        assert len(objects) == 6 and all(k.startswith(f"{PREFIX}/2026-01-1") for k in objects)
        assert not list((data / "blobs").rglob("*.vcb")), "no image touches the local disk"

        rep = sweep_at(store, DUE)
        assert rep.images_deleted == 3 and rep.keks_destroyed == ["2026-01-17"]
        left = s3_server.objects(bucket)
        assert not [k for k in left if k.startswith(f"{PREFIX}/2026-01-17/")], "the day's prefix is empty"
        assert sorted(left) == sorted(f"{PREFIX}/{key_of(r['blob_path'])}" for r in store.images.list())
        with pytest.raises(KeyDestroyed):
            store.keys.kek("2026-01-17", create=False)
        assert all(intact(store, i) for i in later)
        assert {r["subject"] for r in audit.records(store, what="delete image")} == set(due)
        assert [r["subject"] for r in audit.records(store, what="delete orphan file")] == [
            "blobs/2026-01-17/" + "ab" * 16 + ".vcb"]


def test_reconciliation_reports_objects_without_rows_and_rows_without_objects(tmp_path, any_s3, s3_env):
    s3_server = any_s3
    data, bucket = s3_gateway_dir(tmp_path, s3_server)
    with Store.open(data) as store:
        ids = seed(store, "cam-1", ALARM, frames=3)
        orphan = "2026-01-18/" + "cd" * 16 + ".vcb"
        store.blobs.put(orphan, b"VCB1" + bytes(40))
        lost = store.images.list()[0]
        s3_server.client().delete_object(Bucket=bucket, Key=f"{PREFIX}/{key_of(lost['blob_path'])}")

        rec = reconcile(store, now_ms=ALARM, min_file_age_s=0)
        assert rec.files_without_rows == ["blobs/" + orphan]
        assert rec.rows_without_files == [lost["id"]]
        assert not rec.clean
        assert reconcile(store, now_ms=ALARM, min_file_age_s=3600).files_without_rows == [], \
            "a blob younger than a commit is not called an orphan"

        reconcile(store, repair=True, now_ms=ALARM, min_file_age_s=0)
        assert reconcile(store, now_ms=ALARM, min_file_age_s=0).clean
        assert f"{PREFIX}/{orphan}" not in s3_server.objects(bucket)
        assert {i["id"] for i in store.images.list()} == set(ids) - {lost["id"]}


def test_a_sweep_while_the_object_store_is_down_deletes_nothing_and_keeps_the_key(tmp_path, s3_env):
    server = MotoS3().start()
    try:
        data, bucket = s3_gateway_dir(tmp_path, server)
        with Store.open(data) as store:
            due = seed(store, "cam-1", ALARM)
            server.stop()
            with pytest.raises(BlobStoreError, match="unreachable"):
                sweep_at(store, DUE)
            assert {i["id"] for i in store.images.list()} == set(due), "rows stay due, not half-deleted"
            assert store.keys.kek("2026-01-17", create=False)  # not shredded while rows are due
            server.start()
            rep = sweep_at(store, DUE)
            assert rep.images_deleted == 2 and rep.keks_destroyed == ["2026-01-17"]
            assert server.objects(bucket) == {}
    finally:
        server.stop()
