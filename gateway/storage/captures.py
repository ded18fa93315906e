"""Captures: the chunk spool while one arrives, the capture row that decides it once, and its stored images.

- `Spool`: chunks of captures still arriving, keyed (device, capture, chunk index).
- `Captures`: one row per (device, capture id), claimed once with its outcome (stored or
  rejected); the unique key decides, so two gateways finishing one capture store it once.
- `Images`: one row per frame, whose blob is sealed at rest (`gateway.storage.at_rest`) under
  its deletion day's KEK (`kek_day`); it is due at 00:00 UTC of that day (`delete_at_ms`,
  `due_at_ms`). Blob keys are `<kek day at storage>/<image id>.vcb`; the row's `blob_path`
  is `blobs/<key>` whatever the blob store.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import secrets
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from gateway.storage import at_rest
from gateway.storage.blobstore import BlobStore, BlobStoreError, key_of
from gateway.storage.errors import StoreError
from gateway.storage.keystore import KeyStore
from gateway.storage.sqldb import Database

if TYPE_CHECKING:
    from gateway.storage.unit_of_work import UnitOfWork


def due_at_ms(kek_day: str) -> int:
    """Epoch ms of 00:00 UTC of an ISO day (or a `DAY/hold-N` KEK name): when its images are due."""
    d = _dt.date.fromisoformat(kek_day[:10])
    return int(_dt.datetime(d.year, d.month, d.day, tzinfo=_dt.timezone.utc).timestamp() * 1000)


def _in(ids: list) -> str:
    return ",".join("?" * len(ids))


# Chunk spool -----------------------------------------------------------------------------------
_SPOOL_STATE = ("SELECT min(count) AS count, max(count) AS count_max, min(total) AS total, "
                "max(total) AS total_max, min(alarm_id) AS alarm_id, max(alarm_id) AS alarm_id_max, "
                "count(*) AS have, sum(length(data)) AS bytes, min(received_at_ms) AS first_ms "
                "FROM chunks WHERE device = ? AND capture_id = ?")


class Spool:
    def __init__(self, db: Database):
        self.db = db

    def state(self, device: str, capture_id: str) -> dict | None:
        """count/total/alarm of the first chunk, number and bytes spooled, first arrival."""
        row = self.db.execute(_SPOOL_STATE, (device, capture_id)).fetchone()
        return dict(row) if row and row["have"] else None

    def add_unless_decided(self, device: str, capture_id: str, idx: int, count: int, total: int,
                           alarm_id: str, data: bytes, at_ms: int) -> tuple[dict | None, bool, dict | None]:
        """Spool a chunk unless its capture was already stored or rejected, in one round trip.

        Returns (the capture's row if it was decided, whether this chunk was new to the spool,
        the spool state after it as `state()`). The three statements run in this order
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

    def reserved(self, device: str) -> dict[str, int]:
        """The device's captures in reassembly, each with the total size its chunks state."""
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT capture_id, max(total) FROM chunks WHERE device = ? GROUP BY capture_id", (device,))}

    def in_flight(self, device: str) -> list[str]:
        """The device's captures with chunks spooled."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT capture_id FROM chunks WHERE device = ?",
                                              (device,))]

    def assemble(self, device: str, capture_id: str) -> bytes:
        return b"".join(bytes(r[0]) for r in self.db.execute(
            "SELECT data FROM chunks WHERE device = ? AND capture_id = ? ORDER BY idx", (device, capture_id)))

    def drop(self, device: str, capture_id: str) -> None:
        self.db.execute("DELETE FROM chunks WHERE device = ? AND capture_id = ?", (device, capture_id))

    def drop_devices(self, device_ids: list[str]) -> int:
        """Drop every unfinished upload of these devices; how many chunks went."""
        if not device_ids:
            return 0
        return self.db.execute(f"DELETE FROM chunks WHERE device IN ({_in(device_ids)})", device_ids).rowcount

    def expired(self, older_than_ms: int) -> list[tuple[str, str]]:
        """(device, capture id) of the uploads whose first chunk arrived before `older_than_ms`."""
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT device, capture_id FROM chunks GROUP BY device, capture_id "
            "HAVING min(received_at_ms) < ?", (older_than_ms,))]

    def size(self) -> int:
        """Chunks spooled, all devices."""
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]


# Captures --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptureRecord:
    """The outcome of one capture, as `Captures.claim` records it."""

    device: str
    capture_id: str
    alarm_id: str
    status: str                  # 'stored' or 'rejected'
    sha256: str                  # of the sealed capture as received
    size: int
    frames: int
    received_at_ms: int          # its first chunk
    trigger: str | None = None
    captured_at: int | None = None
    reason: str | None = None    # why it was rejected


class Captures:
    def __init__(self, db: Database, uow: "UnitOfWork"):
        self.db = db
        self.uow = uow

    def get(self, device: str, capture_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM captures WHERE device = ? AND capture_id = ?",
                              (device, capture_id)).fetchone()
        return dict(row) if row else None

    def claim(self, rec: CaptureRecord) -> int | None:
        """Claim (device, capture_id) with this outcome; its row id, or None if it is already claimed.

        The unique key decides, not a read before the write: when two gateways finish the
        same capture at once, the second waits for the first's commit and gets None."""
        row = self.db.execute(
            "INSERT INTO captures (device, capture_id, alarm_id, trigger, captured_at, status, reason, sha256, "
            "size, frames, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (device, capture_id) DO NOTHING RETURNING id",
            (rec.device, rec.capture_id, rec.alarm_id, rec.trigger, rec.captured_at, rec.status, rec.reason,
             rec.sha256, rec.size, rec.frames, rec.received_at_ms)).fetchone()
        return None if row is None else row[0]

    def mark_stored(self, capture_rowids: list[int], at_ms: int) -> None:
        """Stamp `stored_at_ms` after the commit that made the captures durable.

        This stamp is bookkeeping, not evidence, so it is committed without a flush of its own
        (SQLite synchronous=NORMAL, PostgreSQL synchronous_commit=off); a later commit makes it
        durable."""
        if not capture_rowids:
            return
        with self.uow.transaction(durable=False):
            self.db.executemany("UPDATE captures SET stored_at_ms = ? WHERE id = ?",
                                [(at_ms, r) for r in capture_rowids])

    def list(self, device: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM captures", ()
        if device is not None:
            sql, args = sql + " WHERE device = ?", (device,)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def count(self) -> int:
        """Captures decided (stored or rejected), all devices."""
        return self.db.execute("SELECT count(*) FROM captures").fetchone()[0]

    def stored_of_alarm(self, device: str, alarm_id: str) -> list[dict]:
        """The alarm's stored captures in the order they were claimed (a chain of custody)."""
        return [dict(r) for r in self.db.execute(
            "SELECT capture_id, trigger, captured_at, sha256, size, frames, received_at_ms, stored_at_ms "
            "FROM captures WHERE device = ? AND alarm_id = ? AND status = 'stored' ORDER BY id",
            (device, alarm_id))]

    def of_devices(self, device_ids: list[str]) -> list[dict]:
        if not device_ids:
            return []
        return [dict(r) for r in self.db.execute(
            f"SELECT * FROM captures WHERE device IN ({_in(device_ids)}) ORDER BY id", device_ids)]


# Images ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageRow:
    """One image row as inserted; `delete_at_ms` follows from `kek_day` (`due_at_ms`)."""

    id: str
    device: str
    capture_id: str
    alarm_id: str
    frame_index: int
    frame_t: int
    sha256: str          # of the plaintext JPEG
    size: int
    blob_path: str       # `blobs/<key>`
    kek_day: str         # deletion day: the KEK that wraps the data key
    wrapped_key: bytes
    stored_at_ms: int


#: The columns that retention, holds and erasure read to delete an image (and audit it).
DELETION_COLUMNS = "id, device, alarm_id, blob_path, kek_day, sha256, delete_at_ms"


class Images:
    def __init__(self, db: Database, keys: KeyStore, blobs: BlobStore, uow: "UnitOfWork"):
        self.db = db
        self.keys = keys
        self.blobs = blobs
        self.uow = uow

    # Writing -------------------------------------------------------------------------------
    def put(self, jpeg: bytes, *, device: str, capture_id: str, alarm_id: str, frame_index: int,
            frame_t: int, kek_day: str, at_ms: int) -> str:
        """Seal one image under a fresh data key, write its blob durably, insert its row; its id."""
        image_id = secrets.token_hex(16)
        blob, wrapped = at_rest.seal(self.keys, kek_day, image_id, jpeg)
        key = f"{kek_day}/{image_id}.vcb"
        self.uow.put_blob(key, blob)
        self.insert([ImageRow(image_id, device, capture_id, alarm_id, frame_index, frame_t,
                              hashlib.sha256(jpeg).hexdigest(), len(jpeg), str(Path("blobs") / key), kek_day,
                              wrapped, at_ms)])
        return image_id

    def insert(self, rows: Iterable[ImageRow]) -> None:
        """Insert image rows whose blobs are already written (`put`; a benchmark's seeding)."""
        self.db.executemany(
            "INSERT INTO images (id, device, capture_id, alarm_id, frame_index, frame_t, sha256, size, "
            "blob_path, kek_day, wrapped_key, stored_at_ms, delete_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [astuple(r) + (due_at_ms(r.kek_day),) for r in rows])

    def rekey(self, row: dict, to_kek: str, hold_id: int | None) -> str:
        """Move one image's data key under `to_kek` (due at its day) and set or clear its hold; the KEK."""
        wrapped = at_rest.rewrap(self.keys, row["kek_day"], row["wrapped_key"], to_kek)
        self.db.execute("UPDATE images SET kek_day = ?, wrapped_key = ?, delete_at_ms = ?, hold_id = ? "
                        "WHERE id = ?", (to_kek, wrapped, due_at_ms(to_kek), hold_id, row["id"]))
        return to_kek

    def release_overdue(self, image_id: str, due_ms: int) -> None:
        """Clear the hold of an image whose own deletion day has passed: due at `due_ms`, its key unmoved."""
        self.db.execute("UPDATE images SET hold_id = NULL, delete_at_ms = ? WHERE id = ?", (due_ms, image_id))

    # Reading -------------------------------------------------------------------------------
    def read(self, image_id: str) -> bytes:
        """The plaintext JPEG of one image. Raises `KeyDestroyed` once its day was shredded."""
        row = self.db.execute("SELECT blob_path, kek_day, wrapped_key, sha256 FROM images WHERE id = ?",
                              (image_id,)).fetchone()
        if row is None:
            raise StoreError(f"no image {image_id}")
        data_key = self.keys.unwrap(row["kek_day"], bytes(row["wrapped_key"]))  # a shredded day says so first
        try:
            blob = self.blobs.get(key_of(row["blob_path"]))
        except BlobStoreError as exc:  # the console and the CLI show StoreErrors as they are
            raise StoreError(f"image {image_id}: {exc}") from exc
        return at_rest.open_blob(data_key, image_id, blob, row["sha256"])

    def list(self, device: str | None = None) -> list[dict]:
        """Every image's metadata with its capture's trigger, in the order stored."""
        sql = ("SELECT i.id, i.device, i.capture_id, i.alarm_id, i.frame_index, i.frame_t, i.sha256, i.size, "
               "i.blob_path, i.kek_day, i.stored_at_ms, c.trigger FROM images i JOIN captures c "
               "ON c.device = i.device AND c.capture_id = i.capture_id")
        args: tuple = ()
        if device is not None:
            sql += " WHERE i.device = ?"
            args = (device,)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY i.stored_at_ms, i.capture_id, i.frame_index",
                                                 args)]

    def ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM images")}

    def first_blob_path(self) -> str | None:
        """The blob path of one stored image (the lowest id), or None if none is stored."""
        row = self.db.execute("SELECT blob_path FROM images ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None

    def key_records(self) -> list[dict]:
        """id, kek_day, wrapped_key, blob_path of every image: what a backup of the rows holds."""
        return [dict(r) for r in self.db.execute("SELECT id, kek_day, wrapped_key, blob_path FROM images")]

    # Holds ---------------------------------------------------------------------------------
    _HOLD_COLUMNS = "id, device, alarm_id, blob_path, kek_day, wrapped_key, sha256, delete_at_ms, hold_id"

    def by_id(self, image_id: str) -> list[dict]:
        """[the image's row] for a hold, or []."""
        return [dict(r) for r in self.db.execute(f"SELECT {self._HOLD_COLUMNS} FROM images WHERE id = ?",
                                                 (image_id,))]

    def of_alarm(self, device: str | None, alarm_id: str) -> list[dict]:
        """The rows of an alarm's images for a hold; `device` None: of whichever device used the alarm id."""
        if device is None:
            return [dict(r) for r in self.db.execute(
                f"SELECT {self._HOLD_COLUMNS} FROM images WHERE alarm_id = ?", (alarm_id,))]
        return [dict(r) for r in self.db.execute(
            f"SELECT {self._HOLD_COLUMNS} FROM images WHERE device = ? AND alarm_id = ?", (device, alarm_id))]

    def of_hold(self, hold_id: int) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            f"SELECT {self._HOLD_COLUMNS} FROM images WHERE hold_id = ? ORDER BY id", (hold_id,))]

    # The console and exports ---------------------------------------------------------------
    def photos_of_alarm(self, device: str, alarm_id: str) -> list[dict]:
        """The alarm's photos with their capture's trigger, newest first (frame time, then capture order)."""
        return [dict(r) for r in self.db.execute(
            "SELECT i.id, i.capture_id, i.frame_index, i.frame_t, i.sha256, i.size, i.stored_at_ms, i.kek_day, "
            "i.hold_id, i.delete_at_ms, c.trigger FROM images i LEFT JOIN captures c ON c.device = i.device "
            "AND c.capture_id = i.capture_id WHERE i.device = ? AND i.alarm_id = ? "
            "ORDER BY i.frame_t DESC, i.stored_at_ms DESC, i.frame_index DESC", (device, alarm_id))]

    def photo_of_alarm(self, device: str, alarm_id: str, image_id: str) -> dict | None:
        """id, sha256, frame_index, capture_id of the image, only if it belongs to this alarm."""
        row = self.db.execute("SELECT id, sha256, frame_index, capture_id FROM images WHERE id = ? AND device = ? "
                              "AND alarm_id = ?", (image_id, device, alarm_id)).fetchone()
        return dict(row) if row else None

    def for_export(self, device_ids: list[str]) -> list[dict]:
        """The image metadata of a data-subject export (`delete_on`: the deletion day)."""
        if not device_ids:
            return []
        return [dict(r) for r in self.db.execute(
            f"SELECT id, device, capture_id, alarm_id, frame_index, frame_t, sha256, size, stored_at_ms, "
            f"kek_day AS delete_on, hold_id FROM images WHERE device IN ({_in(device_ids)}) "
            f"ORDER BY stored_at_ms, frame_index", device_ids).fetchall()]
