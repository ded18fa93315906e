"""Where sealed image bytes live: one small interface, a file engine and an S3-compatible engine.

The store (`gateway.storage.store`) seals every image before it gets here: a blob is
`b"VCB1" || nonce || AES-256-GCM(data key, ...)`, and the data key exists only wrapped under
the KEK of the image's deletion day, which lives in the key store, never beside the blobs. So
an engine only ever sees ciphertext, and destroying a day's KEK makes that day's blobs
unreadable wherever copies of them are (crypto-shredding). Nothing here logs blob bytes.

Keys are `<deletion day>/<image id>.vcb`. The day prefix groups a day's images, so a day can
be listed, audited and cleaned up by prefix. The image row keeps its historic `blob_path`,
`blobs/<key>` (`key_of` and `path_of` convert), so rows are the same whatever the engine.

Durability contract, which the ingest writer relies on to PUBACK only what is durable:
- `put(key, data)` returns once the bytes are durable. For files, the data is fsynced and
  renamed into place, and the new name becomes durable at the next `sync()`: the writer calls
  `sync()` once per batch, before the row commit (group commit: one fsync per directory per
  batch, not per image). For S3, a successful PutObject is already durable, and `sync()` does
  nothing.
- Every failure is a `BlobStoreError` that says what went wrong and what to do. The writer
  then rolls the batch back and does not acknowledge it, so the broker delivers it again.

Engines are chosen by URL (`open_blobstore`): a path or `file://PATH` for files (the default is
`DATA/blobs`, the layout every existing data directory has), or `s3://BUCKET/PREFIX` with an
endpoint for any S3-compatible store (AWS S3, MinIO, Ceph RGW, Garage, SeaweedFS). The choice
is recorded in `DATA/blobs.toml` (no credentials in it), so every process that opens the data
directory (gateway, console, CLI) finds the images in the same place.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator
from urllib.parse import urlsplit

from gateway.storage.keystore import fsync_dir, write_file_durably

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "blobs.toml"
BLOB_DIR = "blobs"
S3_DELETE_BATCH = 1000  # the most keys one DeleteObjects request may name


class BlobStoreError(Exception):
    """The blob store failed; the message says what and what to do. Never carries blob bytes."""


class BlobNotFound(BlobStoreError):
    pass


@dataclass(frozen=True)
class BlobInfo:
    key: str
    modified_s: float  # epoch seconds: reconciliation skips blobs younger than a row's commit


def key_of(blob_path: str) -> str:
    """The blob key of an image row's `blob_path` (`blobs/DAY/ID.vcb` -> `DAY/ID.vcb`)."""
    parts = PurePosixPath(blob_path).parts
    return "/".join(parts[1:] if parts and parts[0] == BLOB_DIR else parts)


def path_of(key: str) -> str:
    return f"{BLOB_DIR}/{key}"


def _check_key(key: str) -> str:
    p = PurePosixPath(key)
    if not key or p.is_absolute() or ".." in p.parts or key.endswith("/"):
        raise BlobStoreError(f"not a blob key: {key!r} (expected DAY/IMAGE.vcb)")
    return key


class BlobStore:
    """The interface. `describe()` names the place for logs and errors, without credentials."""

    def describe(self) -> str:
        raise NotImplementedError

    def check(self) -> None:
        """Raise BlobStoreError unless blobs can be stored now (reachable, bucket, credentials)."""
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def sync(self) -> None:
        """Make the puts since the last sync durable; the writer calls it once per batch."""

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def delete(self, keys: Iterable[str]) -> int:
        """Delete these blobs, durably; keys already gone are fine. Returns how many were named."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob whose key starts with `prefix`, in key order."""
        raise NotImplementedError

    def discard(self, keys: Iterable[str]) -> None:
        """Best-effort removal of blobs whose rows were rolled back. A failure is left to
        reconciliation (objects without rows), never raised over the error that caused it."""
        try:
            self.delete(keys)
        except BlobStoreError:
            pass

    def tidy(self, up_to_day: str) -> None:
        """Remove what an engine keeps per day once the day is empty (file: its directory)."""

    def close(self) -> None:
        pass


