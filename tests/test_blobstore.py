"""The blob-store contract, the same for every engine: files, and S3 over HTTP, against moto's
S3 server and against SeaweedFS, a real S3-compatible object store.

Every S3 call goes through boto3 over HTTP with SigV4 to a real listening endpoint; nothing
is patched in-process."""

import os

import pytest

from gateway.storage.blobstore import (BlobConfig, BlobNotFound, BlobStoreError, FileBlobStore, S3BlobStore,
                               key_of, load_config, open_blobstore, path_of)

DAY = "2026-03-14"


@pytest.fixture(params=["file", "moto", "seaweedfs"])
def blobs(request, tmp_path):
    if request.param == "file":
        store = FileBlobStore(tmp_path / "blobs")
    else:
        server = request.getfixturevalue("s3_server" if request.param == "moto" else "seaweed_server")
        request.getfixturevalue("s3_env")
        store = S3BlobStore(server.new_bucket(), "site-a/images", endpoint=server.endpoint, region="eu-north-1")
    yield store
    store.close()


def test_a_put_blob_reads_back_byte_identical_and_is_listed_under_its_day(blobs):
    large = os.urandom(60 * 1024)
    blobs.put(f"{DAY}/{'a' * 32}.vcb", large)
    blobs.put(f"{DAY}/{'b' * 32}.vcb", b"VCB1small")
    blobs.put(f"2026-03-15/{'c' * 32}.vcb", b"VCB1next day")
    blobs.sync()

    assert blobs.get(f"{DAY}/{'a' * 32}.vcb") == large
    assert blobs.exists(f"{DAY}/{'b' * 32}.vcb")
    assert not blobs.exists(f"{DAY}/{'d' * 32}.vcb")
    assert [i.key for i in blobs.list(DAY + "/")] == [f"{DAY}/{'a' * 32}.vcb", f"{DAY}/{'b' * 32}.vcb"]
    assert len(list(blobs.list())) == 3
    assert all(i.modified_s > 0 for i in blobs.list())


def test_deleting_a_day_by_prefix_leaves_the_other_days_and_is_idempotent(blobs):
    keys = [f"{DAY}/{i:032x}.vcb" for i in range(5)]
    for k in keys:
        blobs.put(k, b"VCB1" + k.encode())
    blobs.put(f"2026-03-15/{'e' * 32}.vcb", b"VCB1keep")
    blobs.sync()

    assert blobs.delete(i.key for i in blobs.list(DAY + "/")) == 5
    assert list(blobs.list(DAY + "/")) == []
    assert blobs.get(f"2026-03-15/{'e' * 32}.vcb") == b"VCB1keep"
    assert blobs.delete(keys) == 5  # again: already gone is fine
    assert blobs.delete([]) == 0


def test_a_missing_blob_is_a_clear_error_not_empty_bytes(blobs):
    with pytest.raises(BlobNotFound, match="missing"):
        blobs.get(f"{DAY}/{'f' * 32}.vcb")


def test_keys_that_escape_the_store_are_refused(blobs):
    for bad in ("../x.vcb", "/etc/passwd", "", f"{DAY}/"):
        with pytest.raises(BlobStoreError):
            blobs.put(bad, b"x")


def test_s3_deletes_more_than_one_request_can_name(s3_server, s3_env):
    """DeleteObjects takes at most 1000 keys: 1100 blobs of a day go in two requests."""
    store = S3BlobStore(s3_server.new_bucket(), "", endpoint=s3_server.endpoint)
    keys = [f"{DAY}/{i:032x}.vcb" for i in range(1100)]
    calls = []
    real = store.client.delete_objects
    store.client.delete_objects = lambda **kw: calls.append(len(kw["Delete"]["Objects"])) or real(**kw)
    for k in keys[::100] + keys[-1:]:  # a few real ones; naming the absent ones too is allowed
        store.put(k, b"VCB1")
    assert len(list(store.list())) == 12
    assert store.delete(keys) == 1100
    assert calls == [1000, 100]
    assert list(store.list()) == []


