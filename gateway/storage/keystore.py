"""The key store: the ARC private key and the key-encryption keys (KEKs), apart from the metadata.

Layout under `<data>/keys/` (directory mode 0700):
- `arc_private.pem`: the ARC RSA-2048 private key (PKCS#8 PEM, mode 0600). Devices wrap the
  data key of every capture to its public half.
- `keys.sqlite`: one KEK per deletion day (`kek` table), created on demand, and a `master`
  KEK that wraps the device keys kept in the metadata DB. Also the audit trail's custody
  (gateway.governance.audit): its anchored head (`audit_head`), its key (`audit_key`: the
  chain's HMAC key and the checkpoint signing key derive from it; never destroyed, never in
  the metadata DB) and its signed checkpoints (`audit_checkpoint`).

Every image at rest has its own data key, wrapped (RFC 3394 AES key wrap) under the KEK of the
day it must be deleted. `destroy(day)` erases that KEK, which makes every copy of that day's
images unreadable, backups included: crypto-shredding. Keep backups of this directory apart
from the metadata and blob backups, and never for longer than the retention period.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from gateway.protocol.keys import arc_key_id

ARC_KEY_FILE = "arc_private.pem"
KEYS_DB = "keys.sqlite"
MASTER = "master"


class KeyStoreError(Exception):
    pass


class KeyDestroyed(KeyStoreError):
    """The KEK was destroyed: the data it protected is shredded."""


def write_file_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) through a temp file, fsynced, then renamed over it.

    The rename is durable only once the directory is fsynced: that is the caller's, so a
    batch of files can share one directory fsync (gateway.storage.blobstore)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_secret(path: Path, data: bytes) -> None:
    write_file_durably(path, data)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def day_str(day: _dt.date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


class KeyStore:
    """ARC key and per-day KEKs. Thread-safe; one instance per process and data directory."""

    def __init__(self, key_dir: str | Path):
        self.dir = Path(key_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.dir / KEYS_DB, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed: a destroyed KEK is gone
        self._db.execute("CREATE TABLE IF NOT EXISTS kek (day TEXT PRIMARY KEY, kek BLOB, "
                         "created_at_ms INTEGER NOT NULL, destroyed_at_ms INTEGER)")
        # The audit chain's head, kept apart from the metadata DB (see gateway.governance.audit): whoever
        # truncates or rewrites the audit table must also reach the key store to hide it.
        self._db.execute("CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), "
                         "seq INTEGER NOT NULL, hash TEXT NOT NULL, at_ms INTEGER NOT NULL)")
        # The audit key (the chain's HMAC key and the checkpoint signing key derive from it) and the
        # record it keys the chain from, and the signed checkpoints of the chain's head.
        self._db.execute("CREATE TABLE IF NOT EXISTS audit_key (id INTEGER PRIMARY KEY CHECK (id = 1), "
                         "secret BLOB NOT NULL, keyed_from INTEGER NOT NULL, created_at_ms INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS audit_checkpoint (seq INTEGER PRIMARY KEY, "
                         "at_ms INTEGER NOT NULL, line TEXT NOT NULL)")
        # Where the audit trail was trimmed (retention): records 1..seq are gone, and the kept chain
        # starts from `head`, the link of record seq, which a signed checkpoint certified.
        self._db.execute("CREATE TABLE IF NOT EXISTS audit_trim (id INTEGER PRIMARY KEY CHECK (id = 1), "
                         "seq INTEGER NOT NULL, head TEXT NOT NULL, checkpoint TEXT NOT NULL, at_ms INTEGER NOT NULL)")
        os.chmod(self.dir / KEYS_DB, 0o600)
        self._cache: dict[str, bytes] = {}
        self._arc = None
        self._audit_key: tuple[bytes, int] | None = None

    @classmethod
    def open(cls, data_dir: str | Path) -> "KeyStore":
        return cls(Path(data_dir) / "keys")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ARC key pair --------------------------------------------------------------------------
    @property
    def arc_path(self) -> Path:
        return self.dir / ARC_KEY_FILE

    def has_arc_key(self) -> bool:
        return self.arc_path.exists()

    def create_arc_key(self) -> bool:
        """Create the ARC RSA-2048 key pair if missing. Returns True if it was created."""
        with self._lock:
            if self.has_arc_key():
                return False
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.import_arc_key(key)
            return True

    def import_arc_key(self, private_key) -> None:
        pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        _write_secret(self.arc_path, pem)
        self._arc = None

    def arc_private_key(self):
        with self._lock:
            if self._arc is None:
                if not self.has_arc_key():
                    raise KeyStoreError(f"no ARC key in {self.dir}: run `vericam gateway init --data DIR`")
                self._arc = serialization.load_pem_private_key(self.arc_path.read_bytes(), password=None)
            return self._arc

    def arc_key_id(self) -> bytes:
        return arc_key_id(self.arc_private_key().public_key())

    # KEKs ----------------------------------------------------------------------------------
    def _get(self, name: str, create: bool) -> bytes:
        with self._lock:
            kek = self._cache.get(name)
            if kek is not None:
                return kek
            select = "SELECT kek, destroyed_at_ms FROM kek WHERE day = ?"
            row = self._db.execute(select, (name,)).fetchone()
            if row is None:
                if not create:
                    raise KeyStoreError(f"no key-encryption key for {name}")
                # Gateway workers sharing this key store may create the day's KEK at the same
                # moment: the first insert wins and every worker uses the KEK that is stored.
                self._db.execute("INSERT INTO kek (day, kek, created_at_ms) VALUES (?, ?, ?) "
                                 "ON CONFLICT (day) DO NOTHING",
                                 (name, secrets.token_bytes(32), int(time.time() * 1000)))
                row = self._db.execute(select, (name,)).fetchone()
            if row[1] is not None:
                raise KeyDestroyed(f"the key-encryption key of {name} was destroyed: data under it "
                                   "is shredded and cannot be recovered")
            kek = bytes(row[0])
            self._cache[name] = kek
            return kek

    def kek(self, day: _dt.date | str, create: bool = True) -> bytes:
        """The KEK of a deletion day, created (and durably committed) on first use."""
        return self._get(day_str(day), create)

    def destroy(self, day: _dt.date | str) -> bool:
        """Erase the KEK of `day`. Returns False if there was none. Irreversible."""
        name = day_str(day)
        with self._lock:
            self._cache.pop(name, None)
            cur = self._db.execute("UPDATE kek SET kek = NULL, destroyed_at_ms = ? WHERE day = ? "
                                   "AND destroyed_at_ms IS NULL", (int(time.time() * 1000), name))
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy left in the WAL either
            return cur.rowcount > 0

    def days(self) -> list[tuple[str, bool]]:
        """[(day, destroyed)] of every KEK but the master."""
        rows = self._db.execute("SELECT day, destroyed_at_ms IS NOT NULL FROM kek WHERE day != ? "
                                "ORDER BY day", (MASTER,)).fetchall()
        return [(d, bool(x)) for d, x in rows]

    def live_days_until(self, day: _dt.date | str) -> list[str]:
        """KEKs still alive whose day (the name's first 10 characters, so a police hold's own
        `DAY/hold-N` KEK too) is `day` or earlier; never the master."""
        return [r[0] for r in self._db.execute(
            "SELECT day FROM kek WHERE destroyed_at_ms IS NULL AND day != ? AND substr(day, 1, 10) <= ? "
            "ORDER BY day", (MASTER, day_str(day)))]

    def is_destroyed(self, day: _dt.date | str) -> bool:
        row = self._db.execute("SELECT destroyed_at_ms FROM kek WHERE day = ?", (day_str(day),)).fetchone()
        return row is not None and row[0] is not None

    # Audit chain head ----------------------------------------------------------------------
    def anchor_audit(self, seq: int, head_hash: str) -> None:
        """Record the audit chain's head; it only ever moves forward."""
        with self._lock:
            self._db.execute("INSERT INTO audit_head (id, seq, hash, at_ms) VALUES (1, ?, ?, ?) "
                             "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                             "at_ms = excluded.at_ms WHERE excluded.seq > audit_head.seq",
                             (seq, head_hash, int(time.time() * 1000)))

    def audit_anchor(self) -> tuple[int, str] | None:
        row = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        return (row[0], row[1]) if row else None

    def audit_key(self) -> tuple[bytes, int] | None:
        """(secret, keyed_from): the audit key and the first record it keys, or None before it exists."""
        with self._lock:
            if self._audit_key is None:
                row = self._db.execute("SELECT secret, keyed_from FROM audit_key WHERE id = 1").fetchone()
                self._audit_key = (bytes(row[0]), row[1]) if row else None
            return self._audit_key

    def create_audit_key(self, keyed_from: int) -> tuple[bytes, int]:
        """Create the audit key, keying the chain from record `keyed_from` on, unless one exists
        (then that one is returned unchanged: the first of several workers wins). Never replaced."""
        with self._lock:
            self._db.execute("INSERT INTO audit_key (id, secret, keyed_from, created_at_ms) VALUES (1, ?, ?, ?) "
                             "ON CONFLICT (id) DO NOTHING",
                             (secrets.token_bytes(32), keyed_from, int(time.time() * 1000)))
            row = self._db.execute("SELECT secret, keyed_from FROM audit_key WHERE id = 1").fetchone()
            self._audit_key = (bytes(row[0]), row[1])
            return self._audit_key

    def add_audit_checkpoint(self, seq: int, at_ms: int, line: str) -> None:
        """Keep a signed checkpoint of the audit chain (the first one signed for a record stays)."""
        with self._lock:
            self._db.execute("INSERT INTO audit_checkpoint (seq, at_ms, line) VALUES (?, ?, ?) "
                             "ON CONFLICT (seq) DO NOTHING", (seq, at_ms, line))

    def last_audit_checkpoint(self) -> tuple[int, int] | None:
        """(seq, at_ms) of the newest checkpoint kept, or None."""
        row = self._db.execute("SELECT seq, at_ms FROM audit_checkpoint ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    def trim_audit(self, seq: int, head: str, checkpoint: str) -> None:
        """Record that the audit trail is trimmed through record `seq` (its link `head`, certified by the
        signed `checkpoint` line). Only ever moves forward, and is written before any record goes."""
        with self._lock:
            self._db.execute("INSERT INTO audit_trim (id, seq, head, checkpoint, at_ms) VALUES (1, ?, ?, ?, ?) "
                             "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, head = excluded.head, "
                             "checkpoint = excluded.checkpoint, at_ms = excluded.at_ms WHERE excluded.seq > "
                             "audit_trim.seq", (seq, head, checkpoint, int(time.time() * 1000)))

    def audit_trim(self) -> tuple[int, str, str] | None:
        """(seq, head, checkpoint line) of the audit trail's trim, or None if it was never trimmed."""
        row = self._db.execute("SELECT seq, head, checkpoint FROM audit_trim WHERE id = 1").fetchone()
        return (row[0], row[1], row[2]) if row else None

    def audit_checkpoint_seqs(self) -> list[int]:
        """The record numbers of every checkpoint kept, oldest first."""
        return [r[0] for r in self._db.execute("SELECT seq FROM audit_checkpoint ORDER BY seq")]

    def audit_checkpoint_line(self, seq: int) -> str | None:
        row = self._db.execute("SELECT line FROM audit_checkpoint WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def audit_checkpoints(self) -> list[str]:
        """Every checkpoint kept, oldest first, as its signed JSON line."""
        return [r[0] for r in self._db.execute("SELECT line FROM audit_checkpoint ORDER BY seq")]

    def wrap(self, day: _dt.date | str, key: bytes) -> bytes:
        return aes_key_wrap(self.kek(day), key)

    def unwrap(self, day: _dt.date | str, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self.kek(day, create=False), wrapped)
        except InvalidUnwrap:
            raise KeyStoreError(f"wrapped key does not unwrap under the KEK of {day_str(day)}: "
                                "the key store does not match the metadata") from None

    # Device keys ---------------------------------------------------------------------------
    def wrap_device_key(self, device_key: bytes) -> bytes:
        return aes_key_wrap(self._get(MASTER, True), device_key)

    def unwrap_device_key(self, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._get(MASTER, False), wrapped)
        except InvalidUnwrap:
            raise KeyStoreError("a device key does not unwrap under this key store's master key: "
                                "the key store does not match the metadata") from None
