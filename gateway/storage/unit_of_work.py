"""The unit of work: the writer lock, transactions, ingest batches and per-message savepoints.

One `UnitOfWork` belongs to one `Store` (one database connection). Its rules:
- **The writer lock.** The ingest's worker thread and the retention sweeper share one Store;
  every transaction takes the lock, and `exclusive()` holds it across several statements or
  transactions (the sweeper's "select what is due, delete its blobs, delete its rows").
- **Blobs before rows.** A blob written inside a transaction is made durable (`sync_dirs`,
  one directory fsync per batch: group commit) before the rows that name it commit; if the
  transaction rolls back, its blobs are deleted again, so none lingers without a row.
- **The audit head.** A transaction that appended audit records has the chain's new head
  anchored in the key store right after its commit, with any checkpoint signed in it
  (gateway.governance.audit).
- **Batches.** `batch(device_ids)` is the ingest's transaction: each device row is locked and
  read once (`LockedDevices`), changed in memory, undone with a message's savepoint, and
  written back once before the commit.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterable, Iterator

from gateway.storage.blobstore import BlobStore
from gateway.storage.devices import LockedDevices
from gateway.storage.keystore import KeyStore
from gateway.storage.sqldb import Database


class UnitOfWork:
    def __init__(self, db: Database, blobs: BlobStore, keys: KeyStore):
        self.db = db
        self.blobs = blobs
        self.keys = keys
        self._lock = threading.RLock()
        self._written: list[str] = []  # blob keys put in this transaction
        self._audit_head: tuple[int, str] | None = None
        self._audit_checkpoints: list[tuple[int, int, str]] = []
        self.locked_devices: LockedDevices | None = None  # within `batch()` only

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the writer lock across several statements or transactions."""
        with self._lock:
            yield

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One write transaction; blob directories are fsynced before the commit.

        `durable=False` is for bookkeeping only: the commit may skip its own flush."""
        with self._lock:
            self._written = []
            try:
                with self.db.transaction(durable):
                    yield
                    self.sync_dirs()
                if self._audit_head is not None:  # anchor the committed chain head
                    self.keys.anchor_audit(*self._audit_head)
                for checkpoint in self._audit_checkpoints:
                    self.keys.add_audit_checkpoint(*checkpoint)
            except BaseException:
                self.blobs.discard(self._written)  # rows rolled back: their blobs must not linger
                raise
            finally:
                self._written = []
                self._audit_head = None
                self._audit_checkpoints = []

    @contextlib.contextmanager
    def batch(self, device_ids: Iterable[str]) -> Iterator[None]:
        """An ingest batch: one `transaction()` in which each device's row is locked and read
        once, and written once at the end, instead of once per message.

        The rows of `device_ids` are locked at the start in sorted order (PostgreSQL: `FOR
        UPDATE`), so two workers whose batches share devices queue rather than deadlock;
        a device not named is locked when first used. The replay window, last-seen time and
        clock flag then change in memory, are undone with a message's savepoint, and are
        written back before the commit: in the same transaction as what the messages caused."""
        with self.transaction():
            self.locked_devices = LockedDevices(self.db)
            try:
                self.locked_devices.load(sorted(set(device_ids)))
                yield
                self.locked_devices.write()
            finally:
                self.locked_devices = None

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo one message's writes, not the whole batch's, if handling it fails.

        Blobs written inside the savepoint are deleted again on the way out, the batch's
        device rows go back to what they were at the savepoint, and so do the audit head and
        checkpoints waiting for the commit (a rolled-back record is neither anchored nor signed)."""
        mark = len(self._written)
        audit_mark = (self._audit_head, len(self._audit_checkpoints))
        locked = self.locked_devices
        if locked is not None:
            locked.savepoint()
        self.db.savepoint("msg")
        try:
            yield
        except BaseException:
            self.db.rollback_to("msg")
            self.blobs.discard(self._written[mark:])
            del self._written[mark:]
            self._audit_head = audit_mark[0]
            del self._audit_checkpoints[audit_mark[1]:]
            if locked is not None:
                locked.rollback()
            raise
        self.db.release("msg")
        if locked is not None:
            locked.release()

    def put_blob(self, key: str, data: bytes) -> None:
        """Write a blob in this transaction: durable at `sync_dirs`, deleted again on rollback.

        Raises BlobStoreError if the blob store fails."""
        self._written.append(key)  # before the put: a half-done put is cleaned up on rollback too
        self.blobs.put(key, data)

    def anchor_after_commit(self, seq: int, record_hash: str) -> None:
        """Anchor this audit chain head in the key store once the transaction commits."""
        self._audit_head = (seq, record_hash)

    def checkpoint_after_commit(self, seq: int, at_ms: int, line: str) -> None:
        """Keep this signed audit checkpoint in the key store once the transaction commits."""
        self._audit_checkpoints.append((seq, at_ms, line))

    def last_audit_checkpoint(self) -> tuple[int, int] | None:
        """(seq, at_ms) of the newest audit checkpoint, waiting for this commit or kept."""
        if self._audit_checkpoints:
            return self._audit_checkpoints[-1][:2]
        return self.keys.last_audit_checkpoint()

    def sync_dirs(self) -> None:
        """Group commit: make this batch's blobs durable (files: fsync their directories) before the rows."""
        self.blobs.sync()
