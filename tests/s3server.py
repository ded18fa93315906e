"""A real HTTP S3 endpoint on 127.0.0.1 for tests: moto's S3 server, stoppable and restartable.

The gateway (its own process) and the tests reach it only through boto3 over HTTP with SigV4
signatures: the client path used against AWS S3 or MinIO. moto runs in a thread of the test
process, so its buckets outlive `stop()`: stopping closes the listening socket (clients get
"connection refused", as from a store that is down) and `start()` serves the same objects
again on the same port, as a store coming back would.

What moto does not prove is written down in docs/OPERATING.md ("What the S3 tests prove").
"""

from __future__ import annotations

import logging
import threading
import uuid

# Test credentials: moto accepts any; the point is that they travel the standard AWS chain.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "vericam-test-key", "AWS_SECRET_ACCESS_KEY": "vericam-test-secret-0123456789",
               "AWS_DEFAULT_REGION": "eu-north-1"}


class MotoS3:
    def __init__(self, port: int = 0):
        self.port = port
        self._server = None
        self._thread: threading.Thread | None = None
        self._app = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def new_bucket(self) -> str:
        """A fresh bucket per test: moto's state is shared by the whole test process."""
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
