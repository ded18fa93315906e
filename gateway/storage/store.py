"""The metadata store and image vault: SQL rows (SQLite or PostgreSQL), encrypted blobs, versioned schema.

Layout under the data directory:
- `vericam.sqlite`: devices, the chunk spool, captures, images, events, alarms, rejections;
  or, when `database.toml` names one, the same tables in PostgreSQL (`gateway.storage.sqldb`).
- `blobs/<deletion day>/<image id>.vcb`: one file per image, `b"VCB1" || nonce(12) ||
  AES-256-GCM(data_key, nonce, jpeg, aad=image id)`. The data key is random per image and is
  kept only wrapped under the KEK of the image's deletion day (see `gateway.storage.keystore`).
  Or the same blobs as objects `<deletion day>/<image id>.vcb` in an S3-compatible bucket,
  when `blobs.toml` says so: `gateway.storage.blobstore` is the one place that knows where blobs live.
- `keys/`: the key store, kept apart so that it can be backed up and destroyed apart.

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
import datetime as _dt
import hashlib
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Iterator

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.storage import sqldb
from gateway.storage.blobstore import BlobStore, BlobStoreError, key_of, open_blobstore
from gateway.storage.keystore import KeyStore
from gateway.protocol.envelope import ReplayWindow
from gateway.protocol.keys import DeviceKeys

DB_FILE = sqldb.SQLITE_FILE
BLOB_MAGIC = b"VCB1"


def now_ms() -> int:
    return int(time.time() * 1000)


# Ordered migrations: index i brings the schema from version i to i+1. Append, never edit,
# and append the PostgreSQL text of the same step to gateway.storage.schema_pg.PG_MIGRATIONS.
MIGRATIONS: list[str] = [
    # 1: the thin slice.
    """
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        device_key BLOB NOT NULL,          -- wrapped under the key store's master KEK
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        counter_high INTEGER NOT NULL DEFAULT -1,
        counter_bitmap TEXT NOT NULL DEFAULT '0',  -- hex: the replay window below counter_high
        status_counter INTEGER NOT NULL DEFAULT -1,  -- counter of the last status accepted (§7)
        online INTEGER,
        fw TEXT,
        last_seen_ms INTEGER,
        clock_unset INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE chunks (
        device TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        count INTEGER NOT NULL,
        total INTEGER NOT NULL,
        alarm_id TEXT NOT NULL,
        data BLOB NOT NULL,
        received_at_ms INTEGER NOT NULL,
        PRIMARY KEY (device, capture_id, idx)
    );
    CREATE TABLE captures (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        trigger TEXT,
        captured_at INTEGER,
        status TEXT NOT NULL,              -- 'stored' or 'rejected'
        reason TEXT,
        sha256 TEXT NOT NULL,              -- of the sealed capture as received
        size INTEGER NOT NULL,
        frames INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,   -- first chunk
        stored_at_ms INTEGER,              -- after the commit that made it durable
        UNIQUE (device, capture_id)
    );
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        frame_index INTEGER NOT NULL,
        frame_t INTEGER NOT NULL,
        sha256 TEXT NOT NULL,              -- of the plaintext JPEG
        size INTEGER NOT NULL,
        blob_path TEXT NOT NULL,           -- relative to the data directory
        kek_day TEXT NOT NULL,             -- deletion day: the KEK that wraps the data key
        wrapped_key BLOB NOT NULL,
        stored_at_ms INTEGER NOT NULL
    );
    CREATE INDEX images_by_capture ON images (device, capture_id);
    CREATE INDEX images_by_kek_day ON images (kek_day);
    CREATE TABLE alarms (
        device TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        code TEXT,
        t INTEGER,
        received_at_ms INTEGER NOT NULL,   -- first chunk or event that named it
        PRIMARY KEY (device, alarm_id)
    );
    CREATE TABLE alarm_captures (
        device TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        PRIMARY KEY (device, alarm_id, capture_id)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        alarm_id TEXT,
        kind TEXT NOT NULL,
        code TEXT,
        slot INTEGER,
        t INTEGER,
        clock_unset INTEGER NOT NULL DEFAULT 0,
        received_at_ms INTEGER NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX events_by_device ON events (device, received_at_ms);
    CREATE TABLE rejections (
        reason TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        last_at_ms INTEGER NOT NULL
    );
    """,
    # 2: retention, police hold, audit trail, data-subject rights (issue 6).
    """
    ALTER TABLE images ADD COLUMN delete_at_ms INTEGER;
    UPDATE images SET delete_at_ms = CAST(strftime('%s', kek_day) AS INTEGER) * 1000;
    CREATE INDEX images_by_delete_at ON images (delete_at_ms);
    ALTER TABLE images ADD COLUMN hold_id INTEGER;
    CREATE INDEX images_by_hold ON images (hold_id) WHERE hold_id IS NOT NULL;
    CREATE INDEX images_by_alarm ON images (device, alarm_id);
    CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        name TEXT,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER,               -- NULL: the relationship is open
        restricted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX customers_by_end ON customers (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
    ALTER TABLE devices ADD COLUMN customer_id TEXT REFERENCES customers (id);
    CREATE INDEX devices_by_customer ON devices (customer_id);
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'auditor', 'admin')),
        created_at_ms INTEGER NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE holds (
        id INTEGER PRIMARY KEY,
        case_ref TEXT NOT NULL,
        reason TEXT NOT NULL,
        placed_by TEXT NOT NULL,
        role_source TEXT NOT NULL,         -- 'users table' or 'asserted (no user accounts)'
        placed_at_ms INTEGER NOT NULL,
        target TEXT NOT NULL,              -- the image or alarm named when placing it
        released_at_ms INTEGER,
        released_by TEXT,
        release_reason TEXT
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        who TEXT NOT NULL,
        what TEXT NOT NULL,
        why TEXT NOT NULL,
        subject TEXT,
        key_id TEXT,
        content_hash TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 3: operator console (issue 7): console passwords, and how each alarm was handled.
    """
    ALTER TABLE users ADD COLUMN password_hash TEXT;   -- argon2id; NULL: cannot log in to the console
    CREATE TABLE alarm_handling (
        device TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('acknowledged', 'closed')),
        acknowledged_by TEXT,
        acknowledged_at_ms INTEGER,
        outcome TEXT,                      -- set when closed: verified burglary, false alarm, ...
        note TEXT,
        closed_by TEXT,
        closed_at_ms INTEGER,
        PRIMARY KEY (device, alarm_id)
    );
    """,
    # 4: supervision (PROTOCOL section 11): when a device's silence raised supervision_lost.
    """
    ALTER TABLE devices ADD COLUMN supervision_lost_ms INTEGER;  -- NULL: supervised and heard
    """,
    # 5: an event sealed twice (PROTOCOL section 6, `event_id`) is stored once.
    """
    ALTER TABLE events ADD COLUMN event_id TEXT;                 -- NULL: the device sent none
    CREATE UNIQUE INDEX events_by_event_id ON events (device, event_id);
    """,
]