# Files ---------------------------------------------------------------------------------------
class FileBlobStore(BlobStore):
    """`DATA/blobs/<day>/<image id>.vcb`: one file per image, the layout of every data dir so far."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._dirty: set[Path] = set()

    def describe(self) -> str:
        return f"files in {self.root}"

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise BlobStoreError(f"cannot write blobs to {self.root}: check its owner and mode")

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file_durably(path, data)  # its directory is fsynced once per batch, in sync()
        except OSError as exc:
            raise BlobStoreError(f"cannot write blob {key} under {self.root}: {exc.strerror or exc}; "
                                 "check the disk (full?) and its permissions") from exc
        self._dirty.add(path.parent)

    def sync(self) -> None:
        try:
            for d in sorted(self._dirty):
                fsync_dir(d)
            if self._dirty:
                fsync_dir(self.root)
        except OSError as exc:
            raise BlobStoreError(f"cannot fsync the blob directories under {self.root}: {exc}") from exc
        self._dirty.clear()

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {key} is missing from {self.root}: run `vericam retention "
                               "reconcile`") from None
        except OSError as exc:
            raise BlobStoreError(f"cannot read blob {key} under {self.root}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, keys: Iterable[str]) -> int:
        """Truncate, then unlink (space held by an open descriptor comes back), then fsync the dirs."""
        dirs, n = set(), 0
        for key in keys:
            path = self._path(key)
            n += 1
            try:
                os.truncate(path, 0)
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise BlobStoreError(f"cannot delete blob {key} under {self.root}: {exc}") from exc
            dirs.add(path.parent)
        for d in sorted(dirs):
            if d.exists():
                fsync_dir(d)
        return n

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        if not self.root.exists():
            return
        for day in sorted(self.root.iterdir()):
            if not day.is_dir():
                continue
            for f in sorted(day.iterdir()):
                key = f"{day.name}/{f.name}"
                if key.startswith(prefix) and f.is_file():
                    yield BlobInfo(key, f.stat().st_mtime)

    def tidy(self, up_to_day: str) -> None:
        for d in self.root.iterdir() if self.root.exists() else []:
            if d.is_dir() and d.name <= up_to_day:
                try:
                    d.rmdir()  # only if empty
                except OSError:
                    pass


# S3-compatible object stores -----------------------------------------------------------------
def _aws_error(exc: Exception) -> tuple[str, int]:
    """(code, HTTP status) of a botocore ClientError; ('', 0) for anything else."""
    response = getattr(exc, "response", None) or {}
    return (str(response.get("Error", {}).get("Code", "")),
            int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0))


class S3BlobStore(BlobStore):
    """Objects `PREFIX<day>/<image id>.vcb` in one bucket of an S3-compatible store, via boto3.

    Credentials come from `credentials_file` (an AWS-style INI file, `[default]` profile) if
    given, else from boto3's standard chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials, an instance role). They are never
    printed or kept in `blobs.toml`."""

    def __init__(self, bucket: str, prefix: str = "", endpoint: str | None = None, region: str | None = None,
                 credentials_file: str | Path | None = None, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 30.0, attempts: int = 3):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = endpoint
        self.region = region or "us-east-1"
        creds: dict = {}
        if credentials_file is not None:
            creds = _read_credentials(Path(credentials_file))
        config = Config(signature_version="s3v4", connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                        retries={"max_attempts": attempts, "mode": "standard"},
                        s3={"addressing_style": "path" if endpoint else "auto"})
        self.client = boto3.Session().client("s3", endpoint_url=endpoint, region_name=self.region,
                                             config=config, **creds)

    def describe(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def _fail(self, what: str, exc: Exception) -> BlobStoreError:
        """A clear error for one failed call: the message names the place, never a credential."""
        from botocore import exceptions as bx

        code, status = _aws_error(exc)
        place = self.describe()
        if isinstance(exc, bx.NoCredentialsError):
            return BlobStoreError(f"{what}: no credentials for {place}: set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, or give --s3-credentials-file")
        if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                            bx.ConnectionClosedError)):
            return BlobStoreError(f"{what}: the object store {place} is unreachable ({type(exc).__name__}); "
                                  "check the endpoint, the network and the store's health")
        if code in ("NoSuchBucket",) or (status == 404 and what.startswith("check")):
            return BlobStoreError(f"{what}: bucket {self.bucket!r} does not exist at {place}: create it "
                                  "(versioning off, see docs/OPERATING.md)")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "403") \
                or status == 403:
            return BlobStoreError(f"{what}: access to {place} denied ({code or status}): check the "
                                  "credentials and the bucket policy")
        if status >= 500:
            return BlobStoreError(f"{what}: the object store {place} failed with {status} {code}; "
                                  "retrying later")
        if code or status:
            return BlobStoreError(f"{what}: {place} answered {status} {code}")
        return BlobStoreError(f"{what}: {place}: {type(exc).__name__}: {exc}")

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise self._fail("checking the blob store", exc) from None

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=bytes(data),
                                   ContentType="application/octet-stream")
        except Exception as exc:
            raise self._fail(f"storing blob {key}", exc) from None

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:
            if _aws_error(exc)[0] in ("NoSuchKey", "404"):
                raise BlobNotFound(f"blob {key} is missing from {self.describe()}: run `vericam retention "
                                   "reconcile`") from None
            raise self._fail(f"reading blob {key}", exc) from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:
            if _aws_error(exc)[1] == 404 and _aws_error(exc)[0] != "NoSuchBucket":
                return False
            raise self._fail(f"looking up blob {key}", exc) from None

    def delete(self, keys: Iterable[str]) -> int:
        names = [self._key(k) for k in keys]
        for i in range(0, len(names), S3_DELETE_BATCH):
            batch = names[i:i + S3_DELETE_BATCH]
            try:
                out = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in batch], "Quiet": True})
            except Exception as exc:
                raise self._fail(f"deleting {len(batch)} blobs", exc) from None
            errors = [e for e in out.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise BlobStoreError(f"deleting blobs from {self.describe()}: {len(errors)} of {len(batch)} "
                                     f"failed, first {first.get('Key')}: {first.get('Code')} "
                                     f"{first.get('Message', '')}; they are still due and retried")
        return len(names)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield BlobInfo(obj["Key"][len(self.prefix):], obj["LastModified"].timestamp())
        except BlobStoreError:
            raise
        except Exception as exc:
            raise self._fail("listing blobs", exc) from None

    def close(self) -> None:
        self.client.close()


def _read_credentials(path: Path) -> dict:
    """aws_access_key_id / aws_secret_access_key (/ aws_session_token) of `[default]` in an AWS-style file."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text())
    except (OSError, configparser.Error) as exc:
        raise BlobStoreError(f"cannot read the S3 credentials file {path}: {exc.__class__.__name__}") from None
    section = parser["default"] if parser.has_section("default") else None
    if section is None or "aws_access_key_id" not in section or "aws_secret_access_key" not in section:
        raise BlobStoreError(f"the S3 credentials file {path} needs a [default] section with "
                             "aws_access_key_id and aws_secret_access_key")
    out = {"aws_access_key_id": section["aws_access_key_id"],
           "aws_secret_access_key": section["aws_secret_access_key"]}
    if section.get("aws_session_token"):
        out["aws_session_token"] = section["aws_session_token"]
    return out


