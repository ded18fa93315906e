"""The audit trail: an append-only log of every access to and deletion of personal data, chained under a key the database never holds.

Theory of operation
-------------------
Each record holds who, what, when (`at_ms`) and why, and for deletions the key id (the KEK
that wrapped the image's data key) and the content hash (SHA-256 of the plaintext image).
Records live in the `audit` table of the metadata DB and are numbered 1, 2, 3, ... (`seq`).
Each record's link (its `hash` column) is a MAC over its content and the link before it:

    link(n) = HMAC-SHA256( K_mac, "vericam audit record\\n" || link(n-1) || "\\n" || canonical JSON of record n )

with link(0) = 64 zeros. K_mac derives (HKDF-SHA256) from the **audit key**, 32 random bytes in
the key store (`keys/keys.sqlite`, table `audit_key`), created with the ARC key at `vericam
gateway init`. The key store is a separate file that never goes into the metadata database,
so whoever can only write to the database cannot compute a link.

What each attacker meets:
- **Editing a record** changes its content: its link no longer verifies. **Removing one**
  leaves a gap in `seq` and a broken link.
- **Appending a forged record** (the triggers refuse UPDATE and DELETE, not INSERT): its link
  cannot be made without K_mac. The gateway's next record chains onto it, but the forged one
  still fails, and only it.
- **Rewriting the whole chain** with recomputed links: every rewritten link fails.
- **Truncating the tail** leaves a valid, shorter chain. So after every commit that appended
  records, the head (seq, link) is written to the key store (`audit_head`): `verify` fails if
  the chain ends before the anchored head or its record at that seq differs. The anchor is
  written right after the metadata commit, so a crash between the two can leave records
  newer than the anchor: `verify` reports them as "not yet anchored", not as tampering.
- **Restoring an older copy of the database** looks like a truncation until the gateway's
  new records pass the old head, after which the anchor moves on. Signed **checkpoints**
  remember it: {seq, head link, count, time}, signed with an Ed25519 key that also derives
  from the audit key, every `CHECKPOINT_EVERY` records or `CHECKPOINT_EVERY_MS` (checked when
  a record is appended) and on demand (`vericam audit checkpoint`). The count is of records
  1..seq, which the gateway numbers without gaps, so it equals seq (counting rows at scale
  would cost a scan per checkpoint); `verify` checks the log holds exactly that many. They
  are kept in the key store (`audit_checkpoint`) and exported as JSON lines to write-once
  storage. `verify` checks every checkpoint kept and every one given: a restored database
  ends before a checkpoint, or holds another record at its seq.
- **Restoring the database and the key store together** (a whole-host backup) is consistent
  in itself; only the checkpoints exported off the host show it.
Whoever holds the key store AND the database can forge records and re-sign checkpoints; what
they cannot change is a checkpoint already in write-once storage, so everything up to the
newest exported checkpoint stays fixed (docs/SECURITY.md).

Retention: trimming the oldest records at a checkpoint
------------------------------------------------------
The trail is personal data too (who viewed what, failed logins, image hashes), so it has a rule
(`audit_days`, gateway.governance.retention_rules). `trim` deletes the oldest records 1..S, S
the newest record past the rule (records before it were written before it, whatever clock
stamped them), at a checkpoint signed for record S (the
gateway holds the audit key, so it signs one for S if none exists; S's own link is checked
under the key first):
1. the key store notes the trim (S, link(S), the checkpoint's line), then
2. one transaction names S in `audit_trims` (the delete trigger allows deleting through it and
   nothing else), deletes records 1..S, and appends a "trim audit trail" record.
A crash between the two leaves the whole chain, which still verifies; the next sweep trims it.
`verify` then starts at S + 1 from link(S) as the key store and the signed checkpoint give it:
whoever deletes more records, or rewrites the first kept one, fails as before. Checkpoints
before S can no longer be compared with records; their signatures are still checked.

Records written before the audit key existed
--------------------------------------------
A data directory made before the key (hash-chained, `link(n) = SHA-256(link(n-1) || "\\n" ||
JSON)`) is keyed at the first audited action after the upgrade (or at `gateway init`, or at
`vericam audit checkpoint`): the audit key is created, the key store notes the record it keys
the chain from (`keyed_from`), and that record is an explicit switch-over record
(`what = "key audit trail"`, naming the last hash-chained record and its hash). From there on
every link is a MAC. Its MAC covers the last unkeyed link, which covers every record before
it, so the old records can no longer be rewritten unseen either. They are not migrated
(recomputed under the key): the triggers would have to be dropped to do it, a police export
already handed out cites record hashes that would no longer exist, and a re-MAC would bless
whatever the old records hold today without making them any more trustworthy. What no scheme
can show is a record forged before the switch-over: the old chain never resisted that.

`append` must be called inside `Store.transaction()`: the record commits or rolls back with
the change it describes. The rows themselves are written and read by `store.audit`
(gateway.storage.audit_log); this module decides what goes in them and checks the chain.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

GENESIS = "0" * 64
FIELDS = ("seq", "at_ms", "who", "what", "why", "subject", "key_id", "content_hash", "detail")
SWITCH_OVER = "key audit trail"

CHECKPOINT_EVERY = 256                # records since the last checkpoint, or
CHECKPOINT_EVERY_MS = 10 * 60 * 1000  # this long since it, when a record is appended
CHECKPOINT_VERSION = 1
MAX_RECORD_PROBLEMS = 100             # records listed one by one; the rest are counted

_RECORD_LABEL = b"vericam audit record\n"
_CHECKPOINT_LABEL = b"vericam audit checkpoint\n"


class AuditError(Exception):
    """The audit trail cannot do what was asked; the message says why and what to do."""


def _body(record: dict) -> str:
    return json.dumps({k: record.get(k) for k in FIELDS}, sort_keys=True, separators=(",", ":"))


def record_hash(prev_hash: str, record: dict) -> str:
    """The unkeyed link of a record written before the chain was keyed (anyone can compute it)."""
    return hashlib.sha256(f"{prev_hash}\n{_body(record)}".encode()).hexdigest()


def record_mac(mac_key: bytes, prev_link: str, record: dict) -> str:
    """The keyed link of a record: HMAC-SHA256 over the previous link and the record's fields."""
    msg = _RECORD_LABEL + prev_link.encode() + b"\n" + _body(record).encode()
    return hmac.new(mac_key, msg, hashlib.sha256).hexdigest()


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


