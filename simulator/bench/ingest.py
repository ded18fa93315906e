"""Gateway ingest benchmark: durable images per second against raw MQTT throughput of the same payloads.

The load is real protocol traffic: sealed captures of one ~40 KB frame each, from many
provisioned devices, chunked and enveloped as devices send them (built with the gateway's
own protocol code, so the simulator never imports firmware). It is published as fast as
the broker takes it, and measured twice in the same run:

- baseline: paho -> Mosquitto -> paho (MQTT 5, QoS 1), the same messages, nothing stored;
- gateway:  paho -> Mosquitto -> `vericam gateway run` worker(s), every capture verified,
  opened, re-encrypted at rest and durable (fsync, commit) before its PUBACK.

The gateway keeps its metadata in SQLite and its images in files unless `db` names a
PostgreSQL server (each run gets a scratch database on it, created and dropped here, so its
role needs CREATEDB) and `blobs` an S3 bucket (each run writes under a prefix of its own and
deletes what it wrote). The workers of a run share one data directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt

from gateway.storage import sqldb
from gateway.storage.blobstore import BlobConfig
from gateway.provisioning.devices import add_device, configure_blobs, init_arc
from gateway.storage.store import Store
from simulator.bench.e2e import percentile
from simulator.broker import Broker
from simulator.fake_device import FakeDevice, fake_jpeg
from simulator.processes import stop_process

CHUNK = 2048
FRAME_BYTES = 40 * 1024


def build_load(data: Path, devices: int, captures: int) -> list[list[tuple[str, bytes, bytes]]]:
    """Per capture: its messages as (topic, payload, capture id). Devices take turns."""
    fakes = [FakeDevice(add_device(data, f"bench-{i}", "bench-site"), chunk_size=CHUNK) for i in range(devices)]
    out = []
    now = int(time.time())
    for k in range(captures):
        dev = fakes[k % devices]
        cid, sealed = dev.seal([fake_jpeg(FRAME_BYTES)], captured_at=now)
        out.append([(topic, payload, cid) for topic, payload in dev.chunk_messages(cid, sealed, os.urandom(8), now)])
    return out


def clear_blobs(data: Path) -> None:
    """Delete what a run wrote to the object store (its own prefix)."""
    with Store.open(data) as s:
        s.blobs.delete([info.key for info in s.blobs.list()])


class Publisher:
    """Publishes every message at QoS 1 as fast as the broker acknowledges; notes when each
    capture's last chunk was acknowledged by the broker."""

    def __init__(self, broker: Broker, inflight: int = 64):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, load) -> dict[bytes, float]:
        last_sent: dict[bytes, float] = {}
        infos = []
        for msgs in load:
            for topic, payload, cid in msgs:
                info = self.client.publish(topic, payload, qos=1)
                infos.append((info, cid))
        for info, cid in infos:
            info.wait_for_publish(60)
            last_sent[cid] = time.time()
        return last_sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def baseline(broker: Broker, load) -> dict:
    total = sum(len(m) for m in load)
    got = threading.Event()
    received = [0]

    def on_message(_c, _u, _m):
        received[0] += 1
        if received[0] >= total:
            got.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{time.monotonic_ns()}",
                      protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("vc/v1/+/up/#", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    pub = Publisher(broker)
    t0 = time.perf_counter()
    pub.publish(load)
    ok = got.wait(300)
    elapsed = time.perf_counter() - t0
    pub.close()
    sub.disconnect()
    sub.loop_stop()
    if not ok:
        raise RuntimeError(f"baseline: {received[0]} of {total} messages arrived")
    return {"seconds": round(elapsed, 3), "images_per_s": round(len(load) / elapsed, 1),
            "messages_per_s": round(total / elapsed, 1)}


def gateway_run(broker: Broker, data: Path, load, workers: int, log_dir: Path) -> dict:
    procs = []
    for w in range(workers):
        log = open(log_dir / f"gw-{workers}-{w}.log", "ab")
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "gateway", "run", "--data", str(data), "--broker",
             f"{broker.host}:{broker.port}", "--client-id", f"bench-gw-{workers}-{w}", "--sweep-interval", "3600"],
            stdout=log, stderr=log), log))
    try:
        deadline = time.monotonic() + 30
        for w in range(workers):
            path = log_dir / f"gw-{workers}-{w}.log"
            while "gateway running" not in path.read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gateway worker {w} did not start: {path.read_text()[-1500:]}")
                time.sleep(0.05)
        with Store.open(data) as s:  # one reader connection for the whole run
            before = s.captures.count()
            pub = Publisher(broker)
            t0 = time.perf_counter()
            last_sent = pub.publish(load)
            expected = {m[0][2].hex() for m in load}
            deadline = time.monotonic() + 300
            while s.captures.count() - before < len(load) and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            pub.close()
            rows = s.captures.list()
            rejected = s.rejections.counts()
        ours = [r for r in rows if r["capture_id"] in expected]
        latencies = []
        for r in ours:
            sent = last_sent.get(bytes.fromhex(r["capture_id"]))
            if sent and r.get("stored_at_ms"):
                latencies.append(r["stored_at_ms"] - sent * 1000)
        stored_ids = [r["capture_id"] for r in ours if r.get("status", "stored") == "stored"]
        return {
            "workers": workers,
            "seconds": round(elapsed, 3),
            "images_per_s": round(len(set(stored_ids)) / elapsed, 1),
            "broker_to_durable_ms": {"p50": round(percentile(latencies, 50), 1),
                                     "p99": round(percentile(latencies, 99), 1)},
            "lost": len(expected - set(stored_ids)),
            "duplicates": len(stored_ids) - len(set(stored_ids)),
            "rejected": rejected,  # e.g. too_many_captures: more captures per device than it may have open
        }
    finally:
        for proc, log in procs:
            stop_process(proc, 30)
            log.close()


