"""The retention table: every class of personal data at the ARC, its rule, its legal maximum, and when its clock starts.

This is the one place the rules are written down (docs/OPERATING.md, "The retention table",
prints the same table). Each row names
- `data_class`: what `vericam retention simulate` reports it as;
- `setting`: its key in `DATA/retention.toml` (`[retention]`), in days unless it says years;
- `default` and `maximum`: the seeds' period, and the ceiling no configuration may pass
  (a lower value is always allowed; a higher one is refused at start, naming this row);
- `clock`: the moment the period counts from;
- `action`: what the sweeper does when the period is over.
`gateway.governance.retention` validates the configuration against this table and its
sweeper carries out the actions; the table itself holds no logic.

Why these maxima. Images, the activity log, the customer's identity and backups take the
periods the reference privacy policies promise households (Sector Alarm SE/NO, SOS Alarm,
Securio, Alleato): they are commitments under GDPR art. 5(1)(e), not figures from a statute,
so counsel may lower them and only a code change raises them. The other rows are this
project's choice, argued in docs/OPERATING.md.
"""

from __future__ import annotations

from dataclasses import dataclass

HANDOVER_RULES = ("end", "shorten", "keep")  # what a police handover does to a hold (`handover`)


@dataclass(frozen=True)
class Rule:
    data_class: str
    setting: str
    what: str
    default: int
    maximum: int
    unit: str          # "days" or "years"
    clock: str
    action: str

    @property
    def days(self) -> int:
        """The default in days (years as 365.25 days, rounded up: the longest a calendar year span lasts)."""
        return as_days(self.default, self.unit)


def as_days(value: int, unit: str) -> int:
    return value if unit == "days" else -(-value * 1461 // 4)  # 3 years -> 1096 days (one leap day)


RULES: tuple[Rule, ...] = (
    Rule("image_unheld", "image_days", "verification images (and their sealed captures' keys)", 7, 7, "days",
         "the alarm's own time (device clock); the gateway's receipt only when the device clock was unset",
         "blob deleted, row deleted, the day's KEK destroyed (crypto-shredding)"),
    Rule("image_held", "hold_days", "verification images under a police hold", 30, 30, "days",
         "the alarm's own time, as above; a police handover ends or shortens it (`handover`)",
         "as for images; the hold's own KEK destroyed"),
    Rule("activity", "activity_years", "activity log: events, alarms, captures, alarm handling", 3, 3, "years",
         "the end of the customer relationship (`vericam customer end`); for a device with no customer, "
         "each record's own receipt",
         "rows deleted in batches (a device's alarm stays while an image of it is held); then the customer's "
         "pseudonymous row and its revoked devices' rows"),
    Rule("customer_identity", "identity_days", "name, address (device site) and customer id", 365, 365, "days",
         "the end of the customer relationship",
         "name and site erased, the customer id replaced by a pseudonym the activity log keeps"),
    Rule("alarm_note", "note_days", "free-text alarm-handling notes", 90, 365, "days",
         "the alarm's closing (its acknowledgement when never closed)",
         "the note text erased; who handled the alarm and the outcome stay with the activity log"),
    Rule("hold_record", "hold_record_days", "police hold records: case reference, reason, police contact", 365,
         1096, "days", "the hold's end: release, handover, or its last image deleted",
         "the hold row deleted (the audit trail keeps its records until they expire)"),
    Rule("export", "export_days", "exports the gateway wrote: police bundles, subject exports", 30, 30, "days",
         "the export's writing", "the files deleted"),
    Rule("audit", "audit_days", "the audit trail (accesses, deletions; failed-login records are part of it)",
         1096, 1826, "days", "the record's own time",
         "the oldest records deleted up to a signed checkpoint, from which the chain still verifies"),
    Rule("backup", "backup_days", "backups of the database, blobs and key store (rolling)", 730, 730, "days",
         "the backup's taking",
         "not enforced by the gateway: the backup tool rotates them; images in them are unreadable once "
         "their KEK is destroyed"),
)

BY_SETTING = {r.setting: r for r in RULES}
BY_CLASS = {r.data_class: r for r in RULES}


def table() -> list[dict]:
    """The table as plain rows (`vericam retention show --table`)."""
    return [{"class": r.data_class, "setting": r.setting, "what": r.what, "default": r.default,
             "maximum": r.maximum, "unit": r.unit, "clock": r.clock, "action": r.action} for r in RULES]


__all__ = ["Rule", "RULES", "BY_SETTING", "BY_CLASS", "HANDOVER_RULES", "as_days", "table"]