class AuditKeys:
    """What the key store's audit key gives: the chain's MAC key and the checkpoint signing key."""

    def __init__(self, secret: bytes, keyed_from: int):
        self.keyed_from = keyed_from
        self.mac_key = _derive(secret, b"vericam audit mac v1")
        self.text_key = _derive(secret, b"vericam audit text fingerprint v1")
        self._signer = Ed25519PrivateKey.from_private_bytes(_derive(secret, b"vericam audit checkpoint v1"))
        self.public = self._signer.public_key().public_bytes(serialization.Encoding.Raw,
                                                             serialization.PublicFormat.Raw).hex()

    def verifies(self, record: dict) -> bool:
        """Whether the record's link is right: a MAC from `keyed_from` on; before it, the old
        unkeyed hash (or a MAC, for a record written after a restore to before the switch-over)."""
        if record["seq"] < self.keyed_from and record_hash(record["prev_hash"], record) == record["hash"]:
            return True
        return hmac.compare_digest(record_mac(self.mac_key, record["prev_hash"], record), record["hash"])

    def sign(self, fields: dict) -> str:
        fields = dict(fields, pub=self.public)
        sig = self._signer.sign(_CHECKPOINT_LABEL + _canonical(fields).encode())
        return json.dumps(dict(fields, sig=sig.hex()), sort_keys=True, separators=(",", ":"))

    def signature_ok(self, checkpoint: dict) -> bool:
        fields = {k: v for k, v in checkpoint.items() if k != "sig"}
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.public)).verify(
                bytes.fromhex(checkpoint["sig"]), _CHECKPOINT_LABEL + _canonical(fields).encode())
        except InvalidSignature:
            return False
        return True


def _canonical(fields: dict) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(at_ms: int) -> str:
    return _dt.datetime.fromtimestamp(at_ms / 1000, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def keys_of(store) -> AuditKeys | None:
    """The audit keys in this store's key store, or None before the chain is keyed."""
    found = store.keys.audit_key()
    return _keys(*found) if found else None


@functools.lru_cache(maxsize=8)
def _keys(secret: bytes, keyed_from: int) -> AuditKeys:
    return AuditKeys(secret, keyed_from)  # derived once per process, not once per record


# Free text: kept as a fingerprint, not in clear ------------------------------------------------
# The trail outlives the data it describes (3 years against 90 days for an alarm-handling note),
# so free text never goes into it in clear: `append(..., texts={"note": note})` records the
# text's length and an HMAC-SHA256 under a key derived from the audit key. A dispute can still
# check a note someone produces against the record (`text_matches`), but nobody can read the
# note back, nor confirm a guess at a short note without the key store (a plain SHA-256 of
# "false alarm, cat" would be guessed from a list).
def _fingerprint(keys: AuditKeys, text: str) -> dict:
    return {"length": len(text), "hmac_sha256": hmac.new(keys.text_key, text.encode(), hashlib.sha256).hexdigest()}


def text_matches(store, record: dict, name: str, text: str) -> bool:
    """Whether `text` is the free text the record fingerprinted under `name` (e.g. a closed alarm's note)."""
    keys = keys_of(store)
    kept = (record.get("detail") or {}).get(name)
    if keys is None or not isinstance(kept, dict) or "hmac_sha256" not in kept:
        return False
    return hmac.compare_digest(_fingerprint(keys, text)["hmac_sha256"], kept["hmac_sha256"])


# Appending -------------------------------------------------------------------------------------
def append(store, who: str, what: str, why: str, *, at_ms: int, subject: str | None = None,
           key_id: str | None = None, content_hash: str | None = None, detail: dict | None = None,
           texts: dict[str, str] | None = None) -> dict:
    """Append one record to the chain. Call inside `store.transaction()`. `texts` are free text
    (notes) the record refers to: each goes into `detail` under its name as a fingerprint only."""
    if not store.in_transaction:
        raise RuntimeError("audit.append must run inside store.transaction(), with the change it records")
    if not who or not what or not why:
        raise ValueError("an audit record needs who, what and why")
    seq, prev, keys = _next(store, at_ms)
    if texts:
        detail = {**(detail or {}), **{name: _fingerprint(keys, text) for name, text in texts.items()}}
    return _write(store, keys, seq, prev, who=who, what=what, why=why, at_ms=at_ms, subject=subject,
                  key_id=key_id, content_hash=content_hash, detail=detail)


def key_the_trail(store) -> int:
    """Create the audit key if the key store has none (`gateway init`; on an existing data
    directory this writes the switch-over record). Returns the record the chain is keyed from."""
    with store.transaction():
        _next(store, _now_ms())
    return keys_of(store).keyed_from


def _next(store, at_ms: int) -> tuple[int, str, AuditKeys]:
    """Lock the head; (the next seq, the link before it, the keys), keying the chain first if need be."""
    last = store.audit.lock_head()  # gateways sharing one PostgreSQL database append one at a time
    if last is None:  # every record trimmed by retention: the chain goes on from the trim point
        trimmed = store.keys.audit_trim()
        last = (trimmed[0], trimmed[1]) if trimmed else None
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    keys = keys_of(store) or _keys(*store.keys.create_audit_key(keyed_from=seq))
    if seq == keys.keyed_from and seq > 1:  # the first keyed record of a chain begun without a key
        rec = _write(store, keys, seq, prev, who="gateway", what=SWITCH_OVER, at_ms=at_ms,
                     why="the audit trail is keyed from this record on: each link is an HMAC under the key "
                         "store's audit key; the records before it are hash-chained only",
                     detail={"hash_chained_until": seq - 1, "last_hash": prev})
        seq, prev = seq + 1, rec["hash"]
    return seq, prev, keys


def _write(store, keys: AuditKeys, seq: int, prev: str, *, who: str, what: str, why: str, at_ms: int,
           subject: str | None = None, key_id: str | None = None, content_hash: str | None = None,
           detail: dict | None = None) -> dict:
    rec = {"seq": seq, "at_ms": int(at_ms), "who": who, "what": what, "why": why, "subject": subject,
           "key_id": key_id, "content_hash": content_hash,
           "detail": json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))}
    rec["prev_hash"] = prev
    rec["hash"] = record_mac(keys.mac_key, prev, rec)
    store.audit.insert(rec)  # its head is anchored in the key store after the commit
    last = store.audit.last_checkpoint()
    now = _now_ms()
    if last is None or seq - last[0] >= CHECKPOINT_EVERY or (seq > last[0] and now - last[1] >= CHECKPOINT_EVERY_MS):
        _keep_checkpoint(store, keys, seq, rec["hash"], now)
    return rec


# Checkpoints -----------------------------------------------------------------------------------
def _keep_checkpoint(store, keys: AuditKeys, seq: int, head: str, at_ms: int) -> str:
    line = keys.sign({"v": CHECKPOINT_VERSION, "seq": seq, "head": head, "count": seq, "at_ms": at_ms,
                      "at": _iso(at_ms)})
    store.audit.keep_checkpoint(seq, at_ms, line)  # in the key store once the transaction commits
    return line


def checkpoint(store) -> str | None:
    """Sign a checkpoint of the chain's head now, keep it in the key store, and return its JSON
    line; None while the trail is empty. AuditError if the head itself does not verify."""
    with store.transaction():
        now = _now_ms()
        seq, prev, keys = _next(store, now)
        head = store.audit.get(seq - 1) if seq > 1 else None
        if head is None:
            return None
        if not keys.verifies(head):
            raise AuditError(f"the newest audit record ({head['seq']}) does not verify under the audit key, so it "
                             "is not signed: run `vericam audit verify` and investigate")
        return _keep_checkpoint(store, keys, head["seq"], prev, now)


def trim(store, older_than_ms: int, now_ms: int, who: str = "retention-sweeper") -> int:
    """Delete every record older than `older_than_ms` from the start of the chain, through the last
    one before the first younger record, at a checkpoint signed for that record (see "Retention"
    above); how many records went (0: none is due)."""
    with store.transaction():
        head_now = store.audit.lock_head()  # one trimmer at a time, whichever gateway sweeps
        if head_now is None:
            return 0
        trimmed = store.keys.audit_trim()
        done = trimmed[0] if trimmed else 0
        first = store.audit.first_seq()
        if trimmed and first is not None and first <= done:
            point = done  # a crash after the key store noted the trim: finish it
        else:
            # The newest record past the rule, by seq: the order records were written in. Those before
            # it were written earlier, whatever clock stamped them, so they go with it.
            point = store.audit.last_before(older_than_ms)
            if point is None or point <= done or point < (first or 1):
                return 0
        rec = store.audit.get(point)
        keys = keys_of(store)
        if rec is None or keys is None:
            return 0
        if not keys.verifies(rec):
            raise AuditError(f"audit record {point} does not verify under the audit key: not trimming a chain that "
                             "does not verify; run `vericam audit verify`")
        line = store.keys.audit_checkpoint_line(point)
        if line is None or parse_checkpoint(line)["head"] != rec["hash"]:
            line = keys.sign({"v": CHECKPOINT_VERSION, "seq": point, "head": rec["hash"], "count": point,
                              "at_ms": now_ms, "at": _iso(now_ms)})
            store.keys.add_audit_checkpoint(point, now_ms, line)
        store.keys.trim_audit(point, rec["hash"], line)  # step 1: in the key store before any record goes
        n = store.audit.trim(point, rec["hash"], now_ms)
        append(store, who, "trim audit trail", "retention: the oldest audit records are past the rule; the chain "
               "verifies from the signed checkpoint of the last one deleted", at_ms=now_ms, subject=f"audit:{point}",
               detail={"through_seq": point, "head": rec["hash"], "records": n})
    return n


