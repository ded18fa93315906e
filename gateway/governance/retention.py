"""Retention: the rules as validated configuration, the sweeper that enforces them, and reconciliation.

The rules themselves, one per class of personal data, are the table in
`gateway.governance.retention_rules`; `RetentionPolicy` is that table as configured.

Theory of operation
-------------------
**When an image is due.** Every image has a deletion day (`kek_day`): the UTC day of its alarm
plus `image_days` (7), or plus `hold_days` (30) while a police hold covers it. It is due at
00:00 UTC of that day (`delete_at_ms`), so it is deleted between 6 and 7 days after its
alarm (29 and 30 under a hold): never later than the rule. Whole days are the unit because
the data key of every image is wrapped by its deletion day's KEK: when the day starts, all of
the day's images are due at once, the sweeper deletes them and then destroys the day's KEK.
There is no moment when an expired image still has a live key (the crypto-shredding test).

**The sweeper** reads the due images (`RetentionQueries.due`: `delete_at_ms <= now`, oldest first,
one batch at a time) on the index `images_by_delete_at`, so a sweep reads only what has expired:
when nothing has, it is one index probe, whatever is stored. For each batch it
  1. deletes the blobs (`gateway.storage.blobstore`: files are truncated then unlinked, so space held
     by an open descriptor comes back, and their directories fsynced; S3 objects go in
     DeleteObjects batches of up to 1000),
  2. deletes the rows and appends one audit record per image (key id, content hash) in one
     transaction.
Files go first: a crash after (1) leaves due rows whose files are gone; they are still due,
so the next sweep (the gateway sweeps at start) finishes them. A crash can never leave a
file without a row, and never a not-yet-due row without its file.
After the images, every KEK whose day has started and that no image row still names is
destroyed (audited first, then destroyed: a crash in between leaves the record, and the next
sweep destroys the key without writing a second one; it never skips the destruction). Then
the day's key prefix (`DAY/`) is cleared of any blob that no row names, such as one whose
row was rolled back while the object store was down: it is ciphertext under a KEK that no
longer exists, and it is deleted and audited. Blobs of images under a police hold stay under
their first deletion day's prefix and still have rows, so they are kept. Then activity-log
records of customers whose relationship ended more than `activity_years` ago are purged in
batches.

**The other classes** of the retention table (`gateway.governance.retention_rules`) follow, each
in its own transactions and each deletion audited: activity of devices without a customer
(once a day, by whole days), customers' identities a year after the relationship ended (name
and sites erased, the id replaced by a pseudonym), alarm-handling notes, hold rows (a hold
whose images are all gone ends first), exports the gateway wrote (files first, then the row
and its record: a crash leaves a row whose files are gone, which the next sweep finishes), and
last the audit trail, trimmed once a day at a signed checkpoint (`audit.trim`).

**When an image's clock starts** (`image_clock_ms`): the alarm's own time on the device's
clock, never later than the gateway's receipt; the receipt only when the device clock was unset.

**Several sweepers.** Every gateway worker runs its own sweeper; with PostgreSQL they share
the rows (and, on one machine, the key store). Two of them may pick the same due rows and
both delete the blobs, which is harmless (a blob delete is idempotent), but the row deletes
and their audit records go one batch at a time under the `retention-sweeper` lock, and only
the sweeper whose row delete removed a row audits it. A KEK's destruction is
audited once (the record is looked for under the same lock) and reported by the one sweeper
whose `destroy` erased it. So each deletion has exactly one record, whoever swept.

**Never for disk space.** Nothing here deletes anything before it is due. When the disk
fills, ingest stops and logs `INGEST STOPPED` (gateway.ingest.service); evidence under a hold is
never traded for space.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from gateway.governance import audit
from gateway.storage.blobstore import BlobStoreError, key_of, path_of
from gateway.storage.store import Store

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

# The longest any image may be kept: 30 days after its alarm, under a police hold. This is the
# ceiling the ARC promises households in its privacy policy (design rule 4) and the basis on
# which it keeps these images at all (GDPR art. 5(1)(e), storage limitation: no longer than the
# stated purpose needs). It is a product and contractual commitment, not a figure taken from a
# statute; counsel may set a lower ceiling in configuration, never a higher one.
LEGAL_MAX_HOLD_DAYS = 30
CONFIG_FILE = "retention.toml"
SWEEPER = "retention-sweeper"


class RetentionConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RetentionPolicy:
    """The rules in force: `gateway.governance.retention_rules.RULES`, each within its maximum."""
    image_days: int = 7          # an image is due 7 days after its alarm's day
    hold_days: int = 30          # ... or 30 under a police hold, never more (LEGAL_MAX_HOLD_DAYS)
    activity_years: int = 3      # activity log: kept until 3 years after the relationship ends
    identity_days: int = 365     # name, address, customer id: at most 12 months after it ends
    note_days: int = 90          # alarm-handling notes: after the alarm is closed
    hold_record_days: int = 365  # police hold rows: after the hold ended
    export_days: int = 30        # exports the gateway wrote: after they were written
    audit_days: int = 1096       # audit records: after the record (trimmed at a signed checkpoint)
    backup_days: int = 730       # backups: rolling (the backup tool enforces it, see OPERATING.md)
    handover: str = "end"        # what handing a hold's material to the police does: end | shorten | keep
    handover_days: int = 0       # with "shorten": the hold ends this many days after the handover
    sweep_interval_s: float = 60.0
    batch: int = 500

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        from gateway.governance.retention_rules import BY_SETTING, HANDOVER_RULES

        for name in (*BY_SETTING, "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise RetentionConfigError(f"retention {name} must be a whole number >= 1, got {v!r}")
        for name, rule in BY_SETTING.items():
            v = getattr(self, name)
            if v > rule.maximum:
                raise RetentionConfigError(
                    f"retention {name} = {v} is above the legal maximum of {rule.maximum} {rule.unit} "
                    f"for {rule.data_class} ({rule.what}, counted from {rule.clock.split(';')[0]}): "
                    "configure at most the maximum (see docs/OPERATING.md, the retention table)")
        if self.image_days > self.hold_days:
            raise RetentionConfigError(f"retention image_days = {self.image_days} is longer than hold_days = "
                                       f"{self.hold_days}: a hold must not shorten retention")
        if self.handover not in HANDOVER_RULES:
            raise RetentionConfigError(f"retention handover = {self.handover!r}: say one of "
                                       f"{', '.join(HANDOVER_RULES)}")
        if not isinstance(self.handover_days, int) or isinstance(self.handover_days, bool) or \
                not 0 <= self.handover_days <= self.hold_days:
            raise RetentionConfigError(f"retention handover_days = {self.handover_days!r} must be a whole number "
                                       f"from 0 to hold_days ({self.hold_days})")
        if not (isinstance(self.sweep_interval_s, (int, float)) and 0 < self.sweep_interval_s <= 3600):
            raise RetentionConfigError(f"retention sweep_interval_s must be in (0, 3600], got "
                                       f"{self.sweep_interval_s!r}: a sweep at least every hour")

    def days_of(self, data_class: str) -> int:
        """The configured period of a data class, in days (years as 365.25 days, rounded up)."""
        from gateway.governance.retention_rules import BY_CLASS, as_days

        rule = BY_CLASS[data_class]
        return as_days(getattr(self, rule.setting), rule.unit)

    @classmethod
    def load(cls, data_dir: str | Path, **overrides) -> "RetentionPolicy":
        """Defaults, then `DATA/retention.toml` ([retention] table), then explicit overrides."""
        values: dict = {}
        path = Path(data_dir) / CONFIG_FILE
        if path.exists():
            try:
                table = tomllib.loads(path.read_text(encoding="utf-8")).get("retention", {})
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise RetentionConfigError(f"{path} is not valid TOML: {exc}") from None
            if not isinstance(table, dict):
                raise RetentionConfigError(f"{path}: 'retention' must be a table ([retention])")
            unknown = set(table) - {f for f in cls.__dataclass_fields__}
            if unknown:
                raise RetentionConfigError(f"{path}: unknown retention settings {sorted(unknown)}")
            values.update(table)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def as_dict(self) -> dict:
        return asdict(self) | {"legal_max_hold_days": LEGAL_MAX_HOLD_DAYS}


def record_policy(store: Store, policy: RetentionPolicy, now_ms: int, who: str = "gateway") -> bool:
    """Audit the rules in force when they differ from the last ones recorded. True if recorded."""
    current = policy.as_dict()
    if store.audit.last_detail("configure retention") == current:
        return False
    with store.transaction():
        audit.append(store, who, "configure retention", "retention rules in force at start "
                     f"(defaults, {CONFIG_FILE}, command line)", at_ms=now_ms, detail=current)
    return True


# The customer relationship's end: what the activity and identity clocks run from -----------
class CustomerError(ValueError):
    pass


def end_relationship(store: Store, customer: str, ended_at_ms: int, by: str, now_ms: int, why: str,
                     role: str | None = None) -> dict:
    """Record the end of a customer relationship (audited); the activity log's and the customer's
    identity's retention clocks run from it. A date in the future, before the relationship began,
    or a second end are refused: an end date moved later would stretch every clock."""
    from gateway.governance.users import UserError, act_as

    try:
        role_source = act_as(store, by, "customers", role)  # the roles of `customers`, as the console has them
    except UserError as exc:
        raise CustomerError(str(exc)) from None
    why = (why or "").strip()
    if not why:
        raise CustomerError("say why the relationship ended (--reason), e.g. 'contract terminated'")
    if ended_at_ms > now_ms:
        raise CustomerError(f"the end date {utc_day(ended_at_ms)} is in the future: record it on or after the day "
                            "the relationship ends (a future end would start its clocks early)")
    with store.transaction():
        cust = store.customers.get(customer)
        if cust is None:
            raise CustomerError(f"no customer {customer}: see `vericam subject` for the customers")
        if cust["ended_at_ms"] is not None:
            raise CustomerError(f"the relationship with {customer} already ended on {utc_day(cust['ended_at_ms'])}")
        if utc_day(ended_at_ms) < utc_day(cust["started_at_ms"]):  # by days: it may end on the day it began
            raise CustomerError(f"the end date {utc_day(ended_at_ms)} is before the relationship began "
                                f"({utc_day(cust['started_at_ms'])})")
        ended_at_ms = max(ended_at_ms, cust["started_at_ms"])  # ended the day it began: not before it began
        store.customers.end(customer, ended_at_ms)
        audit.append(store, by, "end customer relationship", why, at_ms=now_ms, subject=customer,
                     detail={"ended_at_ms": ended_at_ms, "ended_on": utc_day(ended_at_ms).isoformat(),
                             "role_source": role_source})
    return {"customer": customer, "ended_on": utc_day(ended_at_ms).isoformat(), "role_source": role_source}


# Days and times ----------------------------------------------------------------------------
def utc_day(ms: int) -> _dt.date:
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).date()


def deletion_day(alarm_ms: int, days: int) -> str:
    """The deletion day of an image whose alarm happened at `alarm_ms` (`image_clock_ms`): the
    alarm's UTC day plus `days` (`image_days`, or `hold_days` under a police hold). The image is
    due at 00:00 UTC of that day (`gateway.storage.captures.due_at_ms`), and the day names the KEK
    that wraps it."""
    return (utc_day(alarm_ms) + _dt.timedelta(days=days)).isoformat()


def device_ms(t: int | None) -> int | None:
    """A device timestamp (Unix seconds, PROTOCOL.md; milliseconds tolerated) in epoch ms, or
    None when the device clock was unset (0) or no time was given."""
    if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
        return None
    return t if t > 100_000_000_000 else t * 1000


def image_clock_ms(alarm: dict, captured_at: int | None = None) -> int:
    """When an alarm's images' retention clock starts: the alarm's own time.

    That is the alarm event's device time `t`, else the capture's `captured_at` (taken at the
    alarm), in both cases never later than the gateway's first receipt of the alarm (a clock
    ahead of the gateway cannot stretch retention). Only when the device clock was unset (time
    0) does the receipt `received_at_ms` count: photos of a device whose clock was never set
    and that was offline may then be kept longer than 7 days after the alarm, by the outage
    (docs/OPERATING.md, "When the clock starts")."""
    received = alarm["received_at_ms"]
    own = device_ms(alarm.get("t")) or device_ms(captured_at)
    return received if own is None else min(own, received)


DAY_MS = 86_400_000
OTHER_CLASSES = ("identities_erased", "notes_erased", "holds_ended", "hold_records_deleted", "exports_deleted",
                 "audit_trimmed")


def audit_cutoff_ms(now_ms: int, days: int) -> int:
    """Audit records written before this are due: a record is kept until 00:00 UTC of its day plus
    `days`, as an image is (so the trail is trimmed once a day, each record younger than `days`)."""
    from gateway.storage.captures import due_at_ms

    return due_at_ms(utc_day(now_ms).isoformat()) - (days - 1) * DAY_MS


class ExportRefused(OSError):
    """Something in an export that the sweeper will not delete: neither a regular file, a
    directory nor a symbolic link (a device, a FIFO, a socket). The export is left, and said."""


def remove_export(path: Path, log: Callable[[str], None] | None = None) -> None:
    """Delete an export's file or directory tree, never following a symbolic link: each regular
    file truncated (opened with O_NOFOLLOW), then unlinked, then its directory synced; a link is
    unlinked itself, its target untouched, and said. Anything else is refused (`ExportRefused`).
    Gone already is fine."""
    import stat

    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        (log or (lambda line: None))(f"RETENTION: {path} in an export is a symbolic link (to "
                                     f"{os.readlink(path)!r}): the link is deleted, its target is not touched")
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
    elif stat.S_ISDIR(st.st_mode):
        with os.scandir(path) as entries:
            subs = [Path(e.path) for e in entries]
        for sub in subs:
            remove_export(sub, log)
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return
    elif stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between lstat and open
                raise ExportRefused(f"{path} in an export is no longer a regular file: not deleted")
            os.ftruncate(fd, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
    else:
        raise ExportRefused(f"{path} in an export is neither a regular file nor a directory (mode "
                            f"{stat.filemode(st.st_mode)}): not deleted, the export is kept until it is removed by hand")
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def register_export(store: Store, kind: str, path: Path, subject: str | None, by: str, now_ms: int,
                    content_hash: str | None = None) -> int:
    """Note an export just written, so that retention deletes it `export_days` later."""
    with store.transaction():
        return store.exports.add(kind, str(Path(path).resolve()), subject, by, now_ms, content_hash)


def years_after(ms: int, years: int) -> int:
    t = _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc)
    try:
        t = t.replace(year=t.year + years)
    except ValueError:  # 29 February
        t = t.replace(year=t.year + years, day=28)
    return int(t.timestamp() * 1000)


def alarm_ms(store: Store, device: str, alarm_id: str) -> int:
    """When the alarm happened, for its images' retention (`image_clock_ms`): its own time, else
    its earliest stored capture's time, else when the gateway received it."""
    row = store.alarms.get(device, alarm_id)
    if row is None:
        raise LookupError(f"no alarm {alarm_id} of device {device}")
    taken = [device_ms(c["captured_at"]) for c in store.captures.stored_of_alarm(device, alarm_id)]
    taken = [t for t in taken if t is not None]
    return image_clock_ms(row, min(taken) if taken else None)