class ScratchDatabase:
    """A database of its own for one run on the PostgreSQL server of `url`, dropped on exit."""

    def __init__(self, url: str):
        self.admin_url = sqldb.check_url(url, allow_password=False)
        self.name = f"vericam_bench_{os.urandom(6).hex()}"
        self.url = urlunsplit(urlsplit(url)._replace(path=f"/{self.name}"))

    def __enter__(self) -> str:
        import psycopg

        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.Error as exc:
            raise sqldb.DatabaseError(f"cannot create a scratch database on {sqldb.redact(self.admin_url)}: "
                                      f"{' '.join(str(exc).split())}; the role needs CREATEDB") from None
        return self.url

    def __exit__(self, *exc) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def engines(db: str | None, blobs: str | None) -> str:
    """What the runs store into, for the report: e.g. `postgresql+files`."""
    return f"{'postgresql' if db else 'sqlite'}+{'s3' if blobs else 'files'}"


def run_ingest(captures: int = 300, devices: int = 100, workers: tuple[int, ...] = (1, 2),
               db: str | None = None, blobs: str | None = None, s3_endpoint: str | None = None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="vericam-bench-ingest-"))
    try:
        result = {"benchmark": "ingest", "captures": captures, "devices": devices, "storage": engines(db, blobs),
                  "frame_bytes": FRAME_BYTES, "chunk_bytes": CHUNK, "runs": []}
        base = None
        for n in workers:
            # A fresh broker for each worker count: the persistent sessions of the previous
            # run's workers would stay in the share group and take their share of the chunks
            # (the pitfall described in docs/OPERATING.md).
            with Broker(root / f"broker-{n}") as broker, contextlib.ExitStack() as scratch:
                data = root / f"gw-{n}"
                if db:
                    sqldb.bind(data, scratch.enter_context(ScratchDatabase(db)))
                if blobs:
                    configure_blobs(data, BlobConfig(f"{blobs.rstrip('/')}/bench-{os.urandom(4).hex()}",
                                                     s3_endpoint))
                    scratch.callback(clear_blobs, data)
                init_arc(data)
                load = build_load(data, devices, captures)
                if base is None:
                    base = baseline(broker, load)
                    result["baseline"] = base
                run = gateway_run(broker, data, load, n, root)
            run["ratio_to_baseline"] = round(run["images_per_s"] / base["images_per_s"], 3)
            result["runs"].append(run)
        if len(result["runs"]) >= 2:
            result["scaling_2_vs_1"] = round(result["runs"][1]["images_per_s"] /
                                             max(result["runs"][0]["images_per_s"], 1e-9), 2)
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)