# Choosing and recording the engine -----------------------------------------------------------
@dataclass(frozen=True)
class BlobConfig:
    url: str = ""                       # "" or file://...: files; s3://BUCKET/PREFIX: S3
    endpoint: str | None = None         # e.g. https://minio.arc.example:9000; None: AWS
    region: str | None = None
    credentials_file: str | None = None  # a path only; the file holds the secrets

    def validate(self) -> "BlobConfig":
        u = urlsplit(self.url) if self.url else None
        if u is None or u.scheme in ("", "file"):
            if self.endpoint or self.credentials_file:
                raise BlobStoreError("--s3-endpoint and --s3-credentials-file need --blobs s3://BUCKET/PREFIX")
            return self
        if u.scheme != "s3":
            raise BlobStoreError(f"--blobs must be a directory, file://PATH or s3://BUCKET/PREFIX, not {self.url!r}")
        if u.username or u.password or u.query or u.fragment:
            raise BlobStoreError("--blobs s3://BUCKET/PREFIX takes no credentials or query: give credentials "
                                 "in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --s3-credentials-file")
        bucket = u.netloc
        if not (3 <= len(bucket) <= 63) or not all(c.islower() or c.isdigit() or c in ".-" for c in bucket):
            raise BlobStoreError(f"--blobs: {bucket!r} is not a valid bucket name (3-63 of a-z 0-9 . -)")
        if self.endpoint:
            e = urlsplit(self.endpoint)
            if e.scheme not in ("http", "https") or not e.netloc or e.username or e.password:
                raise BlobStoreError(f"--s3-endpoint must be http(s)://HOST[:PORT] without credentials, "
                                     f"not {self.endpoint!r}")
        return self

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    def as_toml(self) -> str:
        lines = ["# Where this gateway keeps its sealed images (vericam gateway init/run --blobs).",
                 "# Credentials never go here: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the credentials file.",
                 "[blobs]"]
        for name in ("url", "endpoint", "region", "credentials_file"):
            value = getattr(self, name)
            if value:
                lines.append(f'{name} = "{_toml_escape(value)}"')
        return "\n".join(lines) + "\n"


