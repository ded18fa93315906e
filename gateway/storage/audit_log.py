"""Audit rows: the append-only `audit` table of the keyed, chained audit trail, written and read.

The chain itself (what is MACed, how a record is checked, checkpoints) is
`gateway.governance.audit`. This module only appends a row after the current head, under a
lock that gateways sharing one PostgreSQL database take in turn, and has the new head anchored
in the key store once the transaction commits (`UnitOfWork.anchor_after_commit`), with any
checkpoint signed in it (`UnitOfWork.checkpoint_after_commit`). Triggers refuse UPDATE and
DELETE. The `hash` column holds each record's link: HMAC-SHA256 under the key store's audit
key from the record the chain is keyed from, plain SHA-256 before it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gateway.storage.sqldb import Database

if TYPE_CHECKING:
    from gateway.storage.unit_of_work import UnitOfWork

COLUMNS = ("seq", "at_ms", "who", "what", "why", "subject", "key_id", "content_hash", "detail", "prev_hash", "hash")


def _in(ids: list) -> str:
    return ",".join("?" * len(ids))


def _decoded(row) -> dict:
    d = dict(row)
    d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
    return d


class AuditLog:
    def __init__(self, db: Database, uow: "UnitOfWork"):
        self.db = db
        self.uow = uow

    # Appending -----------------------------------------------------------------------------
    def lock_head(self) -> tuple[int, str] | None:
        """(seq, hash) of the newest record, or None; locked until the transaction ends, so the
        record appended after it is the next one whichever gateway appends."""
        self.db.lock("audit")
        last = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (last[0], last[1]) if last else None

    def insert(self, record: dict) -> None:
        """Append one record (all of `COLUMNS`, `detail` as JSON text) right after `lock_head()`."""
        self.db.execute("INSERT INTO audit (seq, at_ms, who, what, why, subject, key_id, content_hash, detail, "
                        "prev_hash, hash) VALUES (:seq, :at_ms, :who, :what, :why, :subject, :key_id, "
                        ":content_hash, :detail, :prev_hash, :hash)", {k: record[k] for k in COLUMNS})
        self.uow.anchor_after_commit(record["seq"], record["hash"])

    def keep_checkpoint(self, seq: int, at_ms: int, line: str) -> None:
        """Keep a signed checkpoint in the key store once this transaction commits."""
        self.uow.checkpoint_after_commit(seq, at_ms, line)

    def last_checkpoint(self) -> tuple[int, int] | None:
        """(seq, at_ms) of the newest checkpoint, kept in the key store or waiting for this commit."""
        return self.uow.last_audit_checkpoint()

    # Trimming (retention) ------------------------------------------------------------------
    def last_before(self, at_ms: int) -> int | None:
        """The newest record (by seq) written before `at_ms`; None if there is none (index `audit_by_at`)."""
        return self.db.execute("SELECT max(seq) FROM audit WHERE at_ms < ?", (at_ms,)).fetchone()[0]

    def oldest_at_ms(self) -> int | None:
        """The earliest `at_ms` of the records kept (None: the log is empty)."""
        return self.db.execute("SELECT min(at_ms) FROM audit").fetchone()[0]

    def first_seq(self) -> int | None:
        return self.db.execute("SELECT min(seq) FROM audit").fetchone()[0]

    def trim(self, through_seq: int, head: str, at_ms: int) -> int:
        """Delete records 1..through_seq (the triggers allow it once `audit_trims` names the point);
        how many went. Call inside a transaction, after the key store recorded the trim."""
        self.db.execute("INSERT INTO audit_trims (through_seq, head, at_ms) VALUES (?, ?, ?) "
                        "ON CONFLICT (through_seq) DO NOTHING", (through_seq, head, at_ms))
        return self.db.execute("DELETE FROM audit WHERE seq <= ?", (through_seq,)).rowcount

    # Reading -------------------------------------------------------------------------------
    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the newest record, or None (not locked)."""
        last = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (last[0], last[1]) if last else None

    def get(self, seq: int) -> dict | None:
        """One record as stored (`detail` as its JSON text), or None."""
        row = self.db.execute("SELECT * FROM audit WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else dict(row)

    def chain(self) -> list[dict]:
        """Every record in order, as stored (`detail` as its JSON text): what the chain hashes."""
        return [dict(r) for r in self.db.execute("SELECT * FROM audit ORDER BY seq")]

    def records(self, what: str | None = None, subject: str | None = None) -> list[dict]:
        """The records of one kind and/or subject, oldest first, `detail` decoded."""
        sql, args = "SELECT * FROM audit", []
        conds = []
        if what:
            conds.append("what = ?")
            args.append(what)
        if subject:
            conds.append("subject = ?")
            args.append(subject)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return [_decoded(r) for r in self.db.execute(sql + " ORDER BY seq", args)]

    def has(self, what: str, subject: str) -> bool:
        return self.db.execute("SELECT 1 FROM audit WHERE what = ? AND subject = ? LIMIT 1",
                               (what, subject)).fetchone() is not None

    def last_detail(self, what: str) -> dict | None:
        """The decoded `detail` of the newest record of this kind, or None."""
        row = self.db.execute("SELECT detail FROM audit WHERE what = ? ORDER BY seq DESC LIMIT 1", (what,)).fetchone()
        return None if row is None else json.loads(row[0])

    def of_subjects(self, subjects) -> list[dict]:
        """Every record about any of these subjects, oldest first (a chain of custody)."""
        subjects = sorted(subjects)
        if not subjects:
            return []
        return [dict(r) for r in self.db.execute(
            f"SELECT * FROM audit WHERE subject IN ({_in(subjects)}) ORDER BY seq", subjects)]

    def trail(self, what: str | None = None, who: str | None = None, subject: str | None = None,
              from_ms: int | None = None, to_ms: int | None = None, limit: int = 500) -> list[dict]:
        """Records newest first, filtered by kind, who, subject and time, `detail` decoded."""
        sql = "SELECT seq, at_ms, who, what, why, subject, key_id, content_hash, detail, hash FROM audit"
        conds, args = [], []
        for col, val in (("what", what), ("who", who), ("subject", subject)):
            if val:
                conds.append(f"{col} = ?")
                args.append(val)
        if from_ms is not None:
            conds.append("at_ms >= ?")
            args.append(from_ms)
        if to_ms is not None:
            conds.append("at_ms < ?")
            args.append(to_ms)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return [_decoded(r) for r in self.db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit))]

    def kinds(self) -> list[str]:
        """Every `what` recorded so far."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT what FROM audit ORDER BY what")]
