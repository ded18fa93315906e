"""The at-scale deployment, for real: two gateway workers on one `$share` subscription, metadata in
one PostgreSQL database, images in one S3 bucket (SeaweedFS, or moto where SeaweedFS is missing).

Each worker has a data directory of its own (its database.toml, blobs.toml and client id); the
key store is one directory that both data directories' `keys` link to, because both workers
unwrap device keys and wrap image keys under the same day KEKs (docs/OPERATING.md, "Scaling
out"). One worker is SIGKILLed mid-stream and restarted; later the database drops every gateway
session and refuses new ones for two seconds. Every capture must be stored exactly once, every
image must read back byte-identical, every device must get its receipts, and no receipt may
come before its rows are committed and its objects are in the bucket.
"""

import threading
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from botocore.exceptions import ClientError

from gateway.governance import audit

from gateway.storage import sqldb
from gateway.storage.blobstore import BlobConfig, BlobStoreError, key_of
from gateway.storage.keystore import KeyStore
from gateway.provisioning.devices import add_device, configure_blobs, init_arc
from gateway.governance.retention import reconcile
from gateway.storage.store import Store

from support.retention import ALARM
from support.scaleout import CaptureStream, Workers, race, wait_for
from support.seeding import seed

DEVICES = 3
CAPTURES_PER_DEVICE = 12
PREFIX = "arc/images"
WORKERS = ("gw-a", "gw-b")


@pytest.fixture
def object_store(request):
    """SeaweedFS, a real object store; moto's model of S3 where SeaweedFS is not installed."""
    try:
        return request.getfixturevalue("seaweed_server")
    except pytest.skip.Exception:
        return request.getfixturevalue("s3_server")


def worker_dirs(root, pg_url, server) -> tuple[dict, str]:
    """One data directory per worker, all on one database and one bucket, sharing one key store."""
    bucket = server.new_bucket()
    keys = root / "keys"  # the key store of the workers on this machine
    keys.mkdir(mode=0o700)
    dirs = {}
    for name in WORKERS:
        data = root / name
        data.mkdir()
        (data / "keys").symlink_to(keys, target_is_directory=True)
        sqldb.bind(data, pg_url)
        configure_blobs(data, BlobConfig(f"s3://{bucket}/{PREFIX}", server.endpoint))
        init_arc(data)
        dirs[name] = data
    return dirs, bucket


def database_outage(pg_url, seconds: float) -> int:
    """Drop every gateway session and refuse new connections for `seconds`. Returns sessions dropped."""
    parts = urlsplit(pg_url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            dropped = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE datname = %s AND application_name = 'vericam-gateway'", (name,)
                                    ).fetchone()[0]
            time.sleep(seconds)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    return dropped


