"""The store of one gateway data directory: opens the database, blob store and key store, and hands out the repositories.

Layout under the data directory:
- `vericam.sqlite`: devices, the chunk spool, captures, images, events, alarms, rejections,
  holds, users, customers, the audit trail; or, when `database.toml` names one, the same
  tables in PostgreSQL (`gateway.storage.sqldb`). Their schema: `gateway.storage.migrations`.
- `blobs/<deletion day>/<image id>.vcb`: one file per image, sealed at rest
  (`gateway.storage.at_rest`). Or the same blobs as objects in an S3-compatible bucket, when
  `blobs.toml` says so: `gateway.storage.blobstore` is the one place that knows where blobs live.
- `keys/`: the key store (`gateway.storage.keystore`), kept apart so that it can be backed up
  and destroyed apart.

What a Store offers:
- transactions, ingest batches, savepoints and the writer lock (`gateway.storage.unit_of_work`):
  `store.transaction()`, `store.batch(devices)`, `store.savepoint()`, `store.exclusive()`;
- one repository per area, each the only code that writes SQL for it:
  `store.devices`, `store.spool`, `store.captures`, `store.images`, `store.alarms`,
  `store.events`, `store.rejections`, `store.holds`, `store.users`, `store.customers`,
  `store.audit` (rows of the audit trail), `store.retention` (what is due, purges),
  `store.dc09_outbox` and `store.dc09_accounts` (forwarding alarms over SIA DC-09);
- `store.keys` (the key store) and `store.blobs` (the blob store).

Durability order for an image: blob written to a temp file, fsynced, renamed, directory fsynced
(`sync_dirs`, once per batch) -- or for S3 a PutObject that succeeded -- then the row committed
with `synchronous=FULL` (SQLite) or a synchronous commit (PostgreSQL). Only then does the
ingest acknowledge the MQTT message and send the receipt.

The writer (the ingest's one worker thread) and readers (CLI, demo, tests) each open their own
`Store`; WAL (or PostgreSQL's MVCC) lets them run side by side. Several gateway processes may
share one PostgreSQL database: unique keys with `ON CONFLICT` keep a capture stored once.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterable

from gateway.storage import migrations, sqldb
from gateway.storage.activity import Alarms, Events
from gateway.storage.audit_log import AuditLog
from gateway.storage.blobstore import BlobStore, open_blobstore
from gateway.storage.captures import Captures, Images, Spool
from gateway.storage.customers import Customers
from gateway.storage.dc09_accounts import Dc09Accounts
from gateway.storage.dc09_outbox import Dc09Outbox
from gateway.storage.devices import Devices
from gateway.storage.exports import Exports
from gateway.storage.errors import StoreError
from gateway.storage.holds import Holds
from gateway.storage.keystore import KeyStore
from gateway.storage.rejections import Rejections
from gateway.storage.retention import RetentionQueries
from gateway.storage.unit_of_work import UnitOfWork
from gateway.storage.users import Users

DB_FILE = sqldb.SQLITE_FILE

__all__ = ["Store", "StoreError", "is_initialised", "now_ms"]


def now_ms() -> int:
    return int(time.time() * 1000)


def is_initialised(data_dir: str | Path) -> bool:
    """True once `vericam gateway init` (or any Store.open) has set up this data directory."""
    data_dir = Path(data_dir)
    return (data_dir / DB_FILE).exists() or (data_dir / sqldb.CONFIG_FILE).exists()


class Store:
    """Metadata DB + blob vault + key store of one gateway data directory.

    `db` overrides where the metadata lives (a `postgresql://` URL or a SQLite path); by
    default it is the URL in DATA/database.toml, else DATA/vericam.sqlite. Raises
    `sqldb.DatabaseError` with a readable message if that database cannot be reached.
    `blobs` overrides where image blobs live; by default DATA/blobs.toml, else DATA/blobs.
    Opening applies any migration the database has not seen yet."""

    def __init__(self, data_dir: str | Path, *, db: str | Path | None = None, blobs: BlobStore | None = None):
        self.data_dir = Path(data_dir)
        self.db_target = sqldb.database_target(self.data_dir, db)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.blob_dir = self.data_dir / "blobs"
        self.blob_dir.mkdir(exist_ok=True)
        self.blobs = blobs if blobs is not None else open_blobstore(self.data_dir)  # DATA/blobs.toml
        try:
            self.db = sqldb.connect(self.db_target)
        except BaseException:
            self.blobs.close()
            raise
        try:
            self.keys = KeyStore.open(self.data_dir)
        except BaseException:
            self.db.close()
            self.blobs.close()
            raise
        self._uow = UnitOfWork(self.db, self.blobs, self.keys)
        self.devices = Devices(self.db, self.keys, self._uow)
        self.spool = Spool(self.db)
        self.captures = Captures(self.db, self._uow)
        self.images = Images(self.db, self.keys, self.blobs, self._uow)
        self.alarms = Alarms(self.db)
        self.events = Events(self.db)
        self.rejections = Rejections(self.db)
        self.holds = Holds(self.db)
        self.users = Users(self.db)
        self.customers = Customers(self.db)
        self.audit = AuditLog(self.db, self._uow)
        self.retention = RetentionQueries(self.db)
        self.dc09_outbox = Dc09Outbox(self.db)
        self.dc09_accounts = Dc09Accounts(self.db)
        self.exports = Exports(self.db)
        try:
            self.migrate()
        except BaseException:  # a refused schema must not leave the connection and key store open
            self.close()
            raise

    @classmethod
    def open(cls, data_dir: str | Path, *, db: str | Path | None = None, blobs: BlobStore | None = None) -> "Store":
        return cls(data_dir, db=db, blobs=blobs)

    def close(self) -> None:
        with self._uow.exclusive():
            self.db.close()
            self.keys.close()
            self.blobs.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Schema ----------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return migrations.schema_version(self.db)

    def migrate(self) -> int:
        """Apply the migrations this database has not seen yet (gateway.storage.migrations.migrate)."""
        with self._uow.exclusive():
            return migrations.migrate(self.db)

    # The unit of work (gateway.storage.unit_of_work) ------------------------------------------
    def transaction(self, durable: bool = True) -> contextlib.AbstractContextManager[None]:
        """One write transaction; blobs written in it are durable before its rows commit."""
        return self._uow.transaction(durable)

    def batch(self, device_ids: Iterable[str]) -> contextlib.AbstractContextManager[None]:
        """An ingest batch: one transaction with the named devices' rows locked and read once."""
        return self._uow.batch(device_ids)

    def savepoint(self) -> contextlib.AbstractContextManager[None]:
        """Undo one message's writes, not the whole batch's, if handling it fails."""
        return self._uow.savepoint()

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Hold the writer lock across several statements or transactions (the sweeper, an erasure)."""
        return self._uow.exclusive()

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction
