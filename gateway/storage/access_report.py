"""Need-to-know queries: which devices belong to a customer under restriction, and the audit records of reads of a household's photos.

Read-only, over tables other modules write (`customers`, `devices`, `audit`): nothing here
changes a row. `gateway.governance.need_to_know` and `gateway.governance.subject` decide what
the rows mean.

The household's photo reads are found by the device named in each record's `detail` (JSON
written with sorted keys and no spaces by `gateway.governance.audit`, so `"device":"cam-1"`
appears as such), then checked again on the decoded record: the `LIKE` only narrows the scan.
The audit table has no index on `what`, so the report reads the trail once; it is asked for
now and then (a household's access request), never on a request path.
"""

from __future__ import annotations

import json

from gateway.storage.sqldb import Database

# The audit records that read a household's photos (written by governance: alarms, police
# export, need_to_know) and the one that hands them to the household itself.
PHOTO_READS = ("view image", "open photos", "police export")
SUBJECT_EXPORT = "export subject data"


class AccessQueries:
    def __init__(self, db: Database):
        self.db = db

    def restricted_devices(self) -> set[str]:
        """The devices whose customer has restricted processing (GDPR art. 18)."""
        return {r[0] for r in self.db.execute(
            "SELECT d.id FROM devices d JOIN customers c ON c.id = d.customer_id WHERE c.restricted <> 0")}

    def is_restricted(self, device: str) -> bool:
        """Whether `device` belongs to a customer who has restricted processing."""
        return self.db.execute(
            "SELECT 1 FROM devices d JOIN customers c ON c.id = d.customer_id WHERE d.id = ? AND c.restricted <> 0",
            (device,)).fetchone() is not None

    def photo_reads(self, devices: list[str], customer: str) -> list[dict]:
        """Every audit record that read a photo of one of `devices`, and the household's own exports
        (subject `customer`), oldest first, `detail` decoded. Nothing else of any staff member."""
        conds, args = ["(subject = ? AND what = ?)"], [customer, SUBJECT_EXPORT]
        kinds = ",".join("?" * len(PHOTO_READS))
        for device in devices:
            conds.append(f"(what IN ({kinds}) AND detail LIKE ?)")
            args += [*PHOTO_READS, f'%"device":{json.dumps(device)}%']
        out = []
        for row in self.db.execute("SELECT seq, at_ms, who, what, why, subject, content_hash, detail FROM audit "
                                   f"WHERE {' OR '.join(conds)} ORDER BY seq", args):
            d = dict(row)
            d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
            if d["what"] == SUBJECT_EXPORT or d["detail"].get("device") in devices:
                out.append(d)
        return out