def checkpoints(store) -> list[str]:
    """Every checkpoint kept in the key store, oldest first, as signed JSON lines."""
    return store.keys.audit_checkpoints()


def parse_checkpoint(line: str) -> dict:
    """A checkpoint from its JSON line (signature not checked). ValueError if it is not one."""
    try:
        cp = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(cp, dict) or cp.get("v") != CHECKPOINT_VERSION:
        raise ValueError(f"not a version {CHECKPOINT_VERSION} audit checkpoint")
    for name in ("seq", "count", "at_ms"):
        if not isinstance(cp.get(name), int) or isinstance(cp.get(name), bool) or cp[name] < (name == "seq"):
            raise ValueError(f"its {name} is not a {'record number' if name == 'seq' else 'count'}")
    for name, size in (("head", 64), ("pub", 64), ("sig", 128)):
        value = cp.get(name)
        if not isinstance(value, str) or len(value) != size or value.strip("0123456789abcdef"):
            raise ValueError(f"its {name} is not {size} hex digits")
    return cp


def read_checkpoints(path: str | Path) -> list[tuple[str, str]]:
    """(where, line) for each non-blank line of an exported checkpoint file."""
    path = Path(path)
    return [(f"{path.name} line {n}", line) for n, line in enumerate(path.read_text().splitlines(), 1)
            if line.strip()]


# Verifying -------------------------------------------------------------------------------------
@dataclass
class Verdict:
    records: int = 0
    anchored_seq: int | None = None
    unanchored: int = 0
    problems: list[str] = field(default_factory=list)
    keyed_from: int | None = None       # the first record the audit key keys (None: not keyed yet)
    checkpoints: int = 0                # signed checkpoints that match the log
    checkpoint_seq: int | None = None   # the newest of them
    trimmed_through: int = 0            # records 1..this were deleted by retention (0: none)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {"ok": self.ok, "records": self.records, "anchored_seq": self.anchored_seq,
                "unanchored": self.unanchored, "problems": self.problems, "keyed_from": self.keyed_from,
                "checkpoints": self.checkpoints, "checkpoint_seq": self.checkpoint_seq,
                "trimmed_through": self.trimmed_through}


def verify(store, exported: Iterable[tuple[str, str]] = ()) -> Verdict:
    """Walk the whole chain, checking each link under the audit key, the head anchored in the key
    store, every checkpoint kept there, and every `(where, JSON line)` checkpoint in `exported`."""
    v = Verdict()
    keys = keys_of(store)
    v.keyed_from = keys.keyed_from if keys else None
    prev, expect_seq = GENESIS, 1
    by_seq: dict[int, tuple[str, int]] = {}  # seq -> (link, records up to it)
    failed = 0
    trimmed = store.keys.audit_trim()
    chain = store.audit.chain()
    if trimmed and chain and chain[0]["seq"] > 1:  # the chain kept after a trim starts from its checkpoint
        v.trimmed_through = trimmed[0]
        prev, expect_seq = trimmed[1], trimmed[0] + 1
        by_seq[trimmed[0]] = (trimmed[1], trimmed[0])
        v.records = trimmed[0]
        _check_trim(v, keys, trimmed)
    for rec in chain:
        v.records += 1
        if rec["seq"] != expect_seq:
            v.problems.append(f"records {expect_seq}..{rec['seq'] - 1} are missing (removed from the log)")
        if rec["prev_hash"] != prev:
            v.problems.append(f"record {rec['seq']}: its link to the previous record is broken "
                              "(the previous record was edited or removed)")
        if not (keys.verifies(rec) if keys else record_hash(rec["prev_hash"], rec) == rec["hash"]):
            failed += 1
            if failed <= MAX_RECORD_PROBLEMS:
                v.problems.append(f"record {rec['seq']} was edited or forged: it does not verify under the audit key"
                                  if keys else f"record {rec['seq']} was edited: its content does not match its hash")
        prev, expect_seq = rec["hash"], rec["seq"] + 1
        by_seq[rec["seq"]] = (rec["hash"], v.records)
    if failed > MAX_RECORD_PROBLEMS:
        v.problems.append(f"... and {failed - MAX_RECORD_PROBLEMS} more records do not verify")
    if v.trimmed_through:
        v.records -= v.trimmed_through  # `records` counts the records the log holds
    last_seq = expect_seq - 1
    _check_anchor(store, v, by_seq, last_seq)
    _check_checkpoints(v, keys, [("key store", line) for line in checkpoints(store)] + list(exported),
                       by_seq, last_seq)
    return v