def day_start_ms(day: str) -> int:
    """Epoch ms of 00:00 UTC of an ISO day (or a `DAY/hold-N` KEK name): when its images are due."""
    d = _dt.date.fromisoformat(day[:10])
    return int(_dt.datetime(d.year, d.month, d.day, tzinfo=_dt.timezone.utc).timestamp() * 1000)


def is_initialised(data_dir: str | Path) -> bool:
    """True once `vericam gateway init` (or any Store.open) has set up this data directory."""
    data_dir = Path(data_dir)
    return (data_dir / DB_FILE).exists() or (data_dir / sqldb.CONFIG_FILE).exists()


class StoreError(Exception):
    pass


class Store:
    """Metadata DB + blob vault + key store of one gateway data directory.

    `db` overrides where the metadata lives (a `postgresql://` URL or a SQLite path); by
    default it is the URL in DATA/database.toml, else DATA/vericam.sqlite. Raises
    `sqldb.DatabaseError` with a readable message if that database cannot be reached.
    `blobs` overrides where image blobs live; by default DATA/blobs.toml, else DATA/blobs."""

    def __init__(self, data_dir: str | Path, retention_days: int = 7, db: str | Path | None = None,
                 blobs: BlobStore | None = None):
        self.data_dir = Path(data_dir)
        self.db_target = sqldb.database_target(self.data_dir, db)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.blob_dir = self.data_dir / "blobs"
        self.blob_dir.mkdir(exist_ok=True)
        self.blobs = blobs if blobs is not None else open_blobstore(self.data_dir)  # DATA/blobs.toml
        self.retention_days = retention_days
        self._lock = threading.RLock()
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
        self._written: list[str] = []  # blob keys put in this transaction
        self._key_cache: dict[bytes, DeviceKeys] = {}
        self._audit_head: tuple[int, str] | None = None  # set by gateway.governance.audit.append
        self._devices: dict[str, _DeviceRow | None] | None = None  # within `batch()` only
        self._undo: dict[str, tuple] | None = None  # device rows as they were at the savepoint
        try:
            self.migrate()
        except BaseException:  # a refused schema must not leave the connection and key store open
            self.close()
            raise

    @classmethod
    def open(cls, data_dir: str | Path, retention_days: int = 7, db: str | Path | None = None,
             blobs: BlobStore | None = None) -> "Store":
        return cls(data_dir, retention_days, db, blobs)

    def close(self) -> None:
        with self._lock:
            self.db.close()
            self.keys.close()
            self.blobs.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Schema --------------------------------------------------------------------------------
    def schema_version(self) -> int:
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
        return row[0] or 0

    def migrations(self) -> list[str]:
        """This engine's text of the numbered migrations (the same numbers on both engines)."""
        if self.db.engine == "postgresql":
            from gateway.storage.schema_pg import PG_MIGRATIONS

            return PG_MIGRATIONS
        return MIGRATIONS

    def migrate(self) -> int:
        """Apply the migrations this DB has not seen yet, all in one transaction.

        Two gateways starting at once on one PostgreSQL database take turns on an advisory
        lock, so the second finds the schema done; on SQLite BEGIN IMMEDIATE does the same."""
        migrations = self.migrations()
        with self._lock, self.db.transaction():
            self.db.lock("migrate")
            version = self.schema_version()
            if version > len(migrations):
                raise StoreError(f"database schema {version} is newer than this gateway knows "
                                 f"({len(migrations)}): upgrade the gateway")
            for i in range(version, len(migrations)):
                self.db.executescript(migrations[i])
                self.db.execute("INSERT INTO schema_version (version) VALUES (?)", (i + 1,))
            return len(migrations)

    # Transactions --------------------------------------------------------------------------
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
                if self._audit_head is not None:  # anchor the committed chain head (gateway.governance.audit)
                    self.keys.anchor_audit(*self._audit_head)
            except BaseException:
                self.blobs.discard(self._written)  # rows rolled back: their blobs must not linger
                raise
            finally:
                self._written = []
                self._audit_head = None

    @contextlib.contextmanager
    def batch(self, device_ids) -> Iterator[None]:
        """An ingest batch: one `transaction()` in which each device's row is locked and read
        once, and written once at the end, instead of once per message.

        The rows of `device_ids` are locked at the start in sorted order (PostgreSQL: `FOR
        UPDATE`), so two workers whose batches share devices queue rather than deadlock;
        a device not named is locked when first used. The replay window, last-seen time and
        clock flag then change in memory, are undone with a message's savepoint, and are
        written back before the commit: in the same transaction as what the messages caused."""
        with self.transaction():
            self._devices = {}
            try:
                self._load_devices(sorted(set(device_ids)))
                yield
                self._write_devices()
            finally:
                self._devices = None
                self._undo = None

    def _load_devices(self, device_ids: list[str]) -> None:
        for i in range(0, len(device_ids), 500):
            part = device_ids[i:i + 500]
            for device_id in part:
                self._devices[device_id] = None  # unknown unless a row says otherwise
            rows = self.db.execute(
                "SELECT id, device_key, revoked, counter_high, counter_bitmap, last_seen_ms, clock_unset "
                f"FROM devices WHERE id IN ({', '.join('?' * len(part))}) ORDER BY id" + self.db.for_update,
                part).fetchall()
            for row in rows:
                self._devices[row["id"]] = _DeviceRow(row)

    def _device_row(self, device_id: str) -> "_DeviceRow | None":
        """The batch's copy of a device row, remembered for undo by the current savepoint."""
        if device_id not in self._devices:
            self._load_devices([device_id])
        row = self._devices[device_id]
        if row is not None and self._undo is not None and device_id not in self._undo:
            self._undo[device_id] = row.snapshot()
        return row

    def _write_devices(self) -> None:
        changed = [(r.window.high, format(r.window.bitmap, "x"), r.last_seen_ms, r.clock_unset, device_id)
                   for device_id, r in sorted(self._devices.items()) if r is not None and r.changed]
        if changed:
            self.db.executemany("UPDATE devices SET counter_high = ?, counter_bitmap = ?, last_seen_ms = ?, "
                                "clock_unset = ? WHERE id = ?", changed)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo one message's writes, not the whole batch's, if handling it fails.

        Blob files written inside the savepoint are removed again on the way out."""
        mark = len(self._written)
        outer_undo, self._undo = self._undo, ({} if self._devices is not None else None)
        self.db.savepoint("msg")
        try:
            yield
        except BaseException:
            self.db.rollback_to("msg")
            self.blobs.discard(self._written[mark:])
            del self._written[mark:]
            for device_id, before in (self._undo or {}).items():  # the batch's device rows too
                self._devices[device_id].restore(before)
            self._undo = outer_undo
            raise
        self.db.release("msg")
        if outer_undo is not None:  # an enclosing savepoint may still undo these changes
            for device_id, before in self._undo.items():
                outer_undo.setdefault(device_id, before)
        self._undo = outer_undo

    def sync_dirs(self) -> None:
        """Group commit: make this batch's blobs durable (files: fsync their directories) before the rows."""
        self.blobs.sync()

    # Devices -------------------------------------------------------------------------------
    def add_device(self, device_id: str, site: str, device_key: bytes) -> None:
        wrapped = self.keys.wrap_device_key(device_key)
        with self.transaction():
            if self.db.execute("SELECT 1 FROM devices WHERE id = ?", (device_id,)).fetchone():
                raise StoreError(f"device {device_id} is already provisioned: revoke it or pick another id")
            self.db.execute("INSERT INTO devices (id, site, device_key, created_at_ms) VALUES (?, ?, ?, ?)",
                            (device_id, site, wrapped, now_ms()))
            self._audit_config("device provisioned", device_id, {"site": site})

    def revoke_device(self, device_id: str) -> bool:
        with self.transaction():
            done = self.db.execute("UPDATE devices SET revoked = 1 WHERE id = ?", (device_id,)).rowcount > 0
            if done:
                self._audit_config("device revoked", device_id, {})
            return done

    def _audit_config(self, why: str, device_id: str, detail: dict) -> None:
        """Configuration changes made from the command line: the OS user is who (gateway.governance.audit)."""
        import getpass

        from gateway.governance import audit

        audit.append(self, f"os:{getpass.getuser()}", "configure device", why, at_ms=now_ms(),
                     subject=device_id, detail=detail)

    def device_keys(self, device_id: str) -> DeviceKeys | None:
        """The device's derived keys, or None if it is unknown or revoked."""
        if self._devices is not None:
            row = self._device_row(device_id)
        else:
            row = self.db.execute("SELECT device_key, revoked FROM devices WHERE id = ?", (device_id,)).fetchone()
        if row is None or row["revoked"]:
            return None
        wrapped = bytes(row["device_key"])
        keys = self._key_cache.get(wrapped)
        if keys is None:
            keys = DeviceKeys.derive(self.keys.unwrap_device_key(wrapped))
            self._key_cache[wrapped] = keys
        return keys

    def replay_window(self, device_id: str) -> ReplayWindow:
        # Locked till the commit on PostgreSQL: two gateways must not both accept one counter.
        if self._devices is not None:
            row = self._device_row(device_id)
            return row.window if row is not None else ReplayWindow()
        row = self.db.execute("SELECT counter_high, counter_bitmap FROM devices WHERE id = ?" + self.db.for_update,
                              (device_id,)).fetchone()
        return ReplayWindow(row[0], int(row[1], 16)) if row else ReplayWindow()

    def save_replay_window(self, device_id: str, window: ReplayWindow) -> None:
        if self._devices is not None:
            row = self._device_row(device_id)
            if row is not None:
                row.window, row.changed = window, True
            return
        self.db.execute("UPDATE devices SET counter_high = ?, counter_bitmap = ? WHERE id = ?",
                        (window.high, format(window.bitmap, "x"), device_id))

    def last_status_counter(self, device_id: str) -> int:
        row = self.db.execute("SELECT status_counter FROM devices WHERE id = ?", (device_id,)).fetchone()
        return row[0] if row else -1

    def touch_device(self, device_id: str, at_ms: int, clock_unset: bool = False) -> None:
        if self._devices is not None:
            row = self._device_row(device_id)
            if row is not None:
                row.last_seen_ms = max(row.last_seen_ms or 0, at_ms)
                row.clock_unset, row.changed = int(clock_unset), True
            return
        self.db.execute("UPDATE devices SET last_seen_ms = greatest(coalesce(last_seen_ms, 0), ?), "
                        "clock_unset = ? WHERE id = ?", (at_ms, int(clock_unset), device_id))

    def set_status(self, device_id: str, online: bool, fw: str | None, at_ms: int, counter: int) -> None:
        self.db.execute("UPDATE devices SET online = ?, fw = coalesce(?, fw), status_counter = ? WHERE id = ?",
                        (int(online), fw, counter, device_id))
        self.touch_device(device_id, at_ms)

    def list_devices(self) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT id, site, revoked, online, fw, last_seen_ms, clock_unset, counter_high, "
            "created_at_ms FROM devices ORDER BY id")]

    # Rejections ----------------------------------------------------------------------------
    def count_rejection(self, reason: str, at_ms: int | None = None) -> None:
        self.db.execute("INSERT INTO rejections (reason, count, last_at_ms) VALUES (?, 1, ?) "
                        "ON CONFLICT (reason) DO UPDATE SET count = rejections.count + 1, "
                        "last_at_ms = excluded.last_at_ms",
                        (reason, at_ms or now_ms()))

    def rejection_counts(self) -> dict[str, int]:
        return {r["reason"]: r["count"] for r in self.db.execute("SELECT reason, count FROM rejections")}

    # Chunk spool ---------------------------------------------------------------------------
    def spool_state(self, device: str, capture_id: str) -> dict | None:
        """count/total/alarm of the first chunk, number and bytes spooled, first arrival."""
        row = self.db.execute(_SPOOL_STATE, (device, capture_id)).fetchone()
        return dict(row) if row and row["have"] else None

    def spool_chunk_unless_decided(self, device: str, capture_id: str, idx: int, count: int, total: int,
                                   alarm_id: str, data: bytes, at_ms: int) -> tuple[dict | None, bool, dict | None]:
        """Spool a chunk unless its capture was already stored or rejected, in one round trip.

        Returns (the capture's row if it was decided, whether this chunk was new to the spool,
        the spool state after it as `spool_state()`). The three statements run in this order
        in one pipeline; the insert checks for the capture row itself, so a capture that
        another gateway commits in between is not spooled again."""
        decided, inserted, state = self.db.execute_together([
            ("SELECT * FROM captures WHERE device = ? AND capture_id = ?", (device, capture_id)),
            ("INSERT INTO chunks (device, capture_id, idx, count, total, alarm_id, data, received_at_ms) "
             "SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS "
             "(SELECT 1 FROM captures WHERE device = ? AND capture_id = ?) "
             "ON CONFLICT (device, capture_id, idx) DO NOTHING RETURNING idx",
             (device, capture_id, idx, count, total, alarm_id, data, at_ms, device, capture_id)),
            (_SPOOL_STATE, (device, capture_id))])
        return (dict(decided[0]) if decided else None, bool(inserted),
                dict(state[0]) if state and state[0]["have"] else None)

    def spooled_captures(self, device: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT capture_id FROM chunks WHERE device = ?",
                                              (device,))]

    def spool_assemble(self, device: str, capture_id: str) -> bytes:
        return b"".join(bytes(r[0]) for r in self.db.execute(
            "SELECT data FROM chunks WHERE device = ? AND capture_id = ? ORDER BY idx", (device, capture_id)))

    def spool_drop(self, device: str, capture_id: str) -> None:
        self.db.execute("DELETE FROM chunks WHERE device = ? AND capture_id = ?", (device, capture_id))

    def expired_spool(self, older_than_ms: int) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT device, capture_id FROM chunks GROUP BY device, capture_id "
            "HAVING min(received_at_ms) < ?", (older_than_ms,))]

    # Alarms and events ---------------------------------------------------------------------
    def note_alarm(self, device: str, alarm_id: str, at_ms: int, code: str | None = None,
                   t: int | None = None) -> dict:
        self.db.execute("INSERT INTO alarms (device, alarm_id, code, t, received_at_ms) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (device, alarm_id) DO UPDATE SET code = coalesce(excluded.code, alarms.code), "
                        "t = coalesce(excluded.t, alarms.t)", (device, alarm_id, code, t, at_ms))
        return dict(self.db.execute("SELECT * FROM alarms WHERE device = ? AND alarm_id = ?",
                                    (device, alarm_id)).fetchone())

    def link_alarm_capture(self, device: str, alarm_id: str, capture_id: str) -> None:
        self.db.execute("INSERT INTO alarm_captures (device, alarm_id, capture_id) VALUES (?, ?, ?) "
                        "ON CONFLICT (device, alarm_id, capture_id) DO NOTHING", (device, alarm_id, capture_id))

    def add_event(self, device: str, event: dict, at_ms: int, clock_unset: bool) -> int | None:
        """Store one activity event; its row id, or None if its `event_id` is stored already.

        A device seals an event again when its first envelope may have gone stale on the way
        (PROTOCOL section 6); when that first copy did arrive, the second is the same event.
        Events without an `event_id` (older firmware, the gateway's own) are always stored."""
        slot = event.get("slot")
        t = event.get("t")
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 64:
            event_id = None
        row = self.db.execute(
            "INSERT INTO events (device, alarm_id, kind, code, slot, t, clock_unset, received_at_ms, json, event_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, event_id) DO NOTHING RETURNING id",
            (device, _str_or_none(event.get("alarm_id")), str(event["kind"]), _str_or_none(event.get("code")),
             slot if isinstance(slot, int) and not isinstance(slot, bool) else None,
             t if isinstance(t, int) and not isinstance(t, bool) else None,
             int(clock_unset), at_ms, json.dumps(event, separators=(",", ":"), sort_keys=True),
             event_id)).fetchone()
        return row[0] if row else None

    # Captures and images -------------------------------------------------------------------
    def capture(self, device: str, capture_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM captures WHERE device = ? AND capture_id = ?",
                              (device, capture_id)).fetchone()
        return dict(row) if row else None

    def deletion_day(self, alarm_at_ms: int) -> str:
        day = _dt.datetime.fromtimestamp(alarm_at_ms / 1000, _dt.timezone.utc).date()
        return (day + _dt.timedelta(days=self.retention_days)).isoformat()

    def put_image(self, device: str, capture_id: str, alarm_id: str, frame_index: int, frame_t: int,
                  jpeg: bytes, kek_day: str, at_ms: int) -> str:
        """Encrypt one image under a fresh data key, write its blob durably, insert its row."""
        image_id = secrets.token_hex(16)
        data_key = secrets.token_bytes(32)
        nonce = secrets.token_bytes(12)
        blob = BLOB_MAGIC + nonce + AESGCM(data_key).encrypt(nonce, jpeg, image_id.encode())
        key = f"{kek_day}/{image_id}.vcb"
        self._write_blob(key, blob)
        rel = Path("blobs") / key  # the row's blob_path: `blobs/<key>` whatever the engine
        wrapped = self.keys.wrap(kek_day, data_key)
        self.db.execute(
            "INSERT INTO images (id, device, capture_id, alarm_id, frame_index, frame_t, sha256, size, "
            "blob_path, kek_day, wrapped_key, stored_at_ms, delete_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (image_id, device, capture_id, alarm_id, frame_index, frame_t, hashlib.sha256(jpeg).hexdigest(),
             len(jpeg), str(rel), kek_day, wrapped, at_ms, day_start_ms(kek_day)))
        return image_id

    def _write_blob(self, key: str, data: bytes) -> None:
        """Durable when it returns (a file's name at `sync_dirs`); raises BlobStoreError otherwise."""
        self._written.append(key)  # before the put: a half-done put is cleaned up on rollback too
        self.blobs.put(key, data)

    def add_capture(self, device: str, capture_id: str, alarm_id: str, trigger: str | None,
                    captured_at: int | None, status: str, reason: str | None, sha256: str, size: int,
                    frames: int, received_at_ms: int) -> int | None:
        """Claim (device, capture_id) with this outcome; None if it is already claimed.

        The unique key decides, not a read before the write: when two gateways finish the
        same capture at once, the second waits for the first's commit and gets None."""
        row = self.db.execute(
            "INSERT INTO captures (device, capture_id, alarm_id, trigger, captured_at, status, reason, sha256, "
            "size, frames, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (device, capture_id) DO NOTHING RETURNING id",
            (device, capture_id, alarm_id, trigger, captured_at, status, reason, sha256, size, frames,
             received_at_ms)).fetchone()
        return None if row is None else row[0]

    def mark_stored(self, capture_rowids: list[int], at_ms: int) -> None:
        """Stamp `stored_at_ms` after the commit that made the captures durable.

        This stamp is bookkeeping, not evidence, so it is committed without a flush of its own
        (SQLite synchronous=NORMAL, PostgreSQL synchronous_commit=off); a later commit makes it
        durable."""
        if not capture_rowids:
            return
        with self.transaction(durable=False):
            self.db.executemany("UPDATE captures SET stored_at_ms = ? WHERE id = ?",
                                [(at_ms, r) for r in capture_rowids])

    # Queries (demo, CLI, tests) ------------------------------------------------------------
    def list_images(self, device: str | None = None) -> list[dict]:
        sql = ("SELECT i.id, i.device, i.capture_id, i.alarm_id, i.frame_index, i.frame_t, i.sha256, i.size, "
               "i.blob_path, i.kek_day, i.stored_at_ms, c.trigger FROM images i JOIN captures c "
               "ON c.device = i.device AND c.capture_id = i.capture_id")
        args: tuple = ()
        if device is not None:
            sql += " WHERE i.device = ?"
            args = (device,)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY i.stored_at_ms, i.capture_id, i.frame_index",
                                                 args)]

    def read_image(self, image_id: str) -> bytes:
        """The plaintext JPEG of one image. Raises `KeyDestroyed` once its day was shredded."""
        row = self.db.execute("SELECT blob_path, kek_day, wrapped_key, sha256 FROM images WHERE id = ?",
                              (image_id,)).fetchone()
        if row is None:
            raise StoreError(f"no image {image_id}")
        data_key = self.keys.unwrap(row["kek_day"], bytes(row["wrapped_key"]))
        try:
            blob = self.blobs.get(key_of(row["blob_path"]))
        except BlobStoreError as exc:  # the console and the CLI show StoreErrors as they are
            raise StoreError(f"image {image_id}: {exc}") from exc
        if blob[:4] != BLOB_MAGIC or len(blob) < 4 + 12 + 16:
            raise StoreError(f"blob of image {image_id} is not a Vericam blob: the file was replaced")
        jpeg = AESGCM(data_key).decrypt(blob[4:16], blob[16:], image_id.encode())
        if hashlib.sha256(jpeg).hexdigest() != row["sha256"]:
            raise StoreError(f"image {image_id} does not match its recorded hash")
        return jpeg

    def list_captures(self, device: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM captures", ()
        if device is not None:
            sql, args = sql + " WHERE device = ?", (device,)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def list_events(self, device: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM events", ()
        if device is not None:
            sql, args = sql + " WHERE device = ?", (device,)
        out = []
        for r in self.db.execute(sql + " ORDER BY id", args):
            d = dict(r)
            d["event"] = json.loads(d.pop("json"))
            out.append(d)
        return out

    def list_alarms(self, device: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM alarms", ()
        if device is not None:
            sql, args = sql + " WHERE device = ?", (device,)
        out = []
        for r in self.db.execute(sql + " ORDER BY received_at_ms", args):
            d = dict(r)
            d["captures"] = [x[0] for x in self.db.execute(
                "SELECT capture_id FROM alarm_captures WHERE device = ? AND alarm_id = ? "
                "UNION SELECT capture_id FROM captures WHERE device = ? AND alarm_id = ?",
                (d["device"], d["alarm_id"], d["device"], d["alarm_id"]))]
            stored = self.db.execute(
                "SELECT min(stored_at_ms), max(stored_at_ms), count(*) FROM captures WHERE device = ? "
                "AND alarm_id = ? AND status = 'stored'", (d["device"], d["alarm_id"])).fetchone()
            d["first_stored_at_ms"], d["last_stored_at_ms"], d["captures_stored"] = stored
            out.append(d)
        return out

    def first_alarm(self, device: str) -> dict | None:
        """The device's earliest alarm: alarm_id, code, t, received_at_ms, captures, first/last_stored_at_ms."""
        alarms = self.list_alarms(device)
        return alarms[0] if alarms else None

    def spool_size(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]


_SPOOL_STATE = ("SELECT min(count) AS count, max(count) AS count_max, min(total) AS total, "
                "max(total) AS total_max, min(alarm_id) AS alarm_id, max(alarm_id) AS alarm_id_max, "
                "count(*) AS have, sum(length(data)) AS bytes, min(received_at_ms) AS first_ms "
                "FROM chunks WHERE device = ? AND capture_id = ?")


class _DeviceRow:
    """A device row as an ingest batch holds it (locked) between its first read and the commit."""

    __slots__ = ("device_key", "revoked", "window", "last_seen_ms", "clock_unset", "changed")

    def __init__(self, row):
        self.device_key, self.revoked = row["device_key"], row["revoked"]
        self.window = ReplayWindow(row["counter_high"], int(row["counter_bitmap"], 16))
        self.last_seen_ms, self.clock_unset = row["last_seen_ms"], row["clock_unset"]
        self.changed = False

    def __getitem__(self, name: str):  # read like the row it came from (device_keys)
        return getattr(self, name)

    def snapshot(self) -> tuple:
        return self.window.high, self.window.bitmap, self.last_seen_ms, self.clock_unset, self.changed

    def restore(self, snap: tuple) -> None:
        # a new window object: the rolled-back message may still hold the one it changed
        self.window = ReplayWindow(snap[0], snap[1])
        self.last_seen_ms, self.clock_unset, self.changed = snap[2], snap[3], snap[4]


def _str_or_none(v) -> str | None:
    return None if v is None else str(v)[:200]