def test_s3_objects_sit_under_the_prefix_as_day_slash_image(s3_server, s3_env):
    bucket = s3_server.new_bucket()
    store = S3BlobStore(bucket, "/arc-1/", endpoint=s3_server.endpoint)
    store.put(f"{DAY}/{'a' * 32}.vcb", b"VCB1")
    assert list(s3_server.objects(bucket)) == [f"arc-1/{DAY}/{'a' * 32}.vcb"]


def test_an_unreachable_endpoint_a_missing_bucket_and_a_bad_url_are_clear_errors(s3_server, s3_env, tmp_path):
    down = S3BlobStore("vericam-x", "", endpoint="http://127.0.0.1:9", attempts=1)
    with pytest.raises(BlobStoreError, match="unreachable"):
        down.put(f"{DAY}/{'a' * 32}.vcb", b"VCB1")
    with pytest.raises(BlobStoreError, match="unreachable"):
        down.check()
    missing = S3BlobStore("vericam-no-such-bucket", "", endpoint=s3_server.endpoint, attempts=1)
    with pytest.raises(BlobStoreError, match="does not exist"):
        missing.check()
    with pytest.raises(BlobStoreError, match="does not exist"):
        missing.put(f"{DAY}/{'a' * 32}.vcb", b"VCB1")
    for url, endpoint in [("ftp://bucket/x", None), ("s3://Bad_Bucket/x", None),
                          ("s3://key:secret@bucket/x", None), ("s3://bucket/x", "localhost:9000")]:
        with pytest.raises(BlobStoreError):
            BlobConfig(url, endpoint).validate()


def test_the_engine_is_recorded_without_credentials_and_the_file_default_is_unchanged(tmp_path, s3_env):
    assert isinstance(open_blobstore(tmp_path), FileBlobStore)
    assert open_blobstore(tmp_path).root == tmp_path / "blobs"  # the layout of existing data dirs
    from gateway.storage.blobstore import save_config

    save_config(tmp_path, BlobConfig("s3://vericam-images/arc-1", "http://127.0.0.1:9000", "eu-north-1"))
    text = (tmp_path / "blobs.toml").read_text()
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in text and s3_env["AWS_ACCESS_KEY_ID"] not in text
    assert load_config(tmp_path).url == "s3://vericam-images/arc-1"
    store = open_blobstore(tmp_path)
    assert isinstance(store, S3BlobStore) and store.describe() == "s3://vericam-images/arc-1/ at http://127.0.0.1:9000"
    assert key_of(path_of(f"{DAY}/x.vcb")) == f"{DAY}/x.vcb"


def test_a_credentials_file_is_used_and_never_shown(s3_server, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    creds = tmp_path / "s3.credentials"
    creds.write_text("[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = file-secret-xyz\n")
    store = S3BlobStore(s3_server.new_bucket(), "", endpoint=s3_server.endpoint, credentials_file=creds)
    store.put(f"{DAY}/{'a' * 32}.vcb", b"VCB1")  # signed with the file's key
    creds.write_text("[other]\n")
    with pytest.raises(BlobStoreError, match=r"\[default\]") as err:
        S3BlobStore("vericam-x", "", endpoint=s3_server.endpoint, credentials_file=creds)
    assert "file-secret-xyz" not in str(err.value)


def test_wrong_credentials_are_refused_by_a_real_store_with_a_clear_error(seaweed_server, s3_env, monkeypatch):
    """moto takes any credentials; SeaweedFS checks the SigV4 signature, as S3 and MinIO do."""
    bucket = seaweed_server.new_bucket()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = S3BlobStore(bucket, "", endpoint=seaweed_server.endpoint, attempts=1)
    with pytest.raises(BlobStoreError, match="denied") as err:
        store.check()
    with pytest.raises(BlobStoreError, match="denied"):
        store.put(f"{DAY}/{'a' * 32}.vcb", b"VCB1")
    assert "not-the-secret" not in str(err.value) and s3_env["AWS_SECRET_ACCESS_KEY"] not in str(err.value)
    assert seaweed_server.objects(bucket) == {}