# Deleting images ---------------------------------------------------------------------------
def delete_images(store: Store, rows: list, who: str, why: str, now_ms: int,
                  on_files_gone: Callable[[], None] | None = None) -> int:
    """Blobs first (durably gone), then rows + one audit record each in one commit.

    If the blob store fails, BlobStoreError is raised before any row changes: still due, retried.
    Several sweepers (gateway workers sharing one PostgreSQL database) may pick the same rows:
    deleting a blob twice is harmless, and only the sweeper whose DELETE removed a row audits
    it. Returns how many rows this call removed."""
    store.blobs.delete([key_of(r["blob_path"]) for r in rows])
    if on_files_gone:
        on_files_gone()  # test hook: the crash window between files and rows
    removed = 0
    with store.transaction():
        store.retention.serialise_sweepers()  # one sweeper's batch at a time: no row-lock cycles between them
        for r in rows:
            if not store.retention.delete_image(r["id"]):
                continue  # another sweeper (or an erasure) deleted it first, and audited it
            audit.append(store, who, "delete image", why, at_ms=now_ms, subject=r["id"],
                         key_id=f"kek:{r['kek_day']}", content_hash=r["sha256"],
                         detail={"device": r["device"], "alarm": r["alarm_id"], "due_at_ms": r["delete_at_ms"],
                                 "blob": r["blob_path"]})
            removed += 1
    return removed