def _toml_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def load_config(data_dir: str | Path) -> BlobConfig:
    """`DATA/blobs.toml`, or the default (files under DATA/blobs) when there is none."""
    path = Path(data_dir) / CONFIG_FILE
    if not path.exists():
        return BlobConfig()
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("blobs", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BlobStoreError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(table) - set(BlobConfig.__dataclass_fields__)
    if unknown:
        raise BlobStoreError(f"{path}: unknown settings {sorted(unknown)}")
    return BlobConfig(**table).validate()


def save_config(data_dir: str | Path, config: BlobConfig) -> None:
    path = Path(data_dir) / CONFIG_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(config.validate().as_toml(), encoding="utf-8")
    os.replace(tmp, path)


def configure(data_dir: str | Path, config: BlobConfig, has_images: bool) -> BlobConfig:
    """Record `config` for the data dir. Changing where an existing store's images live is refused:
    its rows would name blobs that are not there (move them, then edit blobs.toml by hand)."""
    config = config.validate()
    current = load_config(data_dir)
    same_place = _normal(current) == _normal(config)
    if not same_place and has_images:
        raise BlobStoreError(f"this data directory keeps its images in {current.url or 'DATA/blobs'}; "
                             f"refusing to switch to {config.url or 'DATA/blobs'} while images are stored")
    if current != config:
        save_config(data_dir, config)
    return config


def _normal(c: BlobConfig) -> tuple:
    return (c.url.rstrip("/") if c.is_s3 else "", c.endpoint if c.is_s3 else None)


def open_blobstore(data_dir: str | Path, config: BlobConfig | None = None) -> BlobStore:
    config = load_config(data_dir) if config is None else config.validate()
    if not config.is_s3:
        if config.url:
            u = urlsplit(config.url)
            return FileBlobStore(Path(u.path) if u.scheme == "file" else Path(config.url))
        return FileBlobStore(Path(data_dir) / BLOB_DIR)
    u = urlsplit(config.url)
    return S3BlobStore(u.netloc, u.path, endpoint=config.endpoint, region=config.region,
                       credentials_file=config.credentials_file)