def test_two_workers_on_postgresql_and_s3_lose_nothing_to_a_killed_worker_or_a_database_outage(
        tmp_path, broker, pg_url, object_store, s3_env):
    dirs, bucket = worker_dirs(tmp_path, pg_url, object_store)
    configs = [add_device(dirs["gw-a"], f"cam-{i}", "site") for i in range(DEVICES)]
    s3 = object_store.client()

    # What a receipt promises, checked the moment the device gets it: the capture's rows are
    # committed and each image's object is in the bucket.
    early = []
    checker = psycopg.connect(pg_url, autocommit=True, application_name="test-checker")
    checker_lock = threading.Lock()

    def in_bucket(blob_path):
        try:
            return bool(s3.head_object(Bucket=bucket, Key=f"{PREFIX}/{key_of(blob_path)}"))
        except ClientError:
            return False

    def on_receipt(device, capture_id):
        with checker_lock:
            paths = [r[0] for r in checker.execute("SELECT blob_path FROM images WHERE device = %s AND "
                                                   "capture_id = %s", (device, capture_id))]
        present = [p for p in paths if in_bucket(p)]
        if len(present) != 3:
            early.append((device, capture_id, len(paths), len(present)))

    workers = Workers(tmp_path, broker, dirs)
    stream = CaptureStream(broker, configs, CAPTURES_PER_DEVICE, on_receipt=on_receipt)
    try:
        workers.start_all()
        stream.start()
        assert stream.wait_done(stream.total // 3, 60)
        workers.kill("gw-a")  # mid-stream: its batch was neither committed nor acknowledged
        time.sleep(2.0)
        workers.restart("gw-a")  # the same client id: the broker hands back its session

        assert stream.wait_done(2 * stream.total // 3, 60)
        stops_before = sum(workers.log_text(n).count("INGEST STOPPED") for n in WORKERS)
        assert database_outage(pg_url, 2.0) >= 2, "both workers' sessions were dropped"

        stream.join(90)
        stops = sum(workers.log_text(n).count("INGEST STOPPED") for n in WORKERS) - stops_before
        assert stops > 0, "the outage should have failed a batch and stopped ingest for a while"

        def all_stored():
            with Store.open(dirs["gw-b"]) as s:
                return len(s.captures.list()) >= len(stream.expected)

        wait_for(all_stored, 30, "every capture to be stored")
        assert workers.all_took_part(), "both workers should have taken part of the load"
        assert "session present: True" in workers.log_text("gw-a"), "the restarted worker took back its session"
    finally:
        stream.close()
        workers.stop()
        checker.close()

    assert early == [], "a receipt came before its capture was durable"
    with Store.open(dirs["gw-b"]) as store:
        captures = store.captures.list()
        images = store.images.list()
        assert {(c["device"], c["capture_id"]) for c in captures} == stream.expected
        assert len(captures) == len(stream.expected), "a capture was stored twice"
        keys = [(i["device"], i["capture_id"], i["frame_index"]) for i in images]
        assert len(keys) == len(set(keys)) == 3 * len(stream.expected)
        for i in images:
            assert store.images.read(i["id"]) == stream.frames[(i["device"], i["capture_id"], i["frame_index"])]

        # A worker killed after its PutObject and before its commit leaves an object that no row
        # names: reconciliation (run daily) finds and removes it. No row may lack its object.
        rec = reconcile(store, repair=True, min_file_age_s=0)
        assert rec.rows_without_files == [] and rec.due_rows_without_files == []
        assert len(audit.records(store, what="delete orphan file")) == len(rec.files_without_rows)
        objects = set(object_store.objects(bucket, PREFIX + "/"))
        assert objects == {f"{PREFIX}/{key_of(i['blob_path'])}" for i in images}, "one object per image"
        assert audit.verify(store).ok
    print(f"{len(stream.expected)} captures on {type(object_store).__name__}: {stream.resends} resent whole, "
          f"{stops} batches failed in the outage, {len(rec.files_without_rows)} orphan objects reconciled")


def test_workers_sharing_a_key_store_create_each_days_kek_once(tmp_path):
    """Two workers meet a new deletion day at the same moment: both wrap under the same KEK."""
    stores = [KeyStore(tmp_path / "keys"), KeyStore(tmp_path / "keys")]
    days = [f"2026-02-{d:02d}" for d in range(1, 29)]
    first, second = race(*[lambda s=s: [s.kek(day) for day in days] for s in stores])
    assert first == second and len(set(first)) == len(days)
    for s in stores:
        s.close()


def test_a_new_worker_joins_a_database_that_has_images_only_where_they_are(tmp_path, pg_url, s3_server, s3_env):
    """Adding a worker later: its data directory may point at the images' bucket, not elsewhere."""
    first = tmp_path / "gw-a"
    sqldb.bind(first, pg_url)
    bucket = s3_server.new_bucket()
    configure_blobs(first, BlobConfig(f"s3://{bucket}/{PREFIX}", s3_server.endpoint))
    add_device(first, "cam-1", "site")
    with Store.open(first) as store:
        [image, *_] = seed(store, "cam-1", ALARM)

    late = tmp_path / "gw-c"
    late.mkdir()
    (late / "keys").symlink_to(first / "keys", target_is_directory=True)
    sqldb.bind(late, pg_url)
    with pytest.raises(BlobStoreError, match="refusing to switch"):
        configure_blobs(late, BlobConfig(f"s3://{s3_server.new_bucket()}/{PREFIX}", s3_server.endpoint))
    configure_blobs(late, BlobConfig(f"s3://{bucket}/{PREFIX}", s3_server.endpoint))
    with Store.open(late) as store:
        assert store.images.read(image)[:2] == b"\xff\xd8"