def destroy_kek_if_spent(store: Store, kek: str, who: str, why: str, now_ms: int) -> bool:
    """Crypto-shred a KEK (a deletion day, or a hold's `DAY/hold-N`) once no image uses it.

    Audited first, then destroyed; True if this call destroyed it. The record is written once,
    under the sweepers' lock, by whichever caller finds none yet; every caller then destroys
    the KEK, and the shared key store lets exactly one of them see it go. A crash between the
    commit and the destruction leaves the record and a live KEK: the next sweep destroys it.
    A KEK some image still uses (due rows of a later batch, or left by a crash) is kept; the
    sweeper destroys it once they are deleted."""
    with store.transaction():
        store.retention.serialise_sweepers()
        if store.retention.kek_in_use(kek):
            return False
        if not store.audit.has("destroy kek", kek):
            audit.append(store, who, "destroy kek", why, at_ms=now_ms, subject=kek, key_id=f"kek:{kek}")
    return store.keys.destroy(kek)


@dataclass
class SweepReport:
    images_deleted: int = 0
    keks_destroyed: list[str] = field(default_factory=list)
    activity_purged: int = 0
    identities_erased: int = 0
    notes_erased: int = 0
    holds_ended: int = 0
    hold_records_deleted: int = 0
    exports_deleted: int = 0
    audit_trimmed: int = 0
    batches: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class Sweeper:
    """Deletes what is due, destroys spent KEKs, purges old activity logs. One per data dir."""

    def __init__(self, store: Store, policy: RetentionPolicy | None = None,
                 clock: Callable[[], float] = time.time, log: Callable[[str], None] | None = None):
        self.store = store
        self.policy = policy or RetentionPolicy()
        self.clock = clock
        self.log = log or (lambda line: None)
        self.on_files_gone: Callable[[], None] | None = None  # test hook (crash window)
        self._unowned_swept: _dt.date | None = None  # the day whose ownerless activity is purged

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def backlog(self) -> int:
        """Images past their deletion time and still stored: must stay 0 between sweeps."""
        return self.store.retention.backlog(self.now_ms())

    def sweep(self, max_batches: int | None = None) -> SweepReport:
        t0 = time.perf_counter()
        rep = SweepReport()
        now = self.now_ms()
        # The writer lock is shared with the ingest's worker when the sweeper runs inside the gateway.
        while max_batches is None or rep.batches < max_batches:
            with self.store.exclusive():
                rows = self.store.retention.due(now, self.policy.batch)
                if not rows:
                    break
                rep.images_deleted += delete_images(self.store, rows, SWEEPER,
                                                    "retention: its deletion day has come", now,
                                                    self.on_files_gone)
            rep.batches += 1
        with self.store.exclusive():
            rep.keks_destroyed = self._destroy_spent_keks(now)
            rep.activity_purged = self._purge_activity(now) + self._purge_unowned_activity(now)
            for day in rep.keks_destroyed:
                self._clear_day_prefix(day, now)
        with self.store.exclusive():
            rep.identities_erased = self._erase_identities(now)
            rep.notes_erased = self._erase_notes(now)
            rep.holds_ended, rep.hold_records_deleted = self._expire_hold_records(now)
        rep.exports_deleted = self._expire_exports(now)
        with self.store.exclusive():
            rep.audit_trimmed = audit.trim(self.store, audit_cutoff_ms(now, self.policy.audit_days), now, SWEEPER)
        self.store.blobs.tidy(utc_day(now).isoformat())
        rep.seconds = time.perf_counter() - t0
        if rep.images_deleted or rep.keks_destroyed or rep.activity_purged:
            self.log(f"retention sweep: {rep.images_deleted} images deleted, KEKs destroyed: "
                     f"{', '.join(rep.keks_destroyed) or 'none'}, {rep.activity_purged} activity records purged "
                     f"in {rep.seconds * 1000:.0f} ms")
        others = {k: v for k, v in rep.as_dict().items() if k in OTHER_CLASSES and v}
        if others:
            self.log("retention sweep: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in others.items()))
        return rep

    def _purge_unowned_activity(self, now: int) -> int:
        """Activity of devices with no customer (no relationship to end): each record `activity_years`
        after its own receipt, by whole days as images are (once a day, at the first sweep after
        00:00 UTC, the records of the day that has come due: none is kept longer than the rule)."""
        today = utc_day(now)
        if self._unowned_swept == today:
            return 0
        years = self.policy.activity_years
        before = years_after(int(_dt.datetime(today.year, today.month, today.day, tzinfo=_dt.timezone.utc)
                                 .timestamp() * 1000) + DAY_MS, -years)
        purged = 0
        for dev in self.store.retention.devices_without_customer():
            with self.store.transaction():
                n = self.store.retention.purge_activity_before(dev, before, self.policy.batch * 10)
                if n:
                    audit.append(self.store, SWEEPER, "purge activity log", f"retention: records of a device without "
                                 f"a customer, received over {years} years ago", at_ms=now, subject=f"device:{dev}",
                                 detail={"device": dev, "records": n})
            purged += n
            if n >= self.policy.batch * 10:
                return purged  # more of this day's records: the next sweep goes on
        self._unowned_swept = today
        return purged

    def _erase_identities(self, now: int) -> int:
        """Name, sites and customer id of relationships that ended `identity_days` ago: erased, the id
        replaced by a pseudonym the activity log keeps until its own rule ends it."""
        n = 0
        for cust in self.store.retention.identities_due(now - self.policy.identity_days * DAY_MS):
            pseudonym = "ended-" + secrets.token_hex(8)
            with self.store.transaction():
                self.store.retention.serialise_sweepers()
                devices = self.store.retention.erase_identity(cust["id"], pseudonym, now)
                if devices is None:
                    continue  # another sweeper erased it, and audited it
                audit.append(self.store, SWEEPER, "erase customer identity",
                             f"retention: the customer relationship ended over {self.policy.identity_days} days ago; "
                             "name and sites erased, the customer id replaced by this pseudonym",
                             at_ms=now, subject=pseudonym, detail={"devices": len(devices)})
            n += 1
        return n

    def _erase_notes(self, now: int) -> int:
        """The free text of alarm-handling notes `note_days` after the alarm was closed."""
        n = 0
        while True:
            due = self.store.retention.notes_due(now - self.policy.note_days * DAY_MS, self.policy.batch)
            if not due:
                return n
            with self.store.transaction():
                for a in due:
                    if self.store.retention.erase_note(a["device"], a["alarm_id"], now):
                        audit.append(self.store, SWEEPER, "erase alarm note", f"retention: the alarm was closed over "
                                     f"{self.policy.note_days} days ago", at_ms=now,
                                     subject=f"alarm:{a['device']}/{a['alarm_id']}")
                        n += 1

    def _expire_hold_records(self, now: int) -> tuple[int, int]:
        """Holds whose images are all gone end now; hold rows `hold_record_days` after their end go."""
        ended = deleted = 0
        with self.store.transaction():
            for hold_id in self.store.retention.holds_run_out():
                if self.store.retention.end_hold(hold_id, now):
                    audit.append(self.store, SWEEPER, "end hold", "retention: none of the hold's images is left",
                                 at_ms=now, subject=f"hold:{hold_id}")
                    ended += 1
        while True:
            due = self.store.retention.hold_records_due(now - self.policy.hold_record_days * DAY_MS, self.policy.batch)
            if not due:
                return ended, deleted
            with self.store.transaction():
                for h in due:
                    if self.store.retention.delete_hold(h["id"]):
                        audit.append(self.store, SWEEPER, "delete hold record", "retention: the hold ended over "
                                     f"{self.policy.hold_record_days} days ago", at_ms=now, subject=f"hold:{h['id']}")
                        deleted += 1

    def _expire_exports(self, now: int) -> int:
        """Exports the gateway wrote, `export_days` after writing: files first, then the row and its
        audit record (a crash in between leaves a row whose files are gone: the next sweep ends it)."""
        n = 0
        while True:
            due = self.store.exports.due(now - self.policy.export_days * DAY_MS, self.policy.batch)
            if not due:
                return n
            done = []
            for e in due:
                try:
                    remove_export(Path(e["path"]), self.log)
                except OSError as exc:  # left for the next sweep, and said
                    self.log(f"RETENTION: could not delete the export {e['path']}: {exc}")
                    continue
                done.append(e)
            if not done:
                return n
            with self.store.exclusive(), self.store.transaction():
                for e in done:
                    if self.store.exports.mark_deleted(e["id"], now):
                        audit.append(self.store, SWEEPER, "delete export", f"retention: {e['kind']} written over "
                                     f"{self.policy.export_days} days ago", at_ms=now, subject=e["subject"],
                                     content_hash=e["content_hash"], detail={"export": e["id"], "kind": e["kind"]})
                        n += 1

    def _destroy_spent_keks(self, now: int) -> list[str]:
        """Destroy each KEK whose day has started and that no image uses (`destroy_kek_if_spent`);
        the days whose KEK this call destroyed (this sweeper then clears their prefix)."""
        today = utc_day(now).isoformat()
        return [day for day in self.store.keys.live_days_until(today)
                if destroy_kek_if_spent(self.store, day, SWEEPER, "crypto-shredding: every image of the day "
                                        "is deleted, so its key-encryption key is destroyed", now)]

    def _purge_activity(self, now: int) -> int:
        """Activity log of customers whose relationship ended activity_years ago or more."""
        years = self.policy.activity_years
        # An end date before `now - years` (conservatively by whole years) is the candidate set;
        # the exact date check is per customer.
        cutoff = years_after(now, -years)
        purged = 0
        for cust in self.store.customers.ended_by(cutoff):
            if years_after(cust["ended_at_ms"], years) > now:
                continue
            for dev in self.store.devices.of_customer(cust["id"]):
                with self.store.transaction():
                    # a device's alarms stay while any of its images does (one under a hold)
                    n = self.store.retention.purge_activity(dev, self.policy.batch * 10)
                    if n:
                        audit.append(self.store, SWEEPER, "purge activity log",
                                     f"retention: customer relationship ended over {years} years ago",
                                     at_ms=now, subject=cust["id"], detail={"device": dev, "records": n})
                purged += n
            with self.store.transaction():
                if self.store.retention.forget_customer_ready(cust["id"]):  # an erased identity with nothing left
                    devices = self.store.retention.drop_revoked_devices(cust["id"])
                    self.store.retention.forget_customer(cust["id"])
                    audit.append(self.store, SWEEPER, "delete customer record", "retention: its activity log is "
                                 "purged and its identity erased; its revoked devices' rows go with it", at_ms=now,
                                 subject=cust["id"], detail={"devices_deleted": devices})
        return purged

    def _clear_day_prefix(self, day: str, now: int) -> None:
        """After day's KEK is destroyed: delete the blobs under `DAY/` that no image row names."""
        if len(day) != 10:  # a hold KEK (`DAY/hold-N`) has no key prefix of its own
            return
        stray = []
        try:
            for info in self.store.blobs.list(day + "/"):
                image_id = info.key.rsplit("/", 1)[-1].split(".", 1)[0]
                if not self.store.retention.image_exists(image_id):
                    stray.append(info.key)  # held images keep their key here and still have a row
            if not stray:
                return
            self.store.blobs.delete(stray)
        except BlobStoreError as exc:  # the KEK is gone already: `reconcile` finds what is left
            self.log(f"retention: could not clear the blobs of {day} that no row names: {exc}")
            return
        with self.store.transaction():
            for key in stray:
                audit.append(self.store, SWEEPER, "delete orphan file", "retention: a blob of a shredded day "
                             "that no image row names", at_ms=now, subject=path_of(key), key_id=f"kek:{day}")


class SweeperThread:
    """Runs `Sweeper.sweep` every `policy.sweep_interval_s` (and once at start) until stopped."""

    def __init__(self, sweeper: Sweeper, log: Callable[[str], None]):
        self.sweeper = sweeper
        self.log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sweeps = 0
        self.last: SweepReport | None = None

    def start(self) -> "SweeperThread":
        self._thread = threading.Thread(target=self._run, name="vericam-retention", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = self.sweeper.sweep()
                self.sweeps += 1
            except Exception as exc:  # log and try again next interval; never purge anything else
                self.log(f"RETENTION SWEEP FAILED: {type(exc).__name__}: {exc}; retrying in "
                         f"{self.sweeper.policy.sweep_interval_s:.0f} s")
            self._stop.wait(self.sweeper.policy.sweep_interval_s)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None


# Reconciliation ----------------------------------------------------------------------------
@dataclass
class Reconciliation:
    files_without_rows: list[str] = field(default_factory=list)
    rows_without_files: list[str] = field(default_factory=list)      # not yet due: evidence lost
    due_rows_without_files: list[str] = field(default_factory=list)  # a sweep interrupted: it finishes them
    repaired: int = 0

    @property
    def clean(self) -> bool:
        return not (self.files_without_rows or self.rows_without_files or self.due_rows_without_files)

    def as_dict(self) -> dict:
        return asdict(self) | {"clean": self.clean}


def reconcile(store: Store, repair: bool = False, now_ms: int | None = None, who: str = "reconcile",
              min_file_age_s: float = 60.0) -> Reconciliation:
    """Check blobs (files or objects) against image rows (a full scan: run it daily, not per sweep).

    Blobs younger than `min_file_age_s` are skipped: the ingest writes a blob just before the
    row that names it commits. With `repair`, orphan blobs are deleted and rows without blobs
    are deleted, each audited. Blobs are reported as `blobs/<key>`, whatever the engine."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    rec = Reconciliation()
    rows = {key_of(r["blob_path"]): r for r in store.retention.all_images()}
    cutoff = time.time() - min_file_age_s
    orphans = []
    present = set()
    for info in store.blobs.list():  # listed after the rows: a committed row's blob is listed
        present.add(info.key)
        if info.key not in rows and info.modified_s < cutoff:
            orphans.append(info.key)
            rec.files_without_rows.append(path_of(info.key))
    missing = []
    for key, r in rows.items():
        if key not in present:
            missing.append(r)
            (rec.due_rows_without_files if r["delete_at_ms"] <= now else rec.rows_without_files).append(r["id"])
    if repair:
        if orphans:
            store.blobs.delete(orphans)
            with store.transaction():
                for key in orphans:
                    audit.append(store, who, "delete orphan file", "reconcile: a blob no image row names",
                                 at_ms=now, subject=path_of(key))
        if missing:
            with store.exclusive():
                delete_images(store, missing, who, "reconcile: the image's blob file is missing", now)
        rec.repaired = len(orphans) + len(missing)
    return rec
