"""The audit trail: an append-only, hash-chained log of every access to and deletion of personal data.

Theory of operation
-------------------
Each record holds who, what, when (`at_ms`) and why, and for deletions the key id (the KEK
that wrapped the image's data key) and the content hash (SHA-256 of the plaintext image).
Records live in the `audit` table of the metadata DB and are numbered 1, 2, 3, ... (`seq`).

    hash(n) = SHA-256( hash(n-1) || "\\n" || canonical JSON of record n's fields )

with hash(0) = 64 zeros. Editing a record changes its hash, so the next record's `prev_hash`
no longer matches; removing one leaves a gap in `seq` and a broken link.

Two things a chain alone cannot show, and how they are covered:
- **Truncating the tail** (removing the newest records) leaves a valid, shorter chain. So
  after every commit that appended records, the head (seq, hash) is also written to the key
  store (`keys/keys.sqlite`, table `audit_head`), a separate file that is backed up and
  protected separately. `verify` fails if the chain is shorter than the anchored head or
  its record at that seq has a different hash.
- **Rewriting the whole chain** with fresh hashes also fails against the anchor, unless the
  attacker also controls the key store. Whoever holds both can forge anything; protect
  `keys/` accordingly (OPERATING.md).

The anchor is written right after the metadata commit, so a crash between the two can leave
records newer than the anchor: `verify` reports them as "not yet anchored", not as tampering.
The table also has triggers that refuse UPDATE and DELETE, so a mistake cannot edit it; they
stop accidents, not an attacker who owns the file, which is what the chain is for.

`append` must be called inside `Store.transaction()`: the record commits or rolls back with
the change it describes. The rows themselves are written and read by `store.audit`
(gateway.storage.audit_log); this module decides what goes in them and checks the chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

GENESIS = "0" * 64
FIELDS = ("seq", "at_ms", "who", "what", "why", "subject", "key_id", "content_hash", "detail")


def record_hash(prev_hash: str, record: dict) -> str:
    body = json.dumps({k: record.get(k) for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def append(store, who: str, what: str, why: str, *, at_ms: int, subject: str | None = None,
           key_id: str | None = None, content_hash: str | None = None, detail: dict | None = None) -> dict:
    """Append one record to the chain. Call inside `store.transaction()`."""
    if not store.in_transaction:
        raise RuntimeError("audit.append must run inside store.transaction(), with the change it records")
    if not who or not what or not why:
        raise ValueError("an audit record needs who, what and why")
    last = store.audit.lock_head()  # gateways sharing one PostgreSQL database append one at a time
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    rec = {"seq": seq, "at_ms": int(at_ms), "who": who, "what": what, "why": why, "subject": subject,
           "key_id": key_id, "content_hash": content_hash,
           "detail": json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))}
    rec["prev_hash"] = prev
    rec["hash"] = record_hash(prev, rec)
    store.audit.insert(rec)  # its head is anchored in the key store after the commit
    return rec


def records(store, what: str | None = None, subject: str | None = None) -> list[dict]:
    """The records of one kind and/or subject, oldest first, `detail` decoded."""
    return store.audit.records(what, subject)


@dataclass
class Verdict:
    records: int = 0
    anchored_seq: int | None = None
    unanchored: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store) -> Verdict:
    """Walk the whole chain and check it against the head anchored in the key store."""
    v = Verdict()
    prev, expect_seq = GENESIS, 1
    by_seq: dict[int, str] = {}
    for rec in store.audit.chain():
        v.records += 1
        if rec["seq"] != expect_seq:
            v.problems.append(f"records {expect_seq}..{rec['seq'] - 1} are missing (removed from the log)")
        if rec["prev_hash"] != prev:
            v.problems.append(f"record {rec['seq']}: its link to the previous record is broken "
                              "(the previous record was edited or removed)")
        if record_hash(rec["prev_hash"], rec) != rec["hash"]:
            v.problems.append(f"record {rec['seq']} was edited: its content does not match its hash")
        prev, expect_seq = rec["hash"], rec["seq"] + 1
        by_seq[rec["seq"]] = rec["hash"]
    anchor = store.keys.audit_anchor()
    last_seq = expect_seq - 1
    if anchor is None:
        if v.records:
            v.problems.append("the key store holds no audit head although the log has records: "
                              "the key store was replaced or the head removed")
        return v
    v.anchored_seq, head = anchor
    if last_seq < anchor[0]:
        v.problems.append(f"the log ends at record {last_seq} but the key store's head is record {anchor[0]}: "
                          "records were removed from the end")
    elif by_seq.get(anchor[0]) != head:
        v.problems.append(f"record {anchor[0]} differs from the head kept in the key store: "
                          "the log was rewritten")
    else:
        v.unanchored = last_seq - anchor[0]
    return v