def _check_trim(v: Verdict, keys: AuditKeys | None, trimmed: tuple[int, str, str]) -> None:
    """The trim point the key store names must be a checkpoint signed by this gateway, of that link."""
    seq, head, line = trimmed
    try:
        cp = parse_checkpoint(line)
    except ValueError as exc:
        v.problems.append(f"the audit trail's trim point (record {seq}) has no valid checkpoint: {exc}")
        return
    if keys is None or cp["pub"] != keys.public or not keys.signature_ok(cp) or cp["seq"] != seq or cp["head"] != head:
        v.problems.append(f"the audit trail's trim point (record {seq}) is not certified by a checkpoint signed with "
                          "this gateway's audit key: the key store's trim record was altered")


def _check_anchor(store, v: Verdict, by_seq: dict, last_seq: int) -> None:
    anchor = store.keys.audit_anchor()
    if anchor is None:
        if v.records:
            v.problems.append("the key store holds no audit head although the log has records: "
                              "the key store was replaced or the head removed")
        return
    v.anchored_seq, head = anchor
    if last_seq < anchor[0]:
        v.problems.append(f"the log ends at record {last_seq} but the key store's head is record {anchor[0]}: "
                          "records were removed from the end")
    elif by_seq.get(anchor[0], (None,))[0] != head:
        v.problems.append(f"record {anchor[0]} differs from the head kept in the key store: "
                          "the log was rewritten")
    else:
        v.unanchored = last_seq - anchor[0]


def _check_checkpoints(v: Verdict, keys: AuditKeys | None, given: list[tuple[str, str]], by_seq: dict,
                       last_seq: int) -> None:
    if given and keys is None:
        v.problems.append("checkpoints were given but the key store holds no audit key to check them with: "
                          "the key store was replaced")
        return
    seen: set[str] = set()
    for where, line in given:
        try:
            cp = parse_checkpoint(line)
        except ValueError as exc:
            v.problems.append(f"{where}: not an audit checkpoint: {exc}")
            continue
        if _canonical(cp) in seen:  # the same checkpoint kept in the key store and exported
            continue
        seen.add(_canonical(cp))
        seq, when = cp["seq"], _iso(cp["at_ms"])
        if cp["pub"] != keys.public:
            v.problems.append(f"{where}: the checkpoint of record {seq} was signed by another key, not this "
                              "gateway's audit key")
        elif not keys.signature_ok(cp):
            v.problems.append(f"{where}: the checkpoint of record {seq} has a bad signature (forged or altered)")
        elif seq < v.trimmed_through:
            continue  # its records were trimmed by retention: only its signature can still be checked
        elif seq > last_seq:
            v.problems.append(f"a signed checkpoint at record {seq} lies beyond the log's end at record {last_seq} "
                              f"({when}, {where}): the database was restored from an older copy, or its newest "
                              "records were removed")
        elif by_seq.get(seq, (None,))[0] != cp["head"]:
            v.problems.append(f"record {seq} differs from the signed checkpoint of {when} ({where}): the log was "
                              "rewritten, or restored from an older copy and continued")
        elif by_seq[seq][1] != cp["count"]:
            v.problems.append(f"the log holds {by_seq[seq][1]} records up to record {seq}, the signed checkpoint "
                              f"of {when} ({where}) counted {cp['count']}: records were removed or added")
        else:
            v.checkpoints += 1
            v.checkpoint_seq = max(seq, v.checkpoint_seq or 0)


def records(store, what: str | None = None, subject: str | None = None) -> list[dict]:
    """The records of one kind and/or subject, oldest first, `detail` decoded."""
    return store.audit.records(what, subject)
